"""Where the plugin's routes sit in the proxy's app: mounting them ahead of LiteLLM's own, declaring
them to LiteLLM as its routes of the same kind, the callbacks it registers, and what the app serves.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from fastapi import APIRouter
from litellm.proxy._types import LiteLLMRoutes


def mount(router: APIRouter) -> None:
    """Serve `router`'s routes from the proxy's own app, ahead of the proxy's catch-all routes, as
    LLM API routes (virtual keys may call them).

    Idempotent: LiteLLM runs a config-referenced module once per reference.
    """
    from litellm.proxy.proxy_server import app

    if _already_served(app.router.routes, router):
        return
    paths = [route.path for route in router.routes]
    _declare_llm_api_routes(paths)
    before = len(app.router.routes)
    app.include_router(router)
    added = app.router.routes[before:]
    del app.router.routes[before:]
    app.router.routes[0:0] = added


def warm_up() -> None:
    """Load at start what LiteLLM loads lazily on the first request that checks a key's tool allow-list
    (its guardrail translation handlers, ~40 modules): otherwise that first request, on any route,
    blocks the proxy's event loop for most of a second after every start (bench/cold_start)."""
    from litellm.llms import load_guardrail_translation_mappings

    load_guardrail_translation_mappings()


def _declare_llm_api_routes(paths: list[str]) -> None:
    """Tell LiteLLM our routes serve LLM calls, as its own `/v1/chat/completions` does: keys limited to
    `llm_api_routes` may call them, and its auth recognises them at once instead of trying every
    route pattern it knows (~10% of a request's CPU time when measured)."""
    for routes in (LiteLLMRoutes.openai_routes.value, LiteLLMRoutes.llm_api_routes.value):
        routes.extend(path for path in paths if path not in routes)


def register_callback(callback: Any) -> None:
    import litellm

    if callback not in litellm.callbacks:
        litellm.logging_callback_manager.add_litellm_callback(callback)


@dataclass(frozen=True)
class LitellmView:
    """How LiteLLM is to see one of our routes: as its own route of the same kind (`/v1/chat/completions`,
    `/v1/embeddings`, `/v1/rerank`), and our request body in that route's shape, as the route sends it
    (None: not a body the route will accept, which it refuses itself).

    The route's call types then are that route's: LiteLLM finds them at once instead of matching the path
    against every pattern it knows (twice per request); for a chat, a key's or team's
    `metadata.allowed_tools` applies (Cohere v2 tools have OpenAI's shape), and guardrails treat its stream
    as the OpenAI-format chunks it is before we translate them. The budget estimate reads the body in that
    shape, by that route's rules (a chat's messages and tools counted; an embedding's inputs, no output)."""

    route: str
    body: Callable[[dict[str, Any]], dict[str, Any] | None]
    # LiteLLM's auth reads the body in that shape too: for a route whose own shape is not what LiteLLM's
    # checks read (v1 chat's tools have no `function.name`: a key's `allowed_tools` would see none of them).
    auth_reads: bool = False


_views: dict[str, LitellmView] = {}


def seen_by_auth(body: dict[str, Any], route: str) -> dict[str, Any]:
    """The body LiteLLM's auth is to read for a request of `route` (see `LitellmView.auth_reads`)."""
    view = _views.get(route)
    seen = view.body(body) if view is not None and view.auth_reads else None
    return seen if seen is not None else body


def mount_as(router: APIRouter, views: Mapping[str, LitellmView]) -> None:
    """`mount` a router whose paths LiteLLM is to see as `views` says. Idempotent, as `mount`."""
    from litellm.types.utils import API_ROUTE_TO_CALL_TYPES

    mount(router)
    for path, view in views.items():
        _views[path] = view
        API_ROUTE_TO_CALL_TYPES.setdefault(path, API_ROUTE_TO_CALL_TYPES[view.route])  # type: ignore[attr-defined]


def as_litellm_sees(body: dict[str, Any], route: str) -> tuple[dict[str, Any], str]:
    """A request's body and route as LiteLLM's estimate is to read them (see `LitellmView`)."""
    view = _views.get(route)
    if view is None:
        return body, route
    seen = view.body(body)
    if seen is not None:
        return seen, view.route
    # LiteLLM's auth was handed the body in its shape already (`seen_by_auth`), or the route refuses it.
    return body, view.route if view.auth_reads else route


def mount_without_model_calls(router: APIRouter) -> None:
    """`mount`, for routes that never reach a model (model lists, tokenizing): they count against a
    key's rate limits, and a key out of budget is refused there, but they reserve nothing of its budget
    (see `reaches_no_model`)."""
    mount(router)
    for route in router.routes:
        pattern = getattr(route, "path_regex", None)
        if pattern is not None and pattern not in _NO_MODEL_CALL_ROUTES:
            _NO_MODEL_CALL_ROUTES.append(pattern)


_NO_MODEL_CALL_ROUTES: list[re.Pattern[str]] = []


def reaches_no_model(route: str) -> bool:
    """Whether `route` (a request's path) is one of the plugin's routes that never reach a model."""
    return any(pattern.match(route) for pattern in _NO_MODEL_CALL_ROUTES)


def costs_nothing(route: str) -> bool:
    """Whether a call of `route` is never billed, so that it reserves nothing of a key's budget: the
    plugin's routes that reach no model, and LiteLLM's routes that count a request's tokens (locally, or
    by a provider's free count endpoint). LiteLLM checks budgets on the latter, so a spent key is refused
    there; a reservation would be held until it expires, as no call's end settles it."""
    return route in _TOKEN_COUNTING_ROUTES or reaches_no_model(route)


_TOKEN_COUNTING_ROUTES = frozenset({
    "/utils/token_counter", "/v1/messages/count_tokens", "/messages/count_tokens",
    "/claude_code_gateway/v1/messages/count_tokens", "/v1/responses/input_tokens", "/responses/input_tokens",
    "/openai/v1/responses/input_tokens",
})


def mount_after_plugin_routes(router: APIRouter) -> None:
    """Serve `router`'s routes right after every route the plugin has mounted so far, ahead of the
    proxy's own: for a catch-all of the plugin's paths. `mount` puts routes at the front, so routes
    mounted later still come before it, in whatever order `entry.py` mounts them. Idempotent."""
    from litellm.proxy.proxy_server import app

    routes = app.router.routes
    if _already_served(routes, router):
        return
    before = len(routes)
    app.include_router(router)
    added = routes[before:]
    del routes[before:]
    package = __name__.partition(".")[0] + "."  # the plugin's: its routes live in plugin.routes
    last_ours = max((i for i, entry in enumerate(routes)
                     if any(_endpoint_module(route).startswith(package) for route in _routes_in(entry))), default=-1)
    routes[last_ours + 1:last_ours + 1] = added


def _already_served(routes: list[Any], router: APIRouter) -> bool:
    """Whether the app's `routes` serve one of `router`'s (path, methods) already: LiteLLM runs a
    config-referenced module once per reference, so mounting must be idempotent."""
    ours = {(route.path, tuple(sorted(route.methods))) for route in router.routes}
    return any((getattr(r, "path", None), tuple(sorted(getattr(r, "methods", None) or ()))) in ours
               for entry in routes for r in _routes_in(entry))


def _routes_in(entry: Any) -> list[Any]:
    """The routes one entry of an app's route list serves. FastAPI 0.165 (LiteLLM 1.110's) keeps an
    included router as one entry wrapping it (`original_router`); earlier ones copy its routes in."""
    inner = getattr(entry, "original_router", None)
    if inner is None:
        return [entry]
    return [route for wrapped in inner.routes for route in _routes_in(wrapped)]


def _endpoint_module(route: Any) -> str:
    return str(getattr(getattr(route, "endpoint", None), "__module__", None) or "")


def served_paths(prefix: str) -> list[str]:
    """`METHOD path` of every route the app serves under `prefix` (templates as declared), in order."""
    from litellm.proxy.proxy_server import app

    served = []
    for route in (route for entry in app.router.routes for route in _routes_in(entry)):
        path = getattr(route, "path_format", None) or getattr(route, "path", "")
        if path.startswith(prefix) and "{rest}" not in path:
            served.extend(f"{method} {path}" for method in sorted(getattr(route, "methods", None) or ())
                          if method != "HEAD")
    return served


def methods_served_at(scope: Any, prefix: str) -> list[str]:
    """The methods the app serves at the request's path (`scope`) under `prefix`, as Starlette matches
    routes (a path template matches its values), the catch-all of `prefix` left out: empty when the path
    is served by no route, whatever its method."""
    from litellm.proxy.proxy_server import app
    from starlette.routing import Match

    methods: set[str] = set()
    for route in (route for entry in app.router.routes for route in _routes_in(entry)):
        path = getattr(route, "path_format", None) or getattr(route, "path", "")
        if path.startswith(prefix) and "{rest}" not in path and hasattr(route, "matches") \
                and route.matches(scope)[0] != Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


def litellm_release() -> str:
    """The installed LiteLLM's version, for `/mpilot/version` and the start-up line."""
    try:
        return metadata.version("litellm")
    except metadata.PackageNotFoundError:
        return "unknown"
