"""`POST /litellm/cohere/v1/chat`: Cohere's v1 chat (`cohere.Client.chat`, `chat_stream`), asked as the
v2 chat it translates to and answered in v1's shape; the same auth, limits and spend as v2's route."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from .. import host
from ..auth.hook import mpilot_auth
from ..cohere.citations import citation_sources
from ..cohere.errors import CohereError
from ..cohere.request import to_openai_request
from ..cohere.response import to_cohere_response
from ..cohere.schema import parse_body
from ..cohere.stream import CohereStream
from ..cohere.v1_chat import V1ChatRequest, V1ChatStream, refused_fields, to_v1_response, to_v2_chat
from ..cohere.wire import dumps
from .chat import cohere_frames, error_response

PATH = "/litellm/cohere/v1/chat"
STREAM_MEDIA_TYPE = "application/stream+json"  # one JSON event per line, as Cohere's v1 stream

router = APIRouter()


@router.post(PATH, tags=["Cohere v1 chat (MPilot)"])
async def cohere_v1_chat(
    request: Request,
    caller: Annotated[host.Caller | CohereError, Depends(host.caller_or_refusal)],
) -> Response:
    """Cohere's v1 chat API, served by any model the proxy's router can reach."""
    if isinstance(caller, CohereError):
        return error_response(caller)
    try:
        v1 = parse_body(V1ChatRequest, await request.body())
        refused_fields(v1)
        chat = to_v2_chat(v1)
        sources = citation_sources(chat)
        native = bool(chat.documents) and not chat.stream and host.served_by_cohere(chat.model) \
            and not any(source["type"] == "tool" for source in (sources or {}).values())

        def frames(openai: AsyncIterator[str | bytes]) -> AsyncIterator[str | bytes]:
            return cohere_frames(openai, CohereStream(chat.stop_sequences, False, sources),
                                 encode=_json_lines(V1ChatStream(v1)), keep_alive=b"\n")

        openai_body = to_openai_request(chat, sources, native_documents=native)
        result, headers = await host.complete(request, caller, openai_body, frames=frames)
    except CohereError as error:
        await mpilot_auth().release(host.reservation_of(caller))  # a call that never ran costs nothing
        return error_response(error)
    if isinstance(result, Response):
        result.headers["content-type"] = STREAM_MEDIA_TYPE
        return result
    v2 = to_cohere_response(result, chat.stop_sequences, sources=sources, native_citations=native)
    return Response(content=dumps(to_v1_response(v2, v1)), media_type="application/json", headers=headers)


def _json_lines(stream: V1ChatStream) -> Any:
    def encode(events: list[dict[str, Any]]) -> bytes:
        return b"".join(dumps(event) + b"\n" for event in stream.events(events))

    return encode


def _as_openai_chat(body: dict[str, Any]) -> dict[str, Any] | None:
    """A v1 chat body as LiteLLM's chat route would see it, for the budget estimate (see `chat.VIEWS`)."""
    try:
        chat = to_v2_chat(V1ChatRequest.model_validate(body))
        return to_openai_request(chat, citation_sources(chat), native_documents=False)
    except (ValidationError, CohereError):
        return None


VIEWS = {PATH: host.LitellmView("/v1/chat/completions", _as_openai_chat)}
