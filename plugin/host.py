"""The one place that reaches into the LiteLLM proxy's internals.

Everything here names a LiteLLM proxy object or function; the rest of the plugin speaks through
these few functions, so a LiteLLM upgrade is a change to this file. Pinned release: see README.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import inspect
import json
import logging
import os
import re
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from litellm.llms.base_llm.base_model_iterator import BaseModelResponseIterator
from litellm.llms.cohere.common_utils import CohereError as CohereProviderError

# LitellmUserRoles: from litellm.proxy._types on every release (1.108 moved it to a module of its own)
from litellm.proxy._types import LiteLLMRoutes, LitellmUserRoles, ProxyException, UserAPIKeyAuth
from litellm.proxy.auth.user_api_key_auth import user_api_key_auth
from litellm.proxy.common_request_processing import ProxyBaseLLMRequestProcessing
from litellm.proxy.route_llm_request import ProxyModelNotFoundError
from litellm.types.utils import ChatCompletionUsageBlock, GenericStreamingChunk
from starlette.datastructures import QueryParams

from .auth.keys import VirtualKey
from .auth.ledger import Ledger, RedisLedger, SqliteLedger, to_nanos
from .cohere.errors import CohereError, call_failure_message, cohere_status, redact
from .cohere.schema import decode_json_body, parse_chat_request

log = logging.getLogger("mpilot")
Caller = UserAPIKeyAuth
# Turns LiteLLM's own OpenAI-format SSE frames into the frames we send.
FrameTranslator = Callable[[AsyncIterator[str | bytes]], AsyncIterator[str | bytes]]


def mount(router: APIRouter, chat_completions: bool = False) -> None:
    """Serve `router`'s routes from the proxy's own app, ahead of the proxy's catch-all routes, as
    LLM API routes (virtual keys may call them); `chat_completions`: they make chat-completion calls.

    Idempotent: LiteLLM runs a config-referenced module once per reference.
    """
    from litellm.proxy.proxy_server import app

    if _already_served(app.router.routes, router):
        return
    paths = [route.path for route in router.routes]
    _declare_llm_api_routes(paths)
    if chat_completions:
        _declare_chat_completion_routes(paths)
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


def _declare_chat_completion_routes(paths: list[str]) -> None:
    """Give our routes the call types of `/v1/chat/completions`: a key's or team's
    `metadata.allowed_tools` then applies to them (Cohere v2 tools have OpenAI's shape), guardrails
    treat their streams as the OpenAI-format chunks they are before we translate them, and LiteLLM
    finds the route's call types at once instead of matching it against every pattern it knows,
    twice per request."""
    from litellm.types.utils import API_ROUTE_TO_CALL_TYPES

    chat = API_ROUTE_TO_CALL_TYPES["/v1/chat/completions"]
    for path in paths:
        API_ROUTE_TO_CALL_TYPES.setdefault(path, chat)  # type: ignore[attr-defined]  # a dict typed as Mapping


@functools.wraps(user_api_key_auth)
async def caller_or_refusal(*args: Any, **kwargs: Any) -> Caller | CohereError:
    """The proxy's own auth (custom auth hook included), its refusal returned instead of raised so
    the route can answer it in Cohere's shape. FastAPI reads the wrapped function's header params."""
    from .auth.hook import mpilot_auth  # here: the auth hook itself imports this module

    request: Request = kwargs["request"]
    # Keep the raw body: LiteLLM's auth may consume the stream (a form content type) and we parse
    # the Cohere request from the bytes ourselves.
    limit = mpilot_auth().limits.max_request_bytes
    body = await _body_within(request, limit)
    if body is None:
        return CohereError(413, f"request body is over {limit} bytes, the most this proxy accepts",
                           code="request_too_large")
    if body.strip():  # a GET (the key's info) has none
        try:
            parsed = decode_json_body(body)
        except CohereError as refusal:
            # Before any auth, whoever calls: LiteLLM's auth would read a body nested too deeply for Python's
            # json (a RecursionError: a 500, the connection dropped) or take a deep list for the model (401).
            return refusal
        if not isinstance(parsed, dict):
            # LiteLLM's auth reads fields of the body and fails with a 500 on anything but an object.
            return CohereError(400, "request body must be a JSON object", code="invalid_json")
        if parsed.get("tools") is not None and not isinstance(parsed["tools"], list):
            # Release adapter: 1.100's auth walks `tools` (a key's tool allow-list) before the route validates
            # it, and fails with a 500 on anything but a list: the route's own answer comes first.
            try:
                parse_chat_request(body)
            except CohereError as refusal:
                return refusal
        share_json_body(request, parsed)
    try:
        return await user_api_key_auth(*args, **kwargs)
    except Exception as error:  # noqa: BLE001  # every refusal becomes a Cohere error
        refusal = error_from_exception(error)
        if refusal.message == _NO_DATABASE:
            # Without a key store LiteLLM cannot look the token up: to the client it is unknown.
            return CohereError(401, "the API key is not valid", headers=refusal.headers)
        return refusal


_NO_DATABASE = "No connected db."


async def _body_within(request: Request, limit: int) -> bytes | None:
    """The request's body, or None when it is over `limit` bytes: refused on its Content-Length before
    any of it is read, else as it arrives, so an oversized body is never held whole."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # Starlette's own cache of the body: LiteLLM's auth and the route read these bytes
    return body


def error_from_exception(error: BaseException, model: str | None = None, provider_failed: bool = False) -> CohereError:
    """A Cohere error for whatever LiteLLM or a provider raised. Messages are redacted of tokens.
    `provider_failed`: the provider of `model` answered with this error (not a refusal by the proxy)."""
    if isinstance(error, CohereError):
        return error
    if isinstance(error, ProxyModelNotFoundError):
        return CohereError(404, f"model {model!r} is not served by this proxy; GET /litellm/cohere/v1/models "
                                "lists the models your key can use", code="model_not_found")
    if isinstance(error, ProxyException):
        status = int(error.code) if str(error.code).isdigit() else 500
        message, headers = error.message, error.headers
    else:
        status = getattr(error, "status_code", None)
        if not isinstance(status, int):
            status = 500
        detail = getattr(error, "detail", None)
        message = getattr(error, "message", None) or (detail if isinstance(detail, str) else None) \
            or (detail.get("error") if isinstance(detail, dict) else None) or str(error) or type(error).__name__
        headers = getattr(error, "headers", None)
    message = redact(str(message))
    if provider_failed:
        message = call_failure_message(status, message, model)
    return CohereError(cohere_status(status), message, headers=_safe(headers))


def _from_provider(error: BaseException) -> bool:
    """LiteLLM's provider exceptions name their provider; refusals by the proxy's own hooks do not."""
    return bool(getattr(error, "llm_provider", None))


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
    route_type: str = "acompletion",
) -> tuple[Any, dict[str, str]]:
    """Run `openai_body` through the proxy's request processing, as its `/v1/chat/completions` does:
    key metadata, pre/during/post-call hooks, the router (fallbacks, retries), spend logging.
    `route_type`: LiteLLM's name of the call (`aembedding`, `arerank`: as its own routes of that kind).

    Returns (OpenAI response dict, response headers) or, for a stream, (a streaming Response whose
    frames `frames` made, {}). A failure raises `CohereError` after LiteLLM's failure hooks ran.
    """
    from litellm.proxy import proxy_server as proxy

    headers_sink = Response()
    processor = ProxyBaseLLMRequestProcessing(data=openai_body)
    stream_end = _StreamEnd()
    # Seen by LiteLLM's stream wrapper wherever this request's stream runs: tasks copy the context.
    _stream_end.set(stream_end)

    def select_frames(response: Any, user_api_key_dict: Caller, request_data: dict, request: Any = None,
                      **_: Any) -> AsyncIterator[str | bytes]:
        return frames(_cut_off_streams_fail(stream_end, proxy.async_data_generator(
            response=response, user_api_key_dict=user_api_key_dict, request_data=request_data, request=request,
        )))

    try:
        result = await processor.base_process_llm_request(
            request=request,
            fastapi_response=headers_sink,
            user_api_key_dict=caller,
            route_type=route_type,  # type: ignore[arg-type]  # LiteLLM's Literal lacks "arerank", which it routes
            proxy_logging_obj=proxy.proxy_logging_obj,
            llm_router=proxy.llm_router,
            # A client that leaves a non-stream call cancels it upstream, as a stream's does (LiteLLM's
            # own setting, for this route only; every supported release has it).
            general_settings={**proxy.general_settings, "cancel_on_disconnect": True},
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
            await _llm_api_exception_handler(processor)(
                e=error, user_api_key_dict=caller, proxy_logging_obj=proxy.proxy_logging_obj,
                version=proxy.version,
            )
        except ProxyException as handled:
            mapped = error_from_exception(error if isinstance(error, ProxyModelNotFoundError) else handled,
                                          model=openai_body.get("model"), provider_failed=_from_provider(error))
            mapped.headers = {**_safe(handled.headers), **mapped.headers}
            raise mapped from None
        raise error_from_exception(error, model=openai_body.get("model"), provider_failed=_from_provider(error)) \
            from None

    if isinstance(result, JSONResponse) and result.status_code >= 400:
        # A stream whose first frame was an error: LiteLLM answered it as an OpenAI-format JSON error.
        raise _error_from_json_response(result)
    if isinstance(result, Response):
        return result, {}
    payload = result.model_dump() if hasattr(result, "model_dump") else dict(result)
    return payload, _safe(headers_sink.headers)


def stream_error_timed_out(error: dict[str, Any]) -> bool:
    """Whether the error chunk LiteLLM sent in a stream reports a timeout: status 408 or 504. Release
    adapter: 1.100-1.104 report a read that timed out mid-stream as a connection error (500) with the HTTP
    client's words for it."""
    return str(error.get("code")) in ("408", "504") or _READ_TIMED_OUT in str(error.get("message") or "")


_READ_TIMED_OUT = "Timeout on reading data from socket"  # aiohttp's ServerTimeoutError


def _llm_api_exception_handler(processor: ProxyBaseLLMRequestProcessing) -> Any:
    """LiteLLM's handling of a failed call (failure hooks, then a ProxyException). Release adapter:
    public `handle_llm_api_exception` from 1.106, `_handle_llm_api_exception` before."""
    return getattr(processor, "handle_llm_api_exception", None) or processor._handle_llm_api_exception


class _StreamEnd:
    """One request's call as it goes: whether LiteLLM filled in its stream's finish reason (see
    `notice_cut_off_streams`), and the timeout of the try that opened the stream (see `bound_each_try`)."""

    filled_in = False
    try_timeout: float | None = None


_stream_end: ContextVar[_StreamEnd | None] = ContextVar("mpilot_stream_end", default=None)
STREAM_ENDED_EARLY = "the provider's stream ended early, without a finish reason: the answer may be incomplete"
_ENDED_EARLY_FRAME = b"data: " + json.dumps({"error": {"message": STREAM_ENDED_EARLY, "code": "502"}}).encode() \
    + b"\n\n"


async def _cut_off_streams_fail(stream_end: _StreamEnd, openai_frames: AsyncIterator[str | bytes],
                                ) -> AsyncIterator[str | bytes]:
    """LiteLLM's frames of one stream; its closing [DONE] becomes an error frame when the provider's stream
    ended without a finish reason, so the answer does not look complete; and a frame that takes longer than
    the try's timeout (the deployment's `stream_timeout`, else its `timeout`, else the router's) ends the
    stream with a timeout error. LiteLLM's HTTP client bounds each read of the socket, and a provider that
    drips a byte at a time never trips that."""
    try:
        while True:
            try:
                async with asyncio.timeout(stream_end.try_timeout):
                    frame = await anext(openai_frames)
            except StopAsyncIteration:
                return
            except TimeoutError:
                yield _stalled_frame(stream_end.try_timeout)
                return
            if stream_end.filled_in and frame.startswith(b"data: [DONE]" if isinstance(frame, bytes)
                                                         else "data: [DONE]"):
                frame = _ENDED_EARLY_FRAME
            yield frame
    finally:
        await openai_frames.aclose()  # type: ignore[attr-defined]  # LiteLLM's generator


def _stalled_frame(seconds: float | None) -> bytes:
    message = f"the provider sent no whole chunk of its stream within {seconds:g}s (the deployment's timeout)"
    return b"data: " + json.dumps({"error": {"message": message, "code": "504"}}).encode() + b"\n\n"


def bound_each_try() -> None:
    """Make a deployment's timeout bound each try of our route's calls as a whole.

    LiteLLM hands the try's timeout (the deployment's, else the router's; a stream's `stream_timeout` where
    set) to the HTTP client, which applies it to each read: a provider that drips its answer a byte at a
    time holds a call for as long as it likes. The router calls `litellm.acompletion` (`aembedding`,
    `arerank`) once per try, looked up at call time on every supported release, so each is wrapped: for our
    routes' requests only
    (`_stream_end` is set), a try that has not answered within its timeout fails with LiteLLM's own
    `Timeout`, which the router retries or falls back from as it would a read timeout. A stream's try ends
    when the stream opens; each of its frames is then bounded by the same timeout
    (`_cut_off_streams_fail`). Every other route is unchanged. Idempotent.
    """
    import litellm

    for name in _TRY_CALLS:
        try_call = getattr(litellm, name)
        if not getattr(try_call, "_mpilot_bounded", False):
            setattr(litellm, name, _bounded(try_call))


_TRY_CALLS = ("acompletion", "aembedding", "arerank")  # the calls our routes make (`complete`'s route_type)


def _bounded(try_call: Callable[..., Any]) -> Callable[..., Any]:
    """`try_call`, each try bounded as a whole by its timeout on our routes (see `bound_each_try`)."""
    import litellm

    @functools.wraps(try_call)
    async def bounded(*args: Any, **kwargs: Any) -> Any:
        stream_end = _stream_end.get()
        seconds = _seconds(kwargs.get("timeout"))
        if stream_end is None or seconds is None:
            return await try_call(*args, **kwargs)
        if kwargs.get("stream"):
            stream_end.try_timeout = seconds
        try:
            async with asyncio.timeout(seconds):
                return await try_call(*args, **kwargs)
        except TimeoutError:
            model = str(kwargs.get("model") or (args[0] if args else ""))
            raise litellm.Timeout(
                message=f"the provider did not answer within {seconds:g}s (the deployment's timeout)",
                model=model, llm_provider=str(kwargs.get("custom_llm_provider") or model.partition("/")[0]),
            ) from None

    bounded._mpilot_bounded = True  # type: ignore[attr-defined]
    return bounded


def _seconds(timeout: Any) -> float | None:
    """A try's timeout as LiteLLM hands it on: seconds, or an `httpx.Timeout` (its read timeout)."""
    seconds = getattr(timeout, "read", timeout)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds < float("inf"):
        return None
    return float(seconds)


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


# --- auth: the proxy's config, key store, model access, spend counters ------------------------------


def mpilot_settings() -> dict[str, Any]:
    """`config.yaml`'s `mpilot:` section, `os.environ/NAME` values resolved by LiteLLM."""
    from litellm.proxy.proxy_server import proxy_config

    section = proxy_config.get_config_state().get("mpilot")
    return dict(section) if isinstance(section, dict) else {}


async def requested_models(request: Request) -> list[str]:
    """Every model a request names, wherever LiteLLM would take one from: its body (JSON, or the form
    fields of an upload, parsed once and cached by LiteLLM), its path (`/engines/{model}/...`,
    `/openai/deployments/{model}/...`, Bedrock, Azure and Google shapes), its query (`?model=`, which
    LiteLLM prefers to the body's on chat routes; also a realtime websocket's), the headers and ids
    LiteLLM reads for files and batches, and client-side fallbacks. A model check must cover them all:
    the call may use any of them."""
    from litellm.proxy import proxy_server as proxy
    from litellm.proxy.auth.auth_utils import (
        get_model_from_request,
        get_request_route,
        iter_request_fallback_targets,
    )
    try:
        body = await _parsed_body(request)
    except Exception:  # noqa: BLE001  # an unreadable body is LiteLLM's (or the route's) to answer
        body = {}
    body = body if isinstance(body, dict) else {}
    route = get_request_route(request=request)
    # Release adapter: 1.100's websocket auth hands over a request without a query string (the model of a
    # realtime call is then in the body it makes up).
    query = request.query_params if "query_string" in request.scope else QueryParams()
    named: list[object] = [body.get("model"), query.get("model"),
                           request.path_params.get("model"), request.path_params.get("model_name")]
    found = get_model_from_request(body, route, request_headers=request.headers,
                                   request_query_params=query, llm_router=proxy.llm_router,
                                   request=request)
    named.extend(found if isinstance(found, list) else [found])
    named.append(_bedrock_path_model(route))
    named.extend(_fallback_model(target) for target in iter_request_fallback_targets(body))
    models: list[str] = []
    for model in named:
        if isinstance(model, str) and model and model not in models:
            models.append(model)
    return models


async def _parsed_body(request: Request) -> dict:
    """LiteLLM's parse of a request's body (JSON, or the form fields of an upload), cached in the request.
    Release adapter: public `read_request_body` from 1.106, `_read_request_body` before."""
    from litellm.proxy.common_utils import http_parsing_utils as parsing

    read = getattr(parsing, "read_request_body", None) or parsing._read_request_body
    return await read(request)


def _bedrock_path_model(route: str) -> str | None:
    """The model of a Bedrock pass-through path, `/bedrock/[v2/]model/{model, slashes allowed}/{action}`.
    Release adapter: LiteLLM's own model lookup reads it from 1.106; 1.100-1.104 route by it unchecked."""
    match = _BEDROCK_PATH.match(route)
    return unquote(match.group(1)) if match else None


_BEDROCK_PATH = re.compile(r"^/bedrock/(?:v2/)?model/(.+)/[^/]+$", re.IGNORECASE)


def _fallback_model(target: object) -> str | None:
    """The model a client-side fallback names: a model name, or an object with one under `model` (as
    LiteLLM's `fallback_target_model_name`, which 1.100-1.104 do not have)."""
    if isinstance(target, Mapping):
        target = target.get("model")
    return target if isinstance(target, str) else None


def route_of(request: Request) -> str:
    from litellm.proxy.auth.auth_utils import get_request_route

    return get_request_route(request=request)


def route_spends(route: str) -> bool:
    """Whether a call of `route` can reach a model, and so spend: LiteLLM's own rule for budgets
    (LLM API routes except model discovery; `/health`, which calls every model the key may use, and
    realtime websockets included)."""
    from litellm.proxy.auth import auth_checks

    if hasattr(auth_checks, "route_skips_budget_checks"):
        return not auth_checks.route_skips_budget_checks(route=route)
    # Release adapter: 1.100-1.104 apply the same rule inline in `common_checks`, from the same constants.
    from litellm.proxy.auth.route_checks import RouteChecks

    return route in auth_checks.BUDGET_ENFORCED_SIDE_EFFECT_ROUTES or (
        route not in auth_checks.MODEL_DISCOVERY_ROUTES and RouteChecks.is_llm_api_route(route=route))


def share_json_body(request: Request, parsed: dict[str, Any]) -> None:
    """Make LiteLLM read our route's body as the route does (JSON, whatever the content type claims), so
    auth checks the model the route will call: a JSON body sent as a form would read as a form without a
    `model` otherwise."""
    from litellm.proxy.common_utils import http_parsing_utils as parsing

    # Release adapter: public from 1.106, `_safe_set_request_parsed_body` before.
    share = getattr(parsing, "safe_set_request_parsed_body", None) or parsing._safe_set_request_parsed_body
    share(request, parsed)


async def store_key(key_id: str) -> VirtualKey | None:
    """A virtual key from the proxy's own key store: its cache, then its database when it has one.

    LiteLLM's key cache holds more than virtual keys (the master key's auth object, admins' keys, UI
    sessions): only an entry that is a plain virtual key stored under this very id is one."""
    from litellm.proxy import proxy_server as proxy
    from litellm.proxy.auth.auth_checks import get_key_object

    found = await proxy.user_api_key_cache.async_get_cache(key=key_id, model_type=UserAPIKeyAuth)
    if found is None and proxy.prisma_client is not None:
        try:
            found = await get_key_object(hashed_token=key_id, prisma_client=proxy.prisma_client,
                                         user_api_key_cache=proxy.user_api_key_cache)
        except Exception:  # noqa: BLE001  # not in the store
            found = None
    if isinstance(found, dict):
        found = UserAPIKeyAuth(**found)
    if not isinstance(found, UserAPIKeyAuth) or not _is_virtual_key(found, key_id):
        return None
    return VirtualKey(
        key_id=key_id,
        source="proxy",
        alias=found.key_alias,
        models=tuple(found.models or ()),
        max_budget=found.max_budget,
        budget_duration=found.budget_duration,
        rpm_limit=found.rpm_limit,
        tpm_limit=found.tpm_limit,
        expires=_aware(found.expires),
        blocked=bool(found.blocked),
        user_id=found.user_id,
        team_id=found.team_id,
        metadata=dict(found.metadata or {}),
        stored_spend=float(found.spend or 0.0),
        stored=found,
    )


_ADMIN_ROLES = frozenset({LitellmUserRoles.PROXY_ADMIN, LitellmUserRoles.PROXY_ADMIN_VIEW_ONLY})


def _is_virtual_key(found: UserAPIKeyAuth, key_id: str) -> bool:
    from litellm.proxy import proxy_server as proxy
    from litellm.proxy._types import UI_TEAM_ID

    master = proxy.master_key
    if isinstance(master, str) and master and hmac.compare_digest(key_id, hashlib.sha256(master.encode()).hexdigest()):
        return False
    return (found.token == key_id
            and found.user_role not in _ADMIN_ROLES
            and found.team_id != UI_TEAM_ID
            and found.user_id != proxy.litellm_proxy_admin_name)


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def may_call_model(caller: Caller, model: str) -> bool:
    """LiteLLM's own model check for a key's caller (see `key_caller`): access groups, wildcards,
    `all-proxy-models`."""
    from litellm.proxy import proxy_server as proxy
    from litellm.proxy.auth.auth_checks import can_key_call_model

    try:
        await can_key_call_model(model=model, llm_model_list=proxy.llm_model_list, valid_token=caller,
                                 llm_router=proxy.llm_router)
    except ProxyException as denial:
        if str(denial.code) in ("401", "403"):
            return False
        raise
    return True


def litellm_tracks_spend() -> bool:
    """LiteLLM records spend itself only with its database."""
    from litellm.proxy import proxy_server as proxy

    return proxy.prisma_client is not None


async def litellm_key_spend(key: VirtualKey) -> float:
    from litellm.proxy.proxy_server import get_current_spend

    return await get_current_spend(counter_key=f"spend:key:{key.key_id}", fallback_spend=key.stored_spend,
                                   max_budget=key.max_budget)


def ledger_file(path: str) -> Path:
    """The ledger's SQLite file: `path`, relative to the folder of the proxy's config file."""
    from litellm.proxy import proxy_server as proxy

    config = proxy.user_config_file_path or os.environ.get("CONFIG_FILE_PATH")
    base = Path(config).resolve().parent if config else Path.cwd()
    return (base / path).resolve()


def redis_expected() -> bool:
    """Whether LiteLLM will coordinate through Redis: a `coordination_redis` block, or REDIS_HOST (which
    LiteLLM tries after it loads the plugin)."""
    from litellm.proxy import proxy_server as proxy

    return proxy.redis_usage_cache is not None or bool(os.environ.get("REDIS_HOST") or os.environ.get("REDIS_URL"))


def make_ledger(path: str) -> Ledger:
    """Redis when LiteLLM coordinates through one (several proxies share it), else the SQLite file every
    worker of this machine shares."""
    from litellm.proxy import proxy_server as proxy

    if proxy.redis_usage_cache is not None:
        return RedisLedger(proxy.redis_usage_cache.init_async_client())
    if redis_expected():
        log.warning("MPilot limits: REDIS_HOST is set but LiteLLM has no Redis; limits are shared by this "
                    "machine's workers only (ledger %s)", ledger_file(path))
    return SqliteLedger(ledger_file(path))


async def estimate_cost_nanos(request: Request, models: list[str], default_max_tokens: int,
                              team_id: str | None = None) -> int:
    """The most this request may cost, for its reservation: LiteLLM's own estimate (input tokens by its
    token counter times the input price, plus max_tokens, else `default_max_tokens` capped by the
    model's output limit, times the output price), the dearest model named. 0 when no price is known."""
    from litellm.proxy import proxy_server as proxy
    body, route = as_litellm_sees(dict(await _parsed_body(request)), route_of(request))
    if not any(body.get(field) is not None for field in _OUTPUT_TOKEN_FIELDS):
        body["max_tokens"] = default_max_tokens
    dearest = 0.0
    try:
        # Each model the request names (body, path, query, fallbacks) in turn: the call may use any.
        for model in models:
            body["model"] = model
            counts = await _input_token_counts(body, route, proxy.llm_router, team_id)
            dearest = max(dearest, _max_cost(body, route, model, counts) or 0.0)
        dearest = max(dearest, search_units_cost(body, route, models))
    except Exception as error:  # noqa: BLE001  # an estimate never fails a request; the budget still holds
        log.warning("MPilot limits: no cost estimate (%s); reserving nothing for this call", type(error).__name__)
        return 0
    return to_nanos(dearest)


def _cached_group_info(router: Any, model: str) -> Any:
    """The router's cached info object of a model group (it is replaced whenever models or prices change).
    Release adapter: `registry().group(name, field="cached_info")` from 1.110 (which deprecates the
    old name), `cached_model_group_info` on 1.104-1.109; 1.100's router keeps none (None: not remembered)."""
    if hasattr(router, "registry"):
        return router.registry().group(model, field="cached_info")
    lookup = getattr(router, "cached_model_group_info", None)
    return lookup(model) if lookup is not None else None


async def _input_token_counts(body: dict, route: str, router: Any, team_id: str | None) -> Mapping[str, int]:
    """LiteLLM's input-token count per model the request names. Release adapter: 1.110 added a required
    `team_id` (a team's own names for models); earlier releases have no such parameter."""
    from litellm.proxy.spend_tracking.budget_reservation import count_request_input_tokens

    if _counts_take_team_id():
        return await count_request_input_tokens(request_body=body, route=route, llm_router=router, team_id=team_id)
    return await count_request_input_tokens(request_body=body, route=route, llm_router=router)


@functools.cache
def _counts_take_team_id() -> bool:
    from litellm.proxy.spend_tracking.budget_reservation import count_request_input_tokens

    return "team_id" in inspect.signature(count_request_input_tokens).parameters


_OUTPUT_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
_COST_FIELDS = (*_OUTPUT_TOKEN_FIELDS, "n", "best_of", "inferenceConfig")  # what LiteLLM's estimate reads
_max_costs: dict[tuple[Any, ...], tuple[Any, float | None]] = {}
_MAX_COSTS_KEPT = 4096  # entries; each at most ~1 KiB (a model name, a route, counts and these fields)
_MAX_COST_FIELDS_CHARS = 256


def _max_cost(body: dict, route: str, model: str, input_tokens: Mapping[str, int]) -> float | None:
    """LiteLLM's `estimate_request_max_cost`, remembered: it is plain arithmetic on the request's token
    counts and fields, the route and the model group's prices, but costs ~170 us a call in the runtime
    protocol checks of its number parsing. An answer is reused only while the router serves the same
    (cached) model group info: the router replaces it whenever models or prices change."""
    from litellm.proxy import proxy_server as proxy
    from litellm.proxy.spend_tracking.budget_reservation import estimate_request_max_cost

    def estimate() -> float | None:
        return estimate_request_max_cost(request_body=body, route=route, llm_router=proxy.llm_router,
                                         input_token_counts=input_tokens)

    group = _cached_group_info(proxy.llm_router, model)
    if group is None or not input_tokens:
        return estimate()  # priced from LiteLLM's model map, or its input counted inside: not remembered
    fields = repr([body.get(field) for field in _COST_FIELDS])
    if len(fields) > _MAX_COST_FIELDS_CHARS:  # e.g. a large `inferenceConfig`: not worth its memory
        return estimate()
    key = (model, route, tuple(sorted(input_tokens.items())), fields)
    known = _max_costs.get(key)
    if known is not None and known[0] is group:
        return known[1]
    if len(_max_costs) >= _MAX_COSTS_KEPT:
        _max_costs.clear()
    cost = _max_costs[key] = (group, estimate())
    return cost[1]


RESERVATION = "mpilot_reservation"  # in a caller's metadata: the ledger reservation of this request's call


def key_caller(key: VirtualKey) -> Caller:
    """What LiteLLM sees for a virtual key: its id (never the key), identity and models.

    A key from the proxy's store is LiteLLM's own key object, handed over whole: it keeps every
    restriction LiteLLM gives it (max_parallel_requests, allowed_routes, rpm/tpm limit types,
    model_max_budget, object permissions, its organization), which LiteLLM enforces on it as on its own
    keys. Its budget is the plugin's ledger's while LiteLLM keeps no spend (no database); with one, both
    hold it. A config key has the fields a config key can have. Budgets and rate limits hold in the
    plugin's ledger on top (see `MPilotAuth.admit`)."""
    if key.stored is None:
        return UserAPIKeyAuth(api_key=key.key_id, token=key.key_id, key_alias=key.alias, models=list(key.models),
                              user_id=key.user_id, team_id=key.team_id, metadata=dict(key.metadata))
    caller = key.stored.model_copy(deep=True)
    caller.api_key = caller.token = key.key_id
    if not litellm_tracks_spend():
        caller.max_budget = None  # LiteLLM would reserve against spend it never records
    return caller


def with_reservation(caller: Caller, reservation: str | None) -> Caller:
    """`reservation` rides in the key metadata LiteLLM hands to callbacks, so the call's end settles it."""
    if reservation is not None:
        caller.metadata = {**(caller.metadata or {}), RESERVATION: reservation}
    return caller


def reservation_of(caller: Any) -> str | None:
    """The reservation riding in a caller's metadata (see `key_caller`)."""
    return reservation_in(getattr(caller, "metadata", None))


def reservation_in(key_metadata: Any) -> str | None:
    value = key_metadata.get(RESERVATION) if isinstance(key_metadata, dict) else None
    return value if isinstance(value, str) else None


def admin_caller(subject: str) -> Caller:
    return UserAPIKeyAuth(api_key=hashlib.sha256(f"mpilot-admin:{subject}".encode()).hexdigest(),
                          user_id=subject, user_role=LitellmUserRoles.PROXY_ADMIN)


def is_admin(caller: Caller) -> bool:
    return caller.user_role == LitellmUserRoles.PROXY_ADMIN


def auth_refusal(status: int, message: str, headers: dict[str, str] | None = None) -> ProxyException:
    """A refusal LiteLLM's auth passes on with its status (a plain exception would be a decline)."""
    return ProxyException(message=message, type="auth_error", param=None, code=status, headers=dict(headers or {}))


def is_refusal(error: BaseException) -> bool:
    """Whether `error` is a refusal LiteLLM's auth answers with its own status (not a decline)."""
    return isinstance(error, ProxyException)


def is_master_key(token: str) -> bool:
    from litellm.proxy import proxy_server as proxy

    master = proxy.master_key
    return isinstance(master, str) and bool(master) and hmac.compare_digest(token.encode(), master.encode())


def register_callback(callback: Any) -> None:
    import litellm

    if callback not in litellm.callbacks:
        litellm.logging_callback_manager.add_litellm_callback(callback)


def served_by_cohere(model: str) -> bool:
    """Whether every deployment of `model` goes to Cohere's v2 chat API through LiteLLM's Cohere
    provider, which takes Cohere's own `documents` and reports its citations."""
    from litellm.proxy import proxy_server as proxy

    router = proxy.llm_router
    deployments = [d for d in (router.model_list if router else []) if d.get("model_name") == model]

    def cohere_v2(deployment: Any) -> bool:
        params = deployment.get("litellm_params") or {}
        name = str(params.get("model") or "")
        provider = params.get("custom_llm_provider") or name.split("/", 1)[0]
        return provider in ("cohere", "cohere_chat") and "v1/" not in name

    return bool(deployments) and all(cohere_v2(d) for d in deployments)


# --- adapters for LiteLLM releases -----------------------------------------------------------------------


def read_cohere_sse_streams() -> bool:
    """Make LiteLLM's Cohere v2 chat provider (`cohere/...` and `cohere_chat/...` models) read Cohere's
    real stream. True when the plugin's reader is in place, False when the release reads it itself.

    Needed by LiteLLM 1.100 up to 1.110.2 at least (1.108.7 pinned): the reader its
    `CohereV2ChatConfig.get_model_response_iterator` makes, `CohereV2ModelResponseIterator`
    (`litellm/llms/cohere/common_utils.py`), runs `json.loads` on every raw line, so Cohere's SSE (an
    `event:` and a `data:` line per event, a blank line after) fails on the first line ("Error parsing
    chunk ... Received chunk: event: message-start"). Its `chunk_parser` also looks for the tool plan,
    citations and message-end under an `event` key Cohere's events do not have (they carry `type`),
    for tool-call arguments under `delta.tool_calls` (Cohere: `delta.message.tool_calls`), never reads a
    tool call's id and name (`tool-call-start`), and gives a tool call's index as the choice's.

    The one method replaced makes sync and async streams' readers. Untouched: Cohere's v1 chat
    (`.../v1/...` models: `CohereChatConfig`, newline-delimited JSON, which its reader reads), non-stream
    answers, and the `/cohere` pass-through's logging. A release whose own reader reads a sample Cohere
    stream correctly keeps it. Idempotent: LiteLLM runs a config-referenced module once per reference.
    """
    from litellm.llms.cohere.chat.v2_transformation import CohereV2ChatConfig

    if CohereV2ChatConfig.__dict__.get("get_model_response_iterator") is _cohere_sse_reader:
        return True
    if _reads_cohere_sse(CohereV2ChatConfig()):
        return False
    CohereV2ChatConfig.get_model_response_iterator = _cohere_sse_reader  # type: ignore[method-assign]
    return True


def notice_cut_off_streams() -> None:
    """Let `complete` tell a stream its provider cut off from one it finished.

    LiteLLM ends every stream it relays with a finish reason: when the provider sent none (an empty or an
    HTML 200, an SSE body without `data:` lines, a Cohere stream without its message-end),
    `CustomStreamWrapper.finish_reason_handler` fills in "stop" (1.100 to 1.110.2; since 1.109 LiteLLM raises
    instead, but only for OpenAI-format streams that sent a chunk), and the cut-off answer looks complete. The
    stream our route is handed cannot tell: the router wraps the provider's wrapper in one of its own
    (1.110: `_AsyncChatStream`), whose finish reasons stay empty. So the handler is wrapped to note, for our
    route's requests only (`_stream_end` is set), that it filled one in; it still fills it in, so every other
    route is unchanged. Idempotent: LiteLLM runs a config-referenced module once per reference.
    """
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper

    fill_in = CustomStreamWrapper.finish_reason_handler
    if getattr(fill_in, "_mpilot_notices", False):
        return

    @functools.wraps(fill_in)
    def finish_reason_handler(self: Any, *args: Any, **kwargs: Any) -> Any:
        stream_end = _stream_end.get()
        if stream_end is not None and self.received_finish_reason is None \
                and self.intermittent_finish_reason is None and not _is_mock(self):  # LiteLLM's own test
            stream_end.filled_in = True
        return fill_in(self, *args, **kwargs)

    finish_reason_handler._mpilot_notices = True  # type: ignore[attr-defined]
    CustomStreamWrapper.finish_reason_handler = finish_reason_handler  # type: ignore[method-assign]


def _is_mock(stream: Any) -> bool:
    """A stream of LiteLLM's `mock_response` (no provider; it never carries a finish reason): flagged by
    LiteLLM since 1.109 (`is_mock`), known by its generator before."""
    if getattr(stream, "is_mock", False):
        return True
    generator = getattr(stream, "completion_stream", None)
    code = getattr(generator, "ag_code", None) or getattr(generator, "gi_code", None)
    return getattr(code, "co_name", "").endswith("mock_completion_streaming_obj")


def _cohere_sse_reader(self: Any, streaming_response: Any, sync_stream: bool, json_mode: bool | None = False) -> Any:
    """`CohereV2ChatConfig.get_model_response_iterator`, the plugin's (see `read_cohere_sse_streams`)."""
    return CohereSSEReader(streaming_response=streaming_response, sync_stream=sync_stream, json_mode=json_mode)


# One stream with text, a tool call and the end: what a release must read to keep its own reader.
_SAMPLE_COHERE_STREAM = [
    line
    for event in (
        {"type": "message-start", "id": "probe", "delta": {"message": {"role": "assistant"}}},
        {"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}},
        {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Hi"}}}},
        {"type": "content-end", "index": 0},
        {"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": {
            "id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": ""}}}}},
        {"type": "tool-call-delta", "index": 0,
         "delta": {"message": {"tool_calls": {"function": {"arguments": "{}"}}}}},
        {"type": "tool-call-end", "index": 0},
        {"type": "message-end", "delta": {"finish_reason": "TOOL_CALL", "usage": {
            "billed_units": {"input_tokens": 1, "output_tokens": 2},
            "tokens": {"input_tokens": 3, "output_tokens": 2}}}},
    )
    for line in (f"event: {event['type']}", f"data: {json.dumps(event)}", "")
]


def _reads_cohere_sse(config: Any) -> bool:
    """Whether `config`'s own stream reader gets the sample's text, tool call, finish reason and usage,
    as LiteLLM's generic stream chunks (what its Cohere reader has always yielded)."""
    try:
        chunks = list(config.get_model_response_iterator(streaming_response=iter(_SAMPLE_COHERE_STREAM),
                                                         sync_stream=True))
        text = "".join(chunk.get("text") or "" for chunk in chunks)
        calls = [chunk["tool_use"] for chunk in chunks if chunk.get("tool_use")]
        call = (calls[0]["id"], calls[0]["function"]["name"], "".join(c["function"]["arguments"] or "" for c in calls))
        usage = next(chunk["usage"] for chunk in chunks if chunk.get("usage"))
        finish = next(chunk["finish_reason"] for chunk in chunks if chunk.get("is_finished"))
    except Exception:  # noqa: BLE001  # any failure to read it means the release cannot
        return False
    return (text, call, finish, usage.get("prompt_tokens")) == ("Hi", ("call_0", "get_weather", "{}"), "tool_calls", 3)


# Cohere's finish reasons in OpenAI's words. ERROR and TIMEOUT end a stream with an error instead.
_OPENAI_FINISH = {"COMPLETE": "stop", "STOP_SEQUENCE": "stop", "MAX_TOKENS": "length", "TOOL_CALL": "tool_calls"}


class CohereSSEReader(BaseModelResponseIterator):
    """Cohere's v2 chat stream, SSE lines in, LiteLLM's generic stream chunks out; one per stream.

    A LiteLLM base iterator, as its other providers' readers are (its Cohere reader is not): LiteLLM's
    HTTP handler then hands it the HTTP response, which its `close`/`aclose` release."""

    def __next__(self) -> GenericStreamingChunk:
        for line in self.response_iterator:
            chunk = self.chunk_for(line)
            if chunk is not None:
                return chunk
        raise StopIteration

    async def __anext__(self) -> GenericStreamingChunk:
        async for line in self.async_response_iterator:
            chunk = self.chunk_for(line)
            if chunk is not None:
                return chunk
        raise StopAsyncIteration

    def chunk_for(self, line: str | bytes) -> GenericStreamingChunk | None:
        """The chunk one line of the stream makes; None for lines and events that carry nothing for
        LiteLLM (`event:` lines, since the type is in the JSON too; blank lines; `:` comments;
        message-start, content-start/end, tool-call-end, citation-end)."""
        text = line.decode() if isinstance(line, bytes) else line
        if text.startswith("data:"):
            payload = text[5:].strip()
        elif text.lstrip().startswith("{"):
            payload = text  # one JSON object a line, which LiteLLM's own reader took: kept working
        else:
            return None
        try:
            event = json.loads(payload)
        except ValueError:
            raise ValueError(f"Cohere stream: a data line is not JSON: {payload[:200]!r}") from None
        return self.chunk_parser(event) if isinstance(event, dict) else None

    def chunk_parser(self, chunk: dict) -> GenericStreamingChunk | None:  # type: ignore[override]
        """One Cohere stream event (its `type` inside) as LiteLLM's generic chunk. The tool plan and
        citations go where LiteLLM's own parser puts them, in `provider_specific_fields` (`tool_plan`,
        `citations`: a list of Cohere's citation objects), which LiteLLM hands on in each delta's
        `provider_specific_fields`."""
        kind = chunk.get("type")
        delta = chunk.get("delta") or {}
        message = delta.get("message") or {}
        if kind == "content-delta":
            content = message.get("content")
            text = content.get("text") if isinstance(content, dict) else None  # thinking deltas: not read
            return _generic(text=text) if text else None
        if kind == "tool-plan-delta":
            plan = message.get("tool_plan")
            return _generic(provider_specific_fields={"tool_plan": plan}) if plan else None
        if kind in ("tool-call-start", "tool-call-delta"):
            call = message.get("tool_calls") or {}
            function = call.get("function") or {}
            starts = kind == "tool-call-start"
            if not starts and not function.get("arguments"):
                return None
            # `index` counts Cohere's tool calls, as OpenAI's tool-call index does; the choice is always 0.
            return _generic(tool_use={"id": call.get("id") if starts else None, "type": "function",
                                      "function": {"name": function.get("name") if starts else None,
                                                   "arguments": function.get("arguments") or ""},
                                      "index": int(chunk.get("index") or 0)})
        if kind == "citation-start":
            citation = message.get("citations")
            return _generic(provider_specific_fields={"citations": [citation]}) if citation else None
        if kind == "message-end":
            reason = str(delta.get("finish_reason") or "COMPLETE")
            if reason in ("ERROR", "TIMEOUT") or delta.get("error"):
                # A stream Cohere broke off is a failure, not an answer that ended well.
                error = f"Cohere ended the stream with {reason}" + (f": {delta['error']}" if delta.get("error") else "")
                raise CohereProviderError(status_code=504 if reason == "TIMEOUT" else 500, message=error)
            return _generic(is_finished=True, finish_reason=_OPENAI_FINISH.get(reason, "stop"),
                            usage=_cohere_usage(delta.get("usage")))
        return None


def _generic(**fields: Any) -> GenericStreamingChunk:
    chunk = GenericStreamingChunk(text="", tool_use=None, is_finished=False, finish_reason="", usage=None, index=0,
                                  provider_specific_fields=None)
    chunk.update(fields)  # type: ignore[typeddict-item]
    return chunk


def _cohere_usage(usage: Any) -> ChatCompletionUsageBlock | None:
    """Cohere's counted tokens, as LiteLLM's non-stream Cohere answers report them (not the billed units)."""
    tokens = usage.get("tokens") if isinstance(usage, dict) else None
    if not isinstance(tokens, dict):
        return None
    prompt, completion = int(tokens.get("input_tokens") or 0), int(tokens.get("output_tokens") or 0)
    block = ChatCompletionUsageBlock(prompt_tokens=prompt, completion_tokens=completion,
                                     total_tokens=prompt + completion)
    if usage.get("cached_tokens"):
        block["prompt_tokens_details"] = {"cached_tokens": int(usage["cached_tokens"])}
    return block


# --- Cohere embed and rerank (issue 12) -------------------------------------------------------------------


@dataclass(frozen=True)
class LitellmView:
    """How LiteLLM is to see one of our routes that is not a chat: as its own route of the same kind
    (`/v1/embeddings`, `/v1/rerank`), which gives it that route's call types (LiteLLM then finds them at
    once instead of matching the path against every pattern it knows, as for the chat route) and the
    budget estimate that route's rules (inputs counted, no output tokens); and our request body in that
    route's shape (None: not a body the route will accept, which it refuses itself)."""

    route: str
    body: Callable[[dict[str, Any]], dict[str, Any] | None]


_views: dict[str, LitellmView] = {}


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
    seen = view.body(body) if view is not None else None
    return (seen, view.route) if view is not None and seen is not None else (body, route)


def _unstreamed(frames: AsyncIterator[str | bytes]) -> AsyncIterator[str | bytes]:
    return frames  # embeddings and rankings are never streamed


async def embed(request: Request, caller: Caller, openai_body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """LiteLLM's embedding call for `openai_body` (OpenAI's `/v1/embeddings` shape), through the proxy's
    request processing as its own `/v1/embeddings` runs it: (OpenAI-format response, response headers)."""
    return await complete(request, caller, openai_body, frames=_unstreamed, route_type="aembedding")


async def rerank(request: Request, caller: Caller, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """LiteLLM's rerank call for `body` (its rerank shape, which is Cohere's), through the proxy's request
    processing (its own `/v1/rerank` skips part of it: the post-call hooks): (response, headers)."""
    return await complete(request, caller, body, frames=_unstreamed, route_type="arerank")


def search_units_cost(body: dict[str, Any], route: str, models: list[str]) -> float:
    """The most a rerank call may cost where its model is priced per search unit (`input_cost_per_query`,
    which LiteLLM's own estimate does not read): the dearest price of the models named times the call's
    search units by Cohere's definition, one per 100 documents. 0 for any other call."""
    from litellm.proxy import proxy_server as proxy

    documents = body.get("documents")
    if route != "/v1/rerank" or not isinstance(documents, list) or not documents:
        return 0.0
    prices = [_price_per_query(deployment) for deployment in (proxy.llm_router.model_list if proxy.llm_router else [])
              if deployment.get("model_name") in models]
    return max(prices, default=0.0) * -(-len(documents) // 100)


def _price_per_query(deployment: Mapping[str, Any]) -> float:
    """A deployment's price per search unit: its `model_info`'s, else LiteLLM's model map's."""
    import litellm

    price = (deployment.get("model_info") or {}).get("input_cost_per_query")
    if price is None:
        name = str((deployment.get("litellm_params") or {}).get("model") or "")
        price = (litellm.model_cost.get(name) or litellm.model_cost.get(name.partition("/")[2]) or {}) \
            .get("input_cost_per_query")
    return float(price or 0.0)


# --- Cohere models and tokenizers (issue 12) ---------------------------------------------------------


def mount_without_model_calls(router: APIRouter) -> None:
    """`mount`, for routes that never reach a model (model lists, tokenizing): a key's rate limits and
    budget do not count them (see `reaches_no_model`), as LiteLLM exempts its own model lists."""
    mount(router)
    for route in router.routes:
        pattern = getattr(route, "path_regex", None)
        if pattern is not None and pattern not in _NO_MODEL_CALL_ROUTES:
            _NO_MODEL_CALL_ROUTES.append(pattern)


_NO_MODEL_CALL_ROUTES: list[re.Pattern[str]] = []


def reaches_no_model(route: str) -> bool:
    """Whether `route` (a request's path) is one of the plugin's routes that never reach a model."""
    return any(pattern.match(route) for pattern in _NO_MODEL_CALL_ROUTES)


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
    package = __name__.rpartition(".")[0] + "."
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


async def model_groups(caller: Caller) -> list[Any]:
    """The router's model groups `caller` may use (LiteLLM's own model check, as the chat route's auth
    makes it), in the order of the proxy's `model_list`, as `cohere.models.ModelGroup`s. Wildcard
    groups (`openai/*`) name no model and are left out."""
    from litellm.proxy import proxy_server as proxy

    router = proxy.llm_router
    names: list[str] = []
    for deployment in (router.model_list if router else []):
        name = deployment.get("model_name")
        if isinstance(name, str) and name and "*" not in name and name not in names:
            names.append(name)
    return [_model_group(router, name) for name in names if await may_call_model(caller, name)]


def _model_group(router: Any, name: str) -> Any:
    from .cohere.models import ModelGroup

    info = _group_info(router, name)
    deployments = [d for d in router.model_list if d.get("model_name") == name]
    max_input = getattr(info, "max_input_tokens", None)
    return ModelGroup(
        name=name,
        mode=getattr(info, "mode", None),
        max_input_tokens=int(max_input) if isinstance(max_input, int | float) and max_input > 0 else None,
        supports_function_calling=bool(getattr(info, "supports_function_calling", False)),
        supports_vision=bool(getattr(info, "supports_vision", False)),
        supports_response_schema=bool(deployments) and all(_supports_response_schema(d) for d in deployments),
    )


def _group_info(router: Any, name: str) -> Any:
    """LiteLLM's info of a model group (mode, limits, what it supports, from the deployments' model_info
    and its model map). Release adapter: `registry().group(name)` from 1.110 (which deprecates the old
    name), `get_model_group_info(name)` before."""
    try:
        if hasattr(router, "registry"):
            return router.registry().group(name)
        return router.get_model_group_info(model_group=name)
    except Exception as error:  # noqa: BLE001  # a group LiteLLM cannot describe is still listed, bare
        log.warning("MPilot models: no model info for %r (%s)", name, type(error).__name__)
        return None


def _supports_response_schema(deployment: Mapping[str, Any]) -> bool:
    """The deployment's `model_info.supports_response_schema` when set, else LiteLLM's model map (its
    model group info does not carry this one)."""
    configured = (deployment.get("model_info") or {}).get("supports_response_schema")
    if isinstance(configured, bool):
        return configured
    import litellm

    params = deployment.get("litellm_params") or {}
    try:
        return bool(litellm.supports_response_schema(model=str(params.get("model") or ""),
                                                     custom_llm_provider=params.get("custom_llm_provider")))
    except Exception:  # noqa: BLE001  # a model LiteLLM does not know supports nothing it could promise
        return False


class ModelTokenizer:
    """The tokenizer LiteLLM picks for a model group's first deployment (its token counter's): a
    HuggingFace tokenizer for some models, tiktoken for the rest. `name` says which; `warnings` say when
    it is not the model's own."""

    def __init__(self, selected: Mapping[str, Any], kind: str | None) -> None:
        self._tokenizer = selected["tokenizer"]
        self._huggingface = selected.get("type") == "huggingface_tokenizer"
        self.warnings: list[str] = []
        if self._huggingface:
            self.name = f"huggingface/{kind}" if kind else "huggingface"
        else:
            self.name = f"tiktoken/{getattr(self._tokenizer, 'name', 'default')}"
            self.warnings.append(
                f"the model's own tokenizer ({kind}, from HuggingFace) could not be loaded; tokens are counted "
                f"with {self.name} and may differ from the model's" if kind else
                f"LiteLLM has no tokenizer of this model's own; tokens are counted with its default, {self.name}, "
                "and may differ from the model's")

    def encode(self, text: str) -> tuple[list[int], list[str]]:
        """Token ids and each token's text. Without special tokens (a BOS), as Cohere's SDKs tokenize."""
        if self._huggingface:
            encoding = self._tokenizer.encode(text, add_special_tokens=False)
            # Tokens that split one character (byte-level BPE) share its span: the first carries it.
            strings, covered = [], 0
            for start, end in encoding.offsets:
                strings.append(text[max(start, covered):end])
                covered = max(covered, end)
            return list(encoding.ids), strings
        ids = self._tokenizer.encode(text, disallowed_special=())
        return ids, [self._tokenizer.decode_single_token_bytes(i).decode("utf-8", errors="replace") for i in ids]

    def decode(self, tokens: list[int]) -> str:
        """`tokens` as text; `CohereError` 400 naming the first id that is not one of this tokenizer's."""
        vocabulary = self._tokenizer.get_vocab_size() if self._huggingface else self._tokenizer.n_vocab
        for index, token in enumerate(tokens):
            if token >= vocabulary:
                raise CohereError(400, f"tokens[{index}]: {token} is not a token of {self.name} "
                                       f"(ids are below {vocabulary})", code="invalid_field")
        try:
            return self._tokenizer.decode(tokens)
        except (KeyError, ValueError) as error:  # tiktoken's vocabulary has gaps
            raise CohereError(400, f"tokens: not all are tokens of {self.name} ({redact(str(error))[:200]})",
                              code="invalid_field") from None


async def model_tokenizer(model_group: str) -> ModelTokenizer:
    """LiteLLM's tokenizer for `model_group`, picked by the model of its first deployment without the
    provider prefix (as LiteLLM's `/utils/token_counter` does). Picked in a worker thread: a tokenizer
    LiteLLM downloads from HuggingFace (Cohere's command-r, Llama) takes a network call the first time,
    and without a network, LiteLLM gives up after ~25 s of retries and picks tiktoken (then remembers)."""
    from litellm import utils
    from litellm.proxy import proxy_server as proxy

    router = proxy.llm_router
    deployment = next((d for d in (router.model_list if router else []) if d.get("model_name") == model_group), {})
    model = str((deployment.get("litellm_params") or {}).get("model") or model_group)
    model = model.split("/", 1)[1] if "/" in model else model
    # Release adapter: public `select_tokenizer` in 1.110, `_select_tokenizer` before (1.110 keeps that too).
    select = getattr(utils, "select_tokenizer", None) or utils._select_tokenizer
    kind_of = getattr(utils, "huggingface_tokenizer_kind", None)  # 1.110; earlier releases: not named
    selected = await asyncio.to_thread(select, model=model)
    return ModelTokenizer(selected, kind_of(model) if kind_of else None)
