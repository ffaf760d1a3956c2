"""`cohere_frames` when what feeds it raises (a hook or guardrail refusing mid-stream): before anything
was sent, one OpenAI-format error frame that LiteLLM answers as a JSON error with its status; after,
Cohere's closing events with the error. Driven directly, without a proxy."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import HTTPException

from plugin.cohere.stream import CohereStream
from plugin.routes.chat import cohere_frames

CHUNK = b'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'


def run(frames: list[bytes], failure: BaseException | None) -> tuple[list[bytes], bool]:
    closed = []

    async def source() -> AsyncIterator[bytes]:
        try:
            for frame in frames:
                yield frame
            if failure is not None:
                raise failure
        finally:
            closed.append(True)

    async def collect() -> list[bytes]:
        return [out async for out in cohere_frames(source(), CohereStream())]

    return asyncio.run(collect()), bool(closed)


def events(out: list[bytes]) -> list[dict]:
    lines = b"".join(out).decode().splitlines()
    return [json.loads(line[6:]) for line in lines if line.startswith("data: ")]


def test_failure_before_anything_was_sent_is_one_error_frame_with_its_status() -> None:
    out, closed = run([], HTTPException(400, detail={"error": "Content blocked: keyword 'x' detected"}))
    assert len(out) == 1 and out[0].startswith(b"data: ")
    error = json.loads(out[0][6:])["error"]
    assert error == {"message": "Content blocked: keyword 'x' detected", "code": "400"}
    assert closed


def test_failure_after_a_keep_alive_ends_the_cohere_stream() -> None:
    out, _ = run([b": ping\n\n"], HTTPException(400, detail="blocked"))
    assert out[0] == b": ping\n\n"
    sent = events(out[1:])
    assert [e["type"] for e in sent] == ["message-start", "message-end"]
    assert sent[-1]["delta"]["finish_reason"] == "ERROR" and sent[-1]["delta"]["error"] == "blocked"


def test_failure_mid_stream_closes_the_open_block_then_ends_with_error() -> None:
    out, closed = run([CHUNK], RuntimeError("upstream went away"))
    sent = events(out)
    assert [e["type"] for e in sent] == ["message-start", "content-start", "content-delta", "content-end",
                                         "message-end"]
    assert sent[-1]["delta"] == {"finish_reason": "ERROR", "error": "upstream went away",
                                 "usage": sent[-1]["delta"]["usage"]}
    assert closed


def test_timeout_mid_stream_is_timeout() -> None:
    out, _ = run([CHUNK], HTTPException(504, detail="the provider took too long"))
    assert events(out)[-1]["delta"]["finish_reason"] == "TIMEOUT"


def test_a_secret_in_the_failure_is_not_sent() -> None:
    out, _ = run([CHUNK], RuntimeError("bad key sk-bf-live-0123456789abcdef0123"))
    assert b"sk-bf-live-0123456789abcdef0123" not in b"".join(out)
