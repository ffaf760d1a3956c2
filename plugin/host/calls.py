"""One call through LiteLLM's own request processing: the proxy's auth for our routes, the call (chat,
embedding, rerank) with its hooks, router and spend logging, its failures as Cohere errors, and how a
stream ends (cut off, stalled) and how long each try may take.
"""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from litellm.proxy._types import ProxyException
from litellm.proxy.auth.user_api_key_auth import user_api_key_auth
from litellm.proxy.common_request_processing import ProxyBaseLLMRequestProcessing
from litellm.proxy.route_llm_request import ProxyModelNotFoundError

from ..cohere.errors import CohereError, call_failure_message, cohere_status, redact
from ..cohere.schema import decode_json_body, parse_chat_request
from .app import seen_by_auth
from .keys import Caller, share_json_body

# Turns LiteLLM's own OpenAI-format SSE frames into the frames we send.
FrameTranslator = Callable[[AsyncIterator[str | bytes]], AsyncIterator[str | bytes]]


@functools.wraps(user_api_key_auth)
async def caller_or_refusal(*args: Any, **kwargs: Any) -> Caller | CohereError:
    """The proxy's own auth (custom auth hook included), its refusal returned instead of raised so
    the route can answer it in Cohere's shape. FastAPI reads the wrapped function's header params."""
    request: Request = kwargs["request"]
    # Keep the raw body: LiteLLM's auth may consume the stream (a form content type) and we parse
    # the Cohere request from the bytes ourselves.
    limit = _body_limit[0]
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
        share_json_body(request, seen_by_auth(parsed, request.url.path))
    try:
        return await user_api_key_auth(*args, **kwargs)
    except Exception as error:  # noqa: BLE001  # every refusal becomes a Cohere error
        refusal = error_from_exception(error)
        if refusal.message == _NO_DATABASE:
            # Without a key store LiteLLM cannot look the token up: to the client it is unknown.
            return CohereError(401, "the API key is not valid", headers=refusal.headers)
        return refusal


_NO_DATABASE = "No connected db."
_body_limit = [20 * 1024 * 1024]  # bytes of a request body the plugin's routes read; `limit_request_bodies`


def limit_request_bodies(most_bytes: int) -> None:
    """The largest body the plugin's routes read (`mpilot.limits.max_request_bytes`): larger ones get 413."""
    _body_limit[0] = most_bytes


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
        model = str(kwargs.get("model") or (args[0] if args else ""))
        provider = str(kwargs.get("custom_llm_provider") or model.partition("/")[0])
        try:
            async with asyncio.timeout(seconds):
                result = await try_call(*args, **kwargs)
        except TimeoutError:
            raise litellm.Timeout(
                message=f"the provider did not answer within {seconds:g}s (the deployment's timeout)",
                model=model, llm_provider=provider,
            ) from None
        if kwargs.get("stream"):
            _bound_first_chunk(result, seconds, model, provider)
        return result

    bounded._mpilot_bounded = True  # type: ignore[attr-defined]
    return bounded


def _bound_first_chunk(stream: Any, seconds: float, model: str, provider: str) -> None:
    """A stream's first chunk within `seconds` too, wherever it is read: LiteLLM 1.110's router reads it
    inside the try, after `acompletion` returned at the response's headers, and a provider that sends its
    headers at once and then drips its body a byte at a time held that read ~40 s. Past the timeout it
    fails with LiteLLM's `Timeout`, as a try that did not answer (the router retries or falls back; the
    client gets a 504, nothing having been sent). Later chunks: `_cut_off_streams_fail`."""
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper

    if type(stream) is CustomStreamWrapper:  # another release's or provider's stream: left as it is
        stream.__class__ = _first_chunk_bounded_class()
        stream._mpilot_first_chunk = (seconds, model, provider)  # type: ignore[attr-defined]


@functools.cache
def _first_chunk_bounded_class() -> type:
    """CustomStreamWrapper, its first `__anext__` bounded (made once: LiteLLM is imported by then)."""
    import litellm
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper

    class FirstChunkBounded(CustomStreamWrapper):  # type: ignore[misc]
        async def __anext__(self) -> Any:
            bound = self.__dict__.pop("_mpilot_first_chunk", None)
            if bound is None:
                return await super().__anext__()
            seconds, model, provider = bound
            try:
                async with asyncio.timeout(seconds):
                    return await super().__anext__()
            except TimeoutError:
                raise litellm.Timeout(
                    message=f"the provider sent no whole chunk of its stream within {seconds:g}s "
                            "(the deployment's timeout)", model=model, llm_provider=provider) from None

    return FirstChunkBounded


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
