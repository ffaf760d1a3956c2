"""The one place that reaches into the LiteLLM proxy's internals.

Everything here names a LiteLLM proxy object or function; the rest of the plugin speaks through
these few functions, so a LiteLLM upgrade is a change to this file. Pinned release: see README.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from litellm.proxy._types import LiteLLMRoutes, ProxyException, UserAPIKeyAuth
from litellm.proxy.auth.user_api_key_auth import user_api_key_auth
from litellm.proxy.common_request_processing import ProxyBaseLLMRequestProcessing
from litellm.proxy.route_llm_request import ProxyModelNotFoundError

from .cohere.errors import CohereError, cohere_status, redact

Caller = UserAPIKeyAuth
# Turns LiteLLM's own OpenAI-format SSE frames into the frames we send.
FrameTranslator = Callable[[AsyncIterator[str]], AsyncIterator[str]]


def mount(router: APIRouter) -> None:
    """Serve `router`'s routes from the proxy's own app, ahead of the proxy's catch-all routes.

    Idempotent: LiteLLM runs a config-referenced module once per reference.
    """
    from litellm.proxy.proxy_server import app

    ours = {(route.path, tuple(sorted(route.methods))) for route in router.routes}
    if any((getattr(r, "path", None), tuple(sorted(getattr(r, "methods", None) or ()))) in ours
           for r in app.router.routes):
        return
    _declare_llm_api_routes([route.path for route in router.routes])
    before = len(app.router.routes)
    app.include_router(router)
    added = app.router.routes[before:]
    del app.router.routes[before:]
    app.router.routes[0:0] = added


def _declare_llm_api_routes(paths: list[str]) -> None:
    """Tell LiteLLM our routes serve LLM calls, as its own `/v1/chat/completions` does: keys limited to
    `llm_api_routes` may call them, and its auth recognises them at once instead of trying every
    route pattern it knows (~10% of a request's CPU time when measured)."""
    for routes in (LiteLLMRoutes.openai_routes.value, LiteLLMRoutes.llm_api_routes.value):
        routes.extend(path for path in paths if path not in routes)


@functools.wraps(user_api_key_auth)
async def caller_or_refusal(*args: Any, **kwargs: Any) -> Caller | CohereError:
    """The proxy's own auth (custom auth hook included), its refusal returned instead of raised so
    the route can answer it in Cohere's shape. FastAPI reads the wrapped function's header params."""
    request: Request = kwargs["request"]
    # Keep the raw body: LiteLLM's auth may consume the stream (a form content type) and we parse
    # the Cohere request from the bytes ourselves.
    body = await request.body()
    if body.strip() and not body.lstrip().startswith(b"{"):
        # LiteLLM's auth reads fields of the body and fails with a 500 on anything but an object.
        return CohereError(400, "request body must be a JSON object", code="invalid_json")
    try:
        return await user_api_key_auth(*args, **kwargs)
    except Exception as error:  # noqa: BLE001  # every refusal becomes a Cohere error
        refusal = error_from_exception(error)
        if refusal.message == _NO_DATABASE:
            # Without a key store LiteLLM cannot look the token up: to the client it is unknown.
            return CohereError(401, "the API key is not valid", headers=refusal.headers)
        return refusal


_NO_DATABASE = "No connected db."


def error_from_exception(error: BaseException, model: str | None = None) -> CohereError:
    """A Cohere error for whatever LiteLLM or a provider raised. Messages are redacted of tokens."""
    if isinstance(error, CohereError):
        return error
    if isinstance(error, ProxyModelNotFoundError):
        return CohereError(404, f"model {model!r} is not served by this proxy; GET /v1/models lists the "
                                "models your key can use", code="model_not_found")
    if isinstance(error, ProxyException):
        status = int(error.code) if str(error.code).isdigit() else 500
        return CohereError(cohere_status(status), redact(error.message), headers=_safe(error.headers))
    status = getattr(error, "status_code", None)
    if not isinstance(status, int):
        status = 500
    detail = getattr(error, "detail", None)
    message = getattr(error, "message", None) or (detail if isinstance(detail, str) else None) \
        or (detail.get("error") if isinstance(detail, dict) else None) or str(error) or type(error).__name__
    return CohereError(cohere_status(status), redact(str(message)), headers=_safe(getattr(error, "headers", None)))


def _safe(headers: Any) -> dict[str, str]:
    if not headers:
        return {}
    return {str(k): str(v) for k, v in dict(headers).items() if str(k).lower() not in _BODY_HEADERS}


_BODY_HEADERS = frozenset({"content-length", "content-type", "transfer-encoding"})


async def complete(
    request: Request,
    caller: Caller,
    openai_body: dict[str, Any],
    frames: FrameTranslator,
) -> tuple[Any, dict[str, str]]:
    """Run `openai_body` through the proxy's request processing, as its `/v1/chat/completions` does:
    key metadata, pre/during/post-call hooks, the router (fallbacks, retries), spend logging.

    Returns (OpenAI response dict, response headers) or, for a stream, (a streaming Response whose
    frames `frames` made, {}). A failure raises `CohereError` after LiteLLM's failure hooks ran.
    """
    from litellm.proxy import proxy_server as proxy

    headers_sink = Response()
    processor = ProxyBaseLLMRequestProcessing(data=openai_body)

    def select_frames(response: Any, user_api_key_dict: Caller, request_data: dict, request: Any = None,
                      **_: Any) -> AsyncIterator[str]:
        return frames(proxy.async_data_generator(
            response=response, user_api_key_dict=user_api_key_dict, request_data=request_data, request=request,
        ))

    try:
        result = await processor.base_process_llm_request(
            request=request,
            fastapi_response=headers_sink,
            user_api_key_dict=caller,
            route_type="acompletion",
            proxy_logging_obj=proxy.proxy_logging_obj,
            llm_router=proxy.llm_router,
            general_settings=proxy.general_settings,
            proxy_config=proxy.proxy_config,
            select_data_generator=select_frames,
            user_model=proxy.user_model,
            user_temperature=proxy.user_temperature,
            user_request_timeout=proxy.user_request_timeout,
            user_max_tokens=proxy.user_max_tokens,
            user_api_base=proxy.user_api_base,
            version=proxy.version,
        )
    except Exception as error:  # noqa: BLE001  # mapped below, after LiteLLM's own failure handling
        try:
            await processor.handle_llm_api_exception(
                e=error, user_api_key_dict=caller, proxy_logging_obj=proxy.proxy_logging_obj,
                version=proxy.version,
            )
        except ProxyException as handled:
            mapped = error_from_exception(error if isinstance(error, ProxyModelNotFoundError) else handled,
                                          model=openai_body.get("model"))
            mapped.headers = {**_safe(handled.headers), **mapped.headers}
            raise mapped from None
        raise error_from_exception(error, model=openai_body.get("model")) from None

    if isinstance(result, JSONResponse) and result.status_code >= 400:
        # A stream whose first frame was an error: LiteLLM answered it as an OpenAI-format JSON error.
        raise _error_from_json_response(result)
    if isinstance(result, Response):
        return result, {}
    payload = result.model_dump() if hasattr(result, "model_dump") else dict(result)
    return payload, _safe(headers_sink.headers)


def _error_from_json_response(response: JSONResponse) -> CohereError:
    try:
        error = json.loads(bytes(response.body)).get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    message = error.get("message") if isinstance(error, dict) else None
    headers = _safe(response.headers)
    return CohereError(cohere_status(response.status_code), redact(str(message or "upstream error")),
                       headers=headers)


def call_id(headers: dict[str, str]) -> str:
    """The id LiteLLM logs this call under, so an error body can be matched to the proxy's logs."""
    return headers.get("x-litellm-call-id") or str(uuid.uuid4())
