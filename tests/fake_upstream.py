"""A small OpenAI-compatible chat server on loopback that the tests script and inspect.

The one faked edge of the system: LiteLLM's router talks to it as to any OpenAI-compatible
provider. Each request takes the next scripted `Reply` (or the default one) and is recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .loopback import LoopbackServer, free_port


@dataclass
class Reply:
    text: str = "Hello from the fake upstream."
    reasoning: str | None = None
    tool_calls: list[dict[str, str]] = field(default_factory=list)  # [{"id", "name", "arguments"}]
    finish_reason: str | None = None  # default: "tool_calls" when there are tool calls, else "stop"
    stop_reason: str | None = None  # vLLM-style: the stop sequence that ended the answer
    prompt_tokens: int = 11
    completion_tokens: int = 7
    cached_tokens: int = 0
    status: int = 200  # an error answer when not 200
    error_message: str = "upstream failure"
    delay: float = 0.0  # seconds before answering
    chunk_delay: float = 0.0  # seconds between stream chunks
    break_after: int | None = None  # stream: drop the connection after this many chunks
    chunk_size: int = 4  # characters of text per stream chunk
    hold_after: int | None = None  # stream: after this many chunks, wait for `FakeUpstream.release()`
    citations: list[dict[str, Any]] = field(default_factory=list)  # Cohere v2 answers: native citations
    fault: str | None = None  # a broken answer with status 200, one of FAULTS
    stall_seconds: float = 5.0  # `stall`: how long the answer stops half way (or until `FakeUpstream.release()`)

    def finish(self) -> str:
        return self.finish_reason or ("tool_calls" if self.tool_calls else "stop")


# Broken answers a provider (or what stands in front of it) gives with status 200, in both modes:
#   garbage             a body that is not JSON (stream: a `data:` line that is not JSON)
#   wrong-shape         JSON, but not a chat completion (stream: chunks of the wrong shape, then [DONE])
#   invalid-sse         stream: the chunks as bare JSON lines, no SSE framing; non-stream: an SSE body
#   html                an HTML error page
#   empty               no body at all
#   reset               half the answer, then the connection drops (stream: content, no finish reason)
#   reset-after-finish  stream: the whole answer with its finish reason, then the connection drops before [DONE]
#   stall               half the answer, then nothing for `stall_seconds`
#   no-finish           stream: content, no finish reason, no [DONE], a clean end (Cohere: no message-end);
#                       non-stream: finish_reason null
#   drip                the normal answer one byte at a time, `chunk_delay` apart (a stream: after two whole
#                       chunks), so that no read of it waits long
#   drip-all            the headers at once, then the whole answer one byte at a time, `chunk_delay` apart
FAULTS = ("garbage", "wrong-shape", "invalid-sse", "html", "empty", "reset", "reset-after-finish", "stall",
          "no-finish", "drip", "drip-all")
HTML_PAGE = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"


@dataclass
class Seen:
    body: dict[str, Any]
    headers: dict[str, str]


class FakeUpstream:
    def __init__(self, port: int | None = None, default: Reply | None = None) -> None:
        self.port = port or free_port()
        self.default = default or Reply()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.requests: list[Seen] = []
        self._answered = self.default
        self.disconnects = 0  # streams the caller abandoned before their end
        self.abandoned = 0  # non-stream calls the caller left while their answer was delayed
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._gate = threading.Event()
        app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"]),
                                Route("/v2/chat", self._cohere_chat, methods=["POST"]),
                                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
                                Route("/v2/embed", self._cohere_embed, methods=["POST"]),
                                Route("/v2/rerank", self._cohere_rerank, methods=["POST"])])
        self._server = LoopbackServer(app, self.port)

    def start(self) -> FakeUpstream:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def release(self) -> None:
        """Let a stream held by `Reply.hold_after` go on."""
        self._gate.set()

    def reset(self) -> None:
        self._gate.clear()
        with self._lock:
            self._script.clear()
            self.requests.clear()
            self.disconnects = 0
            self.abandoned = 0

    @property
    def last(self) -> dict[str, Any]:
        return self.requests[-1].body

    def _next(self) -> Reply:
        with self._lock:
            return self._script.popleft() if self._script else self.default

    async def _chat(self, request: Request) -> Any:
        body = await request.json()
        self.requests.append(Seen(body=body, headers=dict(request.headers)))
        reply = self._next()
        if reply.delay and not await self._wait_unless_abandoned(request, reply.delay):
            return JSONResponse({"error": {"message": "caller went away"}}, status_code=499)
        if reply.status != 200:
            return JSONResponse(
                {"error": {"message": reply.error_message, "type": "upstream_error", "code": str(reply.status)}},
                status_code=reply.status,
            )
        if reply.fault is not None:
            return self._faulty(body, reply)
        if body.get("stream"):
            return StreamingResponse(self._stream(body, reply), media_type="text/event-stream")
        return JSONResponse(_completion(body, reply))

    async def _wait_unless_abandoned(self, request: Request, seconds: float) -> bool:
        """Sleep `seconds`; False (counted in `abandoned`) as soon as the caller closes the connection."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if await request.is_disconnected():
                with self._lock:
                    self.abandoned += 1
                return False
            await asyncio.sleep(0.02)
        return True

    def _faulty(self, body: dict[str, Any], reply: Reply) -> Response:
        """`reply.fault` (see FAULTS), with status 200, as a stream or not as the request asked."""
        stream = bool(body.get("stream"))
        frames = [f"data: {json.dumps(chunk)}\n\n".encode() for chunk in _chunks(body, reply)]
        whole = json.dumps(_completion(body, reply)).encode()
        fault = reply.fault
        if fault == "garbage":
            parts = [b'data: {"id": "chatcmpl-garbage", "choices": [}{\n\n'] if stream else [b"}{ not JSON ]["]
        elif fault == "wrong-shape":
            parts = [b'data: {"unexpected": true}\n\n', b'data: {"choices": "none"}\n\n', b"data: [DONE]\n\n"] \
                if stream else [b'{"object": "list", "data": [{"unexpected": true}]}']
        elif fault == "invalid-sse":
            parts = [frame[6:].strip() + b"\n" for frame in frames] if stream else [*frames, b"data: [DONE]\n\n"]
        elif fault == "html":
            return Response(HTML_PAGE, media_type="text/html")
        elif fault == "empty":
            parts = []
        elif fault == "reset":
            parts = [*_without_finish(frames)[:3], _RESET] if stream else [whole[:len(whole) // 2], _RESET]
        elif fault == "reset-after-finish":
            parts = [*frames, _RESET] if stream else [whole, _RESET]
        elif fault == "stall":
            parts = [*frames[:2], _STALL] if stream else [whole[:len(whole) // 2], _STALL, whole[len(whole) // 2:]]
        elif fault == "no-finish":
            parts = _without_finish(frames) if stream else \
                [json.dumps(_completion(body, reply, with_finish=False)).encode()]
        elif fault == "drip":
            whole_first, rest = (frames[:2], [*frames[2:], b"data: [DONE]\n\n"]) if stream else ([], [whole])
            parts = [*whole_first, *(bytes([byte]) for part in rest for byte in part)]
        elif fault == "drip-all":
            answer = [*frames, b"data: [DONE]\n\n"] if stream else [whole]
            parts = [bytes([byte]) for part in answer for byte in part]
        else:
            raise ValueError(f"unknown fault {fault!r}: one of {FAULTS}")
        # invalid-sse answers a stream with the framing of the other mode, and the other way round
        media_type = "text/event-stream" if stream != (fault == "invalid-sse") else "application/json"
        return StreamingResponse(self._send(parts, reply), media_type=media_type)

    async def _send(self, parts: list[bytes | object], reply: Reply) -> AsyncIterator[bytes]:
        try:
            for part in parts:
                if part is _RESET:
                    await asyncio.sleep(DROP_PAUSE)
                    raise ConnectionResetError("fake upstream reset the connection")
                if part is _STALL:
                    for _ in range(int(reply.stall_seconds * 100)):
                        if self._gate.is_set():
                            break
                        await asyncio.sleep(0.01)
                    continue
                yield part
                if reply.chunk_delay:
                    await asyncio.sleep(reply.chunk_delay)
        except (asyncio.CancelledError, GeneratorExit):
            self.disconnects += 1
            raise

    async def _cohere_chat(self, request: Request) -> Any:
        """Cohere's own v2 chat API, as LiteLLM's Cohere provider calls it."""
        body = await request.json()
        self.requests.append(Seen(body=body, headers=dict(request.headers)))
        reply = self._next()
        if reply.status != 200:
            return JSONResponse({"message": reply.error_message}, status_code=reply.status)
        if body.get("stream"):
            return StreamingResponse(self._cohere_stream(reply), media_type="text/event-stream")
        message: dict[str, Any] = {"role": "assistant", "content": [{"type": "text", "text": reply.text}]}
        if reply.citations:
            message["citations"] = reply.citations
        return JSONResponse({
            "id": "cohere-fake-1", "finish_reason": "COMPLETE", "message": message,
            "usage": {"billed_units": {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens},
                      "tokens": {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens}},
        })

    async def _scripted_failure(self, request: Request, body: dict[str, Any]) -> Response | None:
        """Record a request; the next scripted reply's delay, and its error answer (Cohere's shape on
        Cohere's paths, OpenAI's elsewhere), if it has one."""
        self.requests.append(Seen(body=body, headers=dict(request.headers)))
        reply = self._next()
        if reply.delay and not await self._wait_unless_abandoned(request, reply.delay):
            return JSONResponse({"message": "caller went away"}, status_code=499)
        if reply.status == 200:
            self._answered = reply  # the reply the caller serves: it reads this before it awaits anything
            return None
        if request.url.path.startswith("/v2/"):
            return JSONResponse({"message": reply.error_message}, status_code=reply.status)
        return JSONResponse({"error": {"message": reply.error_message, "type": "upstream_error",
                                       "code": str(reply.status)}}, status_code=reply.status)

    async def _embeddings(self, request: Request) -> Any:
        """OpenAI's embeddings API: one vector per input, derived from its text (see `embedding_for`)."""
        body = await request.json()
        failure = await self._scripted_failure(request, body)
        if failure is not None:
            return failure
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        dimensions = int(body.get("dimensions") or EMBEDDING_DIMENSIONS)
        tokens = sum(embedding_tokens(text) for text in inputs)
        answer = {
            "object": "list", "model": body.get("model"),
            "data": [{"object": "embedding", "index": i, "embedding": embedding_for(text, dimensions)}
                     for i, text in enumerate(inputs)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        if self._answered.fault == "drip":  # one byte at a time, `chunk_delay` apart
            whole = json.dumps(answer).encode()
            return StreamingResponse(self._send([whole[i:i + 1] for i in range(len(whole))], self._answered),
                                     media_type="application/json")
        return JSONResponse(answer)

    async def _cohere_embed(self, request: Request) -> Any:
        """Cohere's own v2 embed API, as LiteLLM's Cohere provider calls it (floats only)."""
        body = await request.json()
        failure = await self._scripted_failure(request, body)
        if failure is not None:
            return failure
        inputs = body.get("texts") or body.get("images") or []
        dimensions = int(body.get("output_dimension") or EMBEDDING_DIMENSIONS)
        return JSONResponse({
            "id": "cohere-fake-embed", "response_type": "embeddings_by_type",
            "embeddings": {"float": [embedding_for(text, dimensions) for text in inputs]}, "texts": inputs,
            "meta": {"api_version": {"version": "2"},
                     "billed_units": {"input_tokens": sum(embedding_tokens(text) for text in inputs)}},
        })

    async def _cohere_rerank(self, request: Request) -> Any:
        """Cohere's own v2 rerank API, as LiteLLM's Cohere rerank provider calls it: each document scored
        by the share of the query's words it contains, best first; one search unit per 100 documents."""
        body = await request.json()
        failure = await self._scripted_failure(request, body)
        if failure is not None:
            return failure
        query = set(body["query"].lower().split())
        scores = [len(query & set(document.lower().split())) / max(1, len(query)) for document in body["documents"]]
        ranked = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:body.get("top_n") or len(scores)]
        return JSONResponse({
            "id": "cohere-fake-rerank",
            "results": [{"index": i, "relevance_score": scores[i]} for i in ranked],
            "meta": {"api_version": {"version": "2"},
                     "billed_units": {"search_units": -(-len(scores) // 100)}},
        })

    async def _cohere_stream(self, reply: Reply):
        # One JSON object a line: the framing LiteLLM 1.108.7's Cohere v2 stream parser reads (it fails
        # on SSE `event:`/`data:` lines, so it cannot stream Cohere's own SSE; see the closing notes).
        def event(data: dict[str, Any]) -> str:
            return json.dumps(data) + "\n"

        yield event({"type": "message-start", "id": "cohere-fake-stream", "delta": {"message": {"role": "assistant"}}})
        yield event({"type": "content-start", "index": 0,
                     "delta": {"message": {"content": {"type": "text", "text": ""}}}})
        for i in range(0, len(reply.text), reply.chunk_size):
            yield event({"type": "content-delta", "index": 0,
                         "delta": {"message": {"content": {"text": reply.text[i:i + reply.chunk_size]}}}})
        yield event({"type": "content-end", "index": 0})
        if reply.fault == "no-finish":
            return  # Cohere's stream cut off before its message-end
        tokens = {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens}
        yield event({"type": "message-end", "delta": {"finish_reason": "COMPLETE",
                                                      "usage": {"billed_units": tokens, "tokens": tokens}}})

    async def _stream(self, body: dict[str, Any], reply: Reply):
        chunks = _chunks(body, reply)
        sent = 0
        try:
            for chunk in chunks:
                if reply.hold_after is not None and sent == reply.hold_after:
                    for _ in range(1000):  # at most 10 s
                        if self._gate.is_set():
                            break
                        await asyncio.sleep(0.01)
                if reply.break_after is not None and sent >= reply.break_after:
                    await asyncio.sleep(DROP_PAUSE)
                    raise ConnectionAbortedError("fake upstream dropped the stream")
                yield f"data: {json.dumps(chunk)}\n\n"
                sent += 1
                if reply.chunk_delay:
                    await asyncio.sleep(reply.chunk_delay)
            yield "data: [DONE]\n\n"
        except (asyncio.CancelledError, GeneratorExit):
            self.disconnects += 1
            raise


EMBEDDING_DIMENSIONS = 16  # of every fake embedding, unless the request asks for other dimensions


def embedding_for(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """The fake's embedding of `text`: each value from a byte of SHA-256 digests of the text, in -1..1,
    four decimals, about half of them negative."""
    digest = b""
    while len(digest) < dimensions:
        digest += hashlib.sha256(f"{len(digest)}:{text}".encode()).digest()
    return [round((byte - 127.5) / 127.5, 4) for byte in digest[:dimensions]]


def embedding_tokens(text: str) -> int:
    """The tokens the fake bills for embedding `text`: its words, at least one."""
    return max(1, len(text.split()))


_RESET = object()  # in a faulty answer's parts: drop the connection here
# How long a stream that drops its connection waits after its last chunk: a reset that arrives with data the
# client has not read yet can discard that data (aiohttp, under LiteLLM's HTTP clients, raises the error
# before handing out what it buffered), which is a different fault from a reset after those chunks arrived.
DROP_PAUSE = 0.2
_STALL = object()  # in a faulty answer's parts: send nothing for `Reply.stall_seconds`


def _without_finish(frames: list[bytes]) -> list[bytes]:
    """Stream frames up to (not including) the one that carries the finish reason."""
    return [frame for frame in frames if b'"finish_reason": null' in frame]


def _usage(reply: Reply) -> dict[str, Any]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
    }


def _token_logprobs(text: str) -> dict[str, Any]:
    tokens = text.split(" ")
    return {"content": [
        {"token": (t if i == len(tokens) - 1 else t + " "), "logprob": -0.1 * (i + 1), "bytes": None,
         "top_logprobs": []}
        for i, t in enumerate(tokens)
    ]}


def _completion(body: dict[str, Any], reply: Reply, with_finish: bool = True) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.reasoning:
        message["reasoning_content"] = reply.reasoning
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in reply.tool_calls
        ]
    choice: dict[str, Any] = {"index": 0, "message": message,
                              "finish_reason": reply.finish() if with_finish else None}
    if reply.stop_reason is not None:
        choice["stop_reason"] = reply.stop_reason
    if body.get("logprobs") and reply.text:
        choice["logprobs"] = _token_logprobs(reply.text)
    return {
        "id": "chatcmpl-fake-1",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [choice],
        "usage": _usage(reply),
    }


def _chunks(body: dict[str, Any], reply: Reply) -> list[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish, **extra}
        return {"id": "chatcmpl-fake-stream", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": body.get("model", "fake"), "choices": [choice]}

    out = [chunk({"role": "assistant", "content": ""})]
    if reply.reasoning:
        for i in range(0, len(reply.reasoning), reply.chunk_size):
            out.append(chunk({"reasoning_content": reply.reasoning[i:i + reply.chunk_size]}))
    text = reply.text or ""
    for i in range(0, len(text), reply.chunk_size):
        piece = text[i:i + reply.chunk_size]
        extra = {"logprobs": _token_logprobs(piece)} if body.get("logprobs") else {}
        out.append(chunk({"content": piece}, **extra))
    for n, call in enumerate(reply.tool_calls):
        args = call["arguments"]
        half = len(args) // 2
        out.append(chunk({"tool_calls": [{"index": n, "id": call["id"], "type": "function",
                                          "function": {"name": call["name"], "arguments": ""}}]}))
        out.append(chunk({"tool_calls": [{"index": n, "function": {"arguments": args[:half]}}]}))
        out.append(chunk({"tool_calls": [{"index": n, "function": {"arguments": args[half:]}}]}))
    extra = {"stop_reason": reply.stop_reason} if reply.stop_reason is not None else {}
    out.append(chunk({}, reply.finish(), **extra))
    if (body.get("stream_options") or {}).get("include_usage"):
        out.append({"id": "chatcmpl-fake-stream", "object": "chat.completion.chunk", "created": int(time.time()),
                    "model": body.get("model", "fake"), "choices": [], "usage": _usage(reply)})
    return out


def main() -> None:
    """Serve standalone, for benchmarks: `python -m tests.fake_upstream --port P --words N`."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--words", type=int, default=40, help="words in every answer")
    args = parser.parse_args()
    text = " ".join(f"word{i}" for i in range(args.words))
    FakeUpstream(port=args.port, default=Reply(text=text, chunk_size=8))._server.run_here()


if __name__ == "__main__":
    main()
