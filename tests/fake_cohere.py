"""A fake of Cohere's own v2 chat API (`POST /v2/chat`) on loopback, answering as Cohere does.

What LiteLLM's Cohere provider (`cohere/...`, `cohere_chat/...`) talks to in the tests. A stream is
Cohere's real one (see /work/shared/spec/cohere-v2.md): `Content-Type: text/event-stream`, each event
an `event: <type>` line and a `data: <json>` line, a blank line after it, the event's type inside its
JSON as `type` (there is no `event` key in the JSON). Each request takes the next scripted
`CohereReply` (or the default one) and is recorded.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from .fake_upstream import Seen
from .loopback import LoopbackServer, free_port


@dataclass
class CohereReply:
    text: str = "Hello from the fake Cohere."
    tool_plan: str = ""
    tool_calls: list[dict[str, str]] = field(default_factory=list)  # [{"id", "name", "arguments"}]
    citations: list[dict[str, Any]] = field(default_factory=list)  # Cohere's citation objects
    finish_reason: str | None = None  # default: TOOL_CALL when there are tool calls, else COMPLETE
    error: str | None = None  # stream: after the text, end with message-end ERROR and this message
    input_tokens: int = 13
    output_tokens: int = 9
    # Cohere bills fewer input tokens than it counts (its own prompt template is not billed): a
    # different number shows which one a reader took.
    billed_input_tokens: int = 5
    cached_tokens: int = 0
    chunk_size: int = 4  # characters of text, tool plan and tool arguments per delta event

    def finish(self) -> str:
        if self.error is not None:
            return "ERROR"
        return self.finish_reason or ("TOOL_CALL" if self.tool_calls else "COMPLETE")

    def usage(self) -> dict[str, Any]:
        return {"billed_units": {"input_tokens": self.billed_input_tokens, "output_tokens": self.output_tokens},
                "tokens": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens},
                "cached_tokens": self.cached_tokens}


class FakeCohere:
    def __init__(self, default: CohereReply | None = None) -> None:
        self.port = free_port()
        self.default = default or CohereReply()
        self.chat_url = f"http://127.0.0.1:{self.port}/v2/chat"  # LiteLLM's `api_base` for it: the full URL
        self.requests: list[Seen] = []
        self._script: deque[CohereReply] = deque()
        self._lock = threading.Lock()
        self._server = LoopbackServer(Starlette(routes=[Route("/v2/chat", self._chat, methods=["POST"])]), self.port)

    def start(self) -> FakeCohere:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def script(self, *replies: CohereReply) -> None:
        with self._lock:
            self._script.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()

    @property
    def last(self) -> dict[str, Any]:
        return self.requests[-1].body

    def _next(self) -> CohereReply:
        with self._lock:
            return self._script.popleft() if self._script else self.default

    async def _chat(self, request: Request) -> Any:
        body = await request.json()
        self.requests.append(Seen(body=body, headers=dict(request.headers)))
        reply = self._next()
        if body.get("stream"):
            return StreamingResponse(_sse(_events(reply)), media_type="text/event-stream")
        return JSONResponse(_answer(reply))


def _answer(reply: CohereReply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant"}
    if reply.text:
        message["content"] = [{"type": "text", "text": reply.text}]
    if reply.tool_plan:
        message["tool_plan"] = reply.tool_plan
    if reply.tool_calls:
        message["tool_calls"] = [{"id": call["id"], "type": "function",
                                  "function": {"name": call["name"], "arguments": call["arguments"]}}
                                 for call in reply.tool_calls]
    if reply.citations:
        message["citations"] = reply.citations
    return {"id": "cohere-fake-1", "finish_reason": reply.finish(), "message": message, "usage": reply.usage()}


def _pieces(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


def _events(reply: CohereReply) -> list[dict[str, Any]]:
    """Cohere's event order: the tool plan, then the text block with the citations of its text before
    its end, then the tool calls, then message-end with the finish reason and usage."""
    events: list[dict[str, Any]] = [{"type": "message-start", "id": "cohere-fake-stream", "delta": {"message": {
        "role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}}]
    for piece in _pieces(reply.tool_plan, reply.chunk_size):
        events.append({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": piece}}})
    if reply.text:
        events.append({"type": "content-start", "index": 0,
                       "delta": {"message": {"content": {"type": "text", "text": ""}}}})
        for piece in _pieces(reply.text, reply.chunk_size):
            events.append({"type": "content-delta", "index": 0,
                           "delta": {"message": {"content": {"text": piece}}}})
        for n, citation in enumerate(reply.citations):
            events.append({"type": "citation-start", "index": n, "delta": {"message": {"citations": citation}}})
            events.append({"type": "citation-end", "index": n})
        events.append({"type": "content-end", "index": 0})
    for n, call in enumerate(reply.tool_calls):
        events.append({"type": "tool-call-start", "index": n, "delta": {"message": {"tool_calls": {
            "id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": ""}}}}})
        for piece in _pieces(call["arguments"], reply.chunk_size):
            events.append({"type": "tool-call-delta", "index": n,
                           "delta": {"message": {"tool_calls": {"function": {"arguments": piece}}}}})
        events.append({"type": "tool-call-end", "index": n})
    end: dict[str, Any] = {"finish_reason": reply.finish(), "usage": reply.usage()}
    if reply.error is not None:
        end["error"] = reply.error
    events.append({"type": "message-end", "delta": end})
    return events


async def _sse(events: list[dict[str, Any]]) -> AsyncIterator[str]:
    for event in events:
        yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
