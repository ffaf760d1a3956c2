"""Raw HTTP against the route: SSE framing, headers, spend reported to LiteLLM, cancellation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .fake_upstream import FakeUpstream, Reply
from .harness import MASTER_KEY, PRICED, ProxyProcess, wait_for

PATH = "/litellm/cohere/v2/chat"
USER = [{"role": "user", "content": "hi"}]


def frames(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event name, JSON data) for each SSE frame, checking the framing on the way."""
    event: str | None = None
    for line in lines:
        if line.startswith("event: "):
            assert event is None, "two event lines in one frame"
            event = line[len("event: "):]
        elif line.startswith("data: "):
            assert event is not None, "a data line without its event line"
            data = json.loads(line[len("data: "):])
            yield event, data
            event = None
        elif line.startswith(":") or line == "":
            continue
        else:
            raise AssertionError(f"unexpected SSE line {line!r}")


def stream(http: httpx.Client, body: dict[str, Any]) -> tuple[httpx.Response, list[tuple[str, dict[str, Any]]]]:
    with http.stream("POST", PATH, json={**body, "stream": True}) as response:
        return response, list(frames(response.iter_lines()))


def test_stream_framing_and_indexes(http: httpx.Client, fake: FakeUpstream) -> None:
    fake.script(Reply(text="Thinking done, here it is.", reasoning="Let me think.", completion_tokens=9,
                      tool_calls=[{"id": "call_x", "name": "lookup", "arguments": '{"q": "x"}'}]))
    response, events = stream(http, {"model": "fake", "messages": USER})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    for name, data in events:
        assert data["type"] == name  # the event line names the JSON's own type
    names = [name for name, _ in events]
    assert names[0] == "message-start" and names[-1] == "message-end"
    assert names.count("message-start") == names.count("message-end") == 1
    blocks = [(d["index"], d["delta"]["message"]["content"]["type"]) for n, d in events if n == "content-start"]
    assert blocks == [(0, "thinking"), (1, "text")]
    assert [d["index"] for n, d in events if n == "content-end"] == [0, 1]
    assert {d["index"] for n, d in events if n == "content-delta" and "thinking" in d["delta"]["message"]["content"]} \
        == {0}
    assert [d["index"] for n, d in events if n == "tool-call-start"] == [0]
    # Every block is closed before the next one opens.
    open_blocks = 0
    for name in names:
        open_blocks += name in ("content-start", "tool-call-start")
        open_blocks -= name in ("content-end", "tool-call-end")
        assert open_blocks in (0, 1)
    end = events[-1][1]["delta"]
    assert end["finish_reason"] == "TOOL_CALL"
    assert end["usage"]["tokens"] == {"input_tokens": 11, "output_tokens": 9}


def test_stream_is_translated_as_it_arrives(http: httpx.Client, fake: FakeUpstream) -> None:
    """The upstream holds its stream after 3 chunks; the first text must already be here."""
    fake.script(Reply(text="first part, then the rest", hold_after=3))
    try:
        with http.stream("POST", PATH, json={"model": "fake", "messages": USER, "stream": True},
                         timeout=httpx.Timeout(8)) as response:
            events = frames(response.iter_lines())
            seen: list[str] = []
            for name, _ in events:
                seen.append(name)
                if name == "content-delta":
                    break
            assert seen[:2] == ["message-start", "content-start"]
            fake.release()
            rest = [name for name, _ in events]
            assert rest[-1] == "message-end"
    finally:
        fake.release()


def test_response_headers_and_cost(http: httpx.Client, fake: FakeUpstream, proxy: ProxyProcess) -> None:
    fake.script(Reply(prompt_tokens=100, completion_tokens=50))
    response = http.post(PATH, json={"model": "fake", "messages": USER})
    assert response.status_code == 200
    expected = 100 * PRICED["input_cost_per_token"] + 50 * PRICED["output_cost_per_token"]
    assert float(response.headers["x-litellm-response-cost"]) == pytest.approx(expected)
    assert response.headers["x-litellm-model-group"] == "fake"
    call_id = response.headers["x-litellm-call-id"]
    record = wait_for(lambda: next((r for r in proxy.spend_records() if r["call_id"] == call_id), None))
    assert record["status"] == "success"
    assert record["response_cost"] == pytest.approx(expected)
    assert record["model_group"] == "fake"


def test_streamed_cost_reaches_callbacks(http: httpx.Client, fake: FakeUpstream, proxy: ProxyProcess) -> None:
    fake.script(Reply(text="a streamed answer", prompt_tokens=40, completion_tokens=20))
    response, events = stream(http, {"model": "fake", "messages": USER})
    call_id = response.headers["x-litellm-call-id"]
    record = wait_for(lambda: next((r for r in proxy.spend_records() if r["call_id"] == call_id), None))
    assert record["stream"] is True
    assert record["response_cost"] == pytest.approx(40 * 1e-6 + 20 * 2e-6)


def test_client_disconnect_cancels_the_upstream_call(proxy: ProxyProcess, fake: FakeUpstream) -> None:
    fake.script(Reply(text="x" * 400, chunk_delay=0.05))  # 100 chunks, 5 s in all
    with httpx.Client(base_url=proxy.url, timeout=10) as client, client.stream(
        "POST", PATH, json={"model": "fake", "messages": USER, "stream": True},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    ) as response:
        for name, _ in frames(response.iter_lines()):
            if name == "content-delta":
                break
    # The client has gone after its first text; the upstream stream must be closed long before its end.
    wait_for(lambda: fake.disconnects == 1, timeout=3)


def test_unrelated_proxy_routes_still_work(http: httpx.Client, fake: FakeUpstream) -> None:
    response = http.post("/v1/chat/completions", json={"model": "fake", "messages": USER})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "Hello from the fake upstream."
    assert http.get("/health/liveliness").status_code == 200
