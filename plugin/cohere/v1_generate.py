"""Cohere v1 generate (deprecated by Cohere, still called by LlamaIndex's `complete`) <-> Cohere v2 chat:
the prompt as one user message to any chat model, the answer as `generations`, the stream as one JSON
event per line (`text-generation`, then `stream-end` with the whole answer).

Pure: data in, data out; imports nothing from LiteLLM.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import Field

from .errors import CohereError
from .schema import ChatRequest, RequestSchema
from .v1_chat import meta

Event = dict[str, Any]
_FINISH = {"COMPLETE": "COMPLETE", "STOP_SEQUENCE": "COMPLETE", "MAX_TOKENS": "MAX_TOKENS",
           "TOOL_CALL": "COMPLETE", "ERROR": "ERROR", "TIMEOUT": "ERROR"}


class GenerateRequest(RequestSchema):
    prompt: str = Field(min_length=1)
    model: str = Field(min_length=1)
    num_generations: int | None = Field(default=None, ge=1, le=5)
    stream: bool | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    truncate: Literal["NONE", "START", "END"] | None = None
    temperature: float | None = Field(default=None, ge=0, le=5)
    seed: int | None = None
    preset: str | None = None
    end_sequences: list[str] | None = None
    stop_sequences: list[str] | None = None
    k: int | None = Field(default=None, ge=0, le=500)
    p: float | None = Field(default=None, ge=0.01, le=0.99)
    frequency_penalty: float | None = Field(default=None, ge=0, le=1)
    presence_penalty: float | None = Field(default=None, ge=0, le=1)
    return_likelihoods: Literal["GENERATION", "ALL", "NONE"] | None = None
    raw_prompting: bool | None = None


def to_v2_chat(request: GenerateRequest) -> tuple[ChatRequest, float | None]:
    """The chat request that asks for the same generation, and the temperature to send as it is (generate
    takes up to 5, chat up to 1). Refuses by name what a chat model cannot do for it."""
    if (request.num_generations or 1) > 1:
        raise CohereError(400, "num_generations must be 1 here: each generation is one chat call; make one "
                               "request per generation")
    if request.truncate in ("START", "END"):
        raise CohereError(400, f"truncate {request.truncate} is not supported: this gateway never cuts the prompt; "
                               "use NONE")
    if request.preset is not None:
        raise CohereError(400, "preset is not supported: presets live on Cohere's platform; send the prompt and "
                               "its parameters")
    if request.return_likelihoods in ("GENERATION", "ALL"):
        raise CohereError(400, "return_likelihoods is not supported: use NONE (or v2 chat's logprobs)")
    if request.raw_prompting:
        raise CohereError(400, "raw_prompting is not supported: the prompt is sent as one user message")
    stops = [*(request.end_sequences or []), *(request.stop_sequences or [])]
    if len(stops) > 5:
        raise CohereError(400, f"end_sequences and stop_sequences may hold 5 sequences together, got {len(stops)}")
    body: dict[str, Any] = {"model": request.model, "messages": [{"role": "user", "content": request.prompt}]}
    if stops:
        body["stop_sequences"] = stops
    for name in ("max_tokens", "seed", "k", "p", "frequency_penalty", "presence_penalty", "stream"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    return ChatRequest.model_validate(body), request.temperature


def to_generate_response(v2: Mapping[str, Any], request: GenerateRequest, generation_id: str | None = None
                         ) -> dict[str, Any]:
    message = v2.get("message") or {}
    text = "".join(block.get("text") or "" for block in message.get("content") or [] if block.get("type") == "text")
    generation = {"id": generation_id or str(uuid.uuid4()), "text": text, "index": 0,
                  "finish_reason": _FINISH.get(v2.get("finish_reason") or "COMPLETE", "COMPLETE")}
    return {"id": v2.get("id") or str(uuid.uuid4()), "generations": [generation], "prompt": request.prompt,
            "meta": meta(v2.get("usage"))}


class GenerateStream:
    """v2 stream events -> v1 generate stream events, per request."""

    def __init__(self, request: GenerateRequest) -> None:
        self._request = request
        self._id = ""
        self._generation_id = str(uuid.uuid4())
        self._text: list[str] = []

    def events(self, v2_events: Sequence[Event]) -> list[Event]:
        out: list[Event] = []
        for event in v2_events:
            kind, delta = event.get("type"), event.get("delta") or {}
            if kind == "message-start":
                self._id = event.get("id") or ""
            elif kind == "content-delta":
                text = ((delta.get("message") or {}).get("content") or {}).get("text")
                if text:
                    self._text.append(text)
                    out.append({"event_type": "text-generation", "text": text, "is_finished": False})
            elif kind == "message-end":
                v2 = {"id": self._id, "finish_reason": delta.get("finish_reason"), "usage": delta.get("usage"),
                      "message": {"content": [{"type": "text", "text": "".join(self._text)}]}}
                response = to_generate_response(v2, self._request, self._generation_id)
                out.append({"event_type": "stream-end", "is_finished": True,
                            "finish_reason": response["generations"][0]["finish_reason"], "response": response})
        return out
