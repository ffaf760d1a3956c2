"""`POST /litellm/cohere/v2/chat`: auth -> validate -> translate -> LiteLLM -> translate back."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from .. import host
from ..auth.hook import mpilot_auth
from ..cohere.citations import citation_sources
from ..cohere.errors import CohereError, redact
from ..cohere.request import to_openai_request
from ..cohere.response import to_cohere_response
from ..cohere.schema import ChatRequest, parse_chat_request
from ..cohere.stream import CohereStream, sse
from ..cohere.wire import dumps, loads

PATH = "/litellm/cohere/v2/chat"
log = logging.getLogger(__name__)

router = APIRouter()


@router.post(PATH, tags=["Cohere v2 chat (MPilot)"])
async def cohere_v2_chat(
    request: Request,
    caller: Annotated[host.Caller | CohereError, Depends(host.caller_or_refusal)],
) -> Response:
    """Cohere's v2 chat API, served by any model the proxy's router can reach."""
    if isinstance(caller, CohereError):
        return error_response(caller)
    try:
        chat = parse_chat_request(await request.body())
        sources = citation_sources(chat)
        native = native_citations(chat, sources)

        def frames(openai: AsyncIterator[str | bytes]) -> AsyncIterator[str | bytes]:
            return cohere_frames(openai, CohereStream(chat.stop_sequences, bool(chat.logprobs), sources, native))

        openai_body = to_openai_request(chat, sources, native_documents=native)
        result, headers = await host.complete(request, caller, openai_body, frames=frames)
    except CohereError as error:
        await mpilot_auth().release(host.reservation_of(caller))  # a call that never ran costs nothing
        return error_response(error)
    if isinstance(result, Response):
        return result
    body = to_cohere_response(result, chat.stop_sequences, with_logprobs=bool(chat.logprobs), sources=sources,
                              native_citations=native)
    return Response(content=dumps(body), media_type="application/json", headers=headers)


def native_citations(chat: ChatRequest, sources: dict[str, Any] | None) -> bool:
    """Whether the provider cites the documents itself: Cohere's own models take documents natively, and
    LiteLLM's Cohere provider hands their citations on (non-stream as annotations, a stream's in its
    deltas' provider fields, through `host.read_cohere_sse_streams`). It drops tool citations: those ask
    for markup instead."""
    return bool(chat.documents) and host.served_by_cohere(chat.model) \
        and not any(source["type"] == "tool" for source in (sources or {}).values())


def _as_openai_chat(body: dict[str, Any]) -> dict[str, Any] | None:
    """A Cohere chat body as the route sends it to LiteLLM, for the budget estimate: LiteLLM counts only a
    chat's `messages`, `tools` and `tool_choice`, so its documents must be in the messages to be counted
    (rendered as text even where a Cohere model takes them natively: they are billed as input either way)."""
    try:
        chat = ChatRequest.model_validate(body)
        return to_openai_request(chat, citation_sources(chat), native_documents=False)
    except (ValidationError, CohereError):
        return None


VIEWS = {PATH: host.LitellmView("/v1/chat/completions", _as_openai_chat)}


def error_response(error: CohereError) -> Response:
    headers = dict(error.headers)
    body = error.body(host.call_id(headers))
    return Response(
        content=dumps(body), status_code=error.status, media_type="application/json", headers=headers
    )


def sse_frames(events: list[dict[str, Any]]) -> bytes:
    return b"".join(sse(event) for event in events)


async def cohere_frames(openai_frames: AsyncIterator[str | bytes], stream: CohereStream,
                        encode: Callable[[list[dict[str, Any]]], bytes] = sse_frames,
                        keep_alive: bytes | None = None) -> AsyncIterator[str | bytes]:
    """LiteLLM's OpenAI-format SSE frames, as Cohere v2 stream events, chunk by chunk. The events one
    upstream chunk makes go out in one write, as LiteLLM's own route writes one frame per chunk.
    `encode`: the events' wire form (v2's SSE; v1's JSON lines); `keep_alive`: what an upstream keep-alive
    comment becomes (None: passed on as it is).

    A failure before anything was sent becomes an OpenAI-format error frame, which LiteLLM answers as
    a JSON error with its status (the route then gives it Cohere's shape); after that, the stream
    ends with `message-end` ERROR (or TIMEOUT) and the error's text.
    """
    sent = False
    try:
        try:
            async for raw in openai_frames:
                frame = raw if isinstance(raw, bytes) else raw.encode()
                if not frame.startswith(b"data: "):
                    sent = True
                    yield frame if keep_alive is None else keep_alive  # keep-alive comments
                    continue
                if frame.startswith(b"data: [DONE]"):
                    events = stream.finish()
                else:
                    chunk = loads(frame[6:])
                    error = chunk.get("error")
                    if error is None:
                        events = stream.feed(chunk)
                    elif not sent:
                        yield frame
                        return
                    else:
                        message = redact(str(error.get("message") or "upstream error"))
                        events = stream.fail(message, timed_out=host.stream_error_timed_out(error))
                if events:
                    sent = True
                    yield encode(events)
            events = stream.finish()
        except Exception as failure:  # noqa: BLE001  # e.g. a guardrail blocking the answer: LiteLLM re-raises it
            refusal = host.error_from_exception(failure)
            log.warning("Cohere stream ended by %s: %s", type(failure).__name__, refusal.message)
            if not sent:
                yield b"data: " + dumps({"error": {"message": refusal.message, "code": str(refusal.status)}}) + b"\n\n"
                return
            events = stream.fail(refusal.message, timed_out=refusal.status == 504)
        if events:
            yield encode(events)
    finally:
        await openai_frames.aclose()
