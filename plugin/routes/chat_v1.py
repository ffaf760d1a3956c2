"""`POST /litellm/cohere/v1/chat` (`cohere.Client.chat`, `chat_stream`) and `POST /litellm/cohere/v1/generate`
(`generate`, `generate_stream`; deprecated by Cohere): each asked as the v2 chat it translates to and
answered in v1's shape, a stream as one JSON event per line; the same auth, limits and spend as v2's."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
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
from ..cohere.schema import ChatRequest, parse_body
from ..cohere.stream import CohereStream
from ..cohere.v1_chat import V1ChatRequest, V1ChatStream, refused_fields, to_v1_response, to_v2_chat
from ..cohere.v1_generate import GenerateRequest, GenerateStream, to_generate_response
from ..cohere.v1_generate import to_v2_chat as generate_as_chat
from ..cohere.wire import dumps
from .chat import cohere_frames, error_response, native_citations

PATH = "/litellm/cohere/v1/chat"
GENERATE_PATH = "/litellm/cohere/v1/generate"
STREAM_MEDIA_TYPE = "application/stream+json"  # one JSON event per line, as Cohere's v1 streams

router = APIRouter()

Events = list[dict[str, Any]]


@dataclass(frozen=True)
class V1Call:
    """A v1 request as the chat it asks for, and how its answer and stream events go back to v1."""

    chat: ChatRequest
    answer: Callable[[dict[str, Any]], dict[str, Any]]  # v2 answer -> v1 answer
    stream: Callable[[], Callable[[Events], Events]]  # a per-request translator of v2 stream events
    temperature: float | None = None  # sent as it is (generate's range is wider than chat's)


def _chat_call(body: bytes) -> V1Call:
    v1 = parse_body(V1ChatRequest, body)
    refused_fields(v1)
    return V1Call(to_v2_chat(v1), lambda v2: to_v1_response(v2, v1), lambda: V1ChatStream(v1).events)


def _generate_call(body: bytes) -> V1Call:
    generate = parse_body(GenerateRequest, body)
    chat, temperature = generate_as_chat(generate)
    return V1Call(chat, lambda v2: to_generate_response(v2, generate), lambda: GenerateStream(generate).events,
                  temperature)


@router.post(PATH, tags=["Cohere v1 chat (MPilot)"])
async def cohere_v1_chat(
    request: Request,
    caller: Annotated[host.Caller | CohereError, Depends(host.caller_or_refusal)],
) -> Response:
    """Cohere's v1 chat API, served by any model the proxy's router can reach."""
    return await serve(request, caller, _chat_call)


@router.post(GENERATE_PATH, tags=["Cohere v1 generate, deprecated by Cohere (MPilot)"])
async def cohere_v1_generate(
    request: Request,
    caller: Annotated[host.Caller | CohereError, Depends(host.caller_or_refusal)],
) -> Response:
    """Cohere's v1 generate API (deprecated by Cohere), served by any chat model: the prompt as one user message."""
    return await serve(request, caller, _generate_call)


async def serve(request: Request, caller: host.Caller | CohereError, parse: Callable[[bytes], V1Call]) -> Response:
    if isinstance(caller, CohereError):
        return error_response(caller)
    try:
        call = parse(await request.body())
        chat = call.chat
        sources = citation_sources(chat)
        native = native_citations(chat, sources)

        def frames(openai: AsyncIterator[str | bytes]) -> AsyncIterator[str | bytes]:
            return cohere_frames(openai, CohereStream(chat.stop_sequences, False, sources, native),
                                 encode=_json_lines(call.stream()), keep_alive=b"\n")

        openai_body = to_openai_request(chat, sources, native_documents=native)
        if call.temperature is not None:
            openai_body["temperature"] = call.temperature
        result, headers = await host.complete(request, caller, openai_body, frames=frames)
    except CohereError as error:
        await mpilot_auth().release(host.reservation_of(caller))  # a call that never ran costs nothing
        return error_response(error)
    if isinstance(result, Response):
        result.headers["content-type"] = STREAM_MEDIA_TYPE
        return result
    v2 = to_cohere_response(result, chat.stop_sequences, sources=sources, native_citations=native)
    return Response(content=dumps(call.answer(v2)), media_type="application/json", headers=headers)


def _json_lines(translate: Callable[[Events], Events]) -> Callable[[Events], bytes]:
    def encode(events: Events) -> bytes:
        return b"".join(dumps(event) + b"\n" for event in translate(events))

    return encode


def _as_openai_chat(parse: Callable[[bytes], V1Call]) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    def as_openai(body: dict[str, Any]) -> dict[str, Any] | None:
        """A v1 body as LiteLLM's chat route would see it, for the budget estimate (see `chat.VIEWS`)."""
        try:
            chat = parse(dumps(body)).chat
            return to_openai_request(chat, citation_sources(chat), native_documents=False)
        except (ValidationError, CohereError):
            return None

    return as_openai


# LiteLLM's auth reads the chat each asks for: a key's `allowed_tools` applies to v1's tools as to v2's.
VIEWS = {PATH: host.LitellmView("/v1/chat/completions", _as_openai_chat(_chat_call), auth_reads=True),
         GENERATE_PATH: host.LitellmView("/v1/chat/completions", _as_openai_chat(_generate_call), auth_reads=True)}
