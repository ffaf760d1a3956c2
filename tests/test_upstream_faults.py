"""A provider answering 200 with something broken (tests/fake_upstream.py FAULTS), stream and non-stream:
the client gets an error status in Cohere's shape, or a stream whose `message-end` says ERROR (TIMEOUT),
never an answer that looks complete; and the proxy answers the next request on the same connection."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .fake_upstream import FakeUpstream, Reply
from .harness import MASTER_KEY, ProxyProcess
from .test_bad_input import local_port
from .test_route_errors import assert_cohere_error
from .test_route_http import frames

PATH = "/litellm/cohere/v2/chat"
USER = [{"role": "user", "content": "hi"}]
TEXT = "Hello from the fake upstream."
# What a stream cut off before its finish reason ends with: the plugin's words, or LiteLLM 1.109+'s own for
# OpenAI-format streams that sent a chunk ("Stream ended before a finish_reason was received").
ENDED_EARLY = re.compile(r"ended (early|before).*finish.?reason", re.IGNORECASE)


@pytest.fixture(scope="module")
def client(proxy: ProxyProcess) -> Iterator[httpx.Client]:
    """One keep-alive connection for the module."""
    with httpx.Client(base_url=proxy.url, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30) as http:
        yield http


def ask(http: httpx.Client, fake: FakeUpstream, reply: Reply, stream: bool, model: str = "fake",
        ) -> tuple[httpx.Response, list[dict[str, Any]]]:
    """The answer to one request that `reply` serves, with its stream events; then a good request on the same
    connection must be answered."""
    fake.script(reply)
    response = http.post(PATH, json={"model": model, "messages": USER, "stream": stream})
    events = [data for _, data in frames(response.text.splitlines())] \
        if response.headers["content-type"].startswith("text/event-stream") else []
    after = http.post(PATH, json={"model": "fake", "messages": USER})
    assert after.status_code == 200, after.text
    assert local_port(after) == local_port(response), "the proxy dropped the connection"
    return response, events


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(event["delta"]["message"]["content"].get("text", "") for event in events
                   if event["type"] == "content-delta")


def ended(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The delta of the stream's one `message-end`, its last event."""
    assert events and events[0]["type"] == "message-start", events
    assert [event["type"] for event in events].count("message-end") == 1
    assert events[-1]["type"] == "message-end"
    return events[-1]["delta"]


# --- non-stream ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["garbage", "wrong-shape", "invalid-sse", "html", "empty", "reset",
                                   "reset-after-finish"])
def test_a_broken_answer_is_a_500(client: httpx.Client, fake: FakeUpstream, fault: str) -> None:
    response, _ = ask(client, fake, Reply(fault=fault), stream=False)
    assert_cohere_error(response, 500)


def test_an_answer_without_a_finish_reason_is_complete(client: httpx.Client, fake: FakeUpstream) -> None:
    """A non-stream answer is one JSON document, and a cut one does not parse (above): one that arrived whole
    was not cut off, its provider just did not say why it stopped. LiteLLM reports "stop"."""
    response, _ = ask(client, fake, Reply(fault="no-finish"), stream=False)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["finish_reason"] == "COMPLETE"
    assert body["message"]["content"] == [{"type": "text", "text": TEXT}]


def test_a_stalled_answer_is_a_504(client: httpx.Client, fake: FakeUpstream) -> None:
    response, _ = ask(client, fake, Reply(fault="stall", stall_seconds=4), stream=False, model="fake-timeout")
    assert_cohere_error(response, 504)  # the model `fake-timeout` allows 1.5 s


def test_a_dripped_answer_is_read_whole(client: httpx.Client, fake: FakeUpstream) -> None:
    response, _ = ask(client, fake, Reply(fault="drip"), stream=False)
    assert response.status_code == 200, response.text
    assert response.json()["message"]["content"][0]["text"] == TEXT


def test_a_dripping_answer_is_cut_at_the_deployments_timeout(client: httpx.Client, fake: FakeUpstream) -> None:
    """No read waits more than 20 ms, but the whole answer would take ~8 s: the model allows a try 1.5 s."""
    started = time.monotonic()
    response, _ = ask(client, fake, Reply(fault="drip", chunk_delay=0.02), stream=False, model="fake-timeout")
    assert_cohere_error(response, 504)
    assert "1.5s" in response.json()["message"]
    assert time.monotonic() - started < 5, "the call was not cut at its timeout"


def test_a_try_cut_at_its_timeout_falls_back(client: httpx.Client, fake: FakeUpstream) -> None:
    """The router treats the cut try as it treats a read timeout: the next deployment answers."""
    before = len(fake.requests)
    response, _ = ask(client, fake, Reply(fault="drip", chunk_delay=0.02), stream=False,
                      model="fake-timeout-then-fake")
    assert response.status_code == 200, response.text
    assert response.json()["message"]["content"][0]["text"] == TEXT
    assert len(fake.requests) - before == 3  # the dripped try, its fallback, and `ask`'s next request


# --- stream --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["no-finish", "empty", "html", "invalid-sse"])
def test_a_stream_that_ends_without_a_finish_reason_ends_with_error(client: httpx.Client, fake: FakeUpstream,
                                                                    fault: str) -> None:
    response, events = ask(client, fake, Reply(fault=fault), stream=True)
    assert response.status_code == 200, response.text
    end = ended(events)
    assert end["finish_reason"] == "ERROR", end
    assert ENDED_EARLY.search(end["error"]), end["error"]
    if fault == "no-finish":
        assert text_of(events) == TEXT  # what did arrive is still sent


def test_a_cohere_stream_without_its_message_end_ends_with_error(client: httpx.Client, fake: FakeUpstream) -> None:
    """A provider LiteLLM reads by its own chunk parser (Cohere's, through the plugin's reader)."""
    response, events = ask(client, fake, Reply(fault="no-finish"), stream=True, model="fake-cohere")
    end = ended(events)
    assert end["finish_reason"] == "ERROR", end
    assert ENDED_EARLY.search(end["error"]), end["error"]
    assert text_of(events) == TEXT


@pytest.mark.parametrize("fault", ["wrong-shape", "reset"])
def test_a_stream_broken_on_the_way_ends_with_error(client: httpx.Client, fake: FakeUpstream, fault: str) -> None:
    response, events = ask(client, fake, Reply(fault=fault), stream=True)
    assert response.status_code == 200, response.text
    end = ended(events)
    assert end["finish_reason"] == "ERROR", end
    assert end["error"]


def test_a_stream_reset_after_its_finish_reason_is_never_complete_without_its_text(client: httpx.Client,
                                                                                   fake: FakeUpstream) -> None:
    """Only [DONE] (and the usage) is missing. LiteLLM 1.110 ends such a stream with an error; an answer whose
    provider said it finished, with all its text, could honestly be COMPLETE too."""
    _, events = ask(client, fake, Reply(fault="reset-after-finish"), stream=True)
    end = ended(events)
    assert end["finish_reason"] == "ERROR" or (end["finish_reason"] == "COMPLETE" and text_of(events) == TEXT), end


def test_a_stream_whose_first_chunk_is_garbage_is_a_500(client: httpx.Client, fake: FakeUpstream) -> None:
    response, _ = ask(client, fake, Reply(fault="garbage"), stream=True)
    assert_cohere_error(response, 500)  # nothing was sent yet: a plain error


def test_a_stalled_stream_ends_with_timeout(client: httpx.Client, fake: FakeUpstream) -> None:
    _, events = ask(client, fake, Reply(fault="stall", stall_seconds=4), stream=True, model="fake-timeout")
    assert ended(events)["finish_reason"] == "TIMEOUT"


def test_a_dripping_stream_ends_with_timeout(client: httpx.Client, fake: FakeUpstream) -> None:
    """Two whole chunks, then one byte each 20 ms: each later chunk takes ~4 s, the model allows 1.5 s."""
    started = time.monotonic()
    _, events = ask(client, fake, Reply(fault="drip", chunk_delay=0.02), stream=True, model="fake-timeout")
    end = ended(events)
    assert end["finish_reason"] == "TIMEOUT", end
    assert "1.5s" in end["error"]
    assert text_of(events) == TEXT[:4]  # the whole chunks still went out
    assert time.monotonic() - started < 5, "the stream was not cut at its timeout"


@pytest.mark.parametrize(("reply", "model", "finish_reason"), [
    pytest.param(Reply(), "fake", "COMPLETE", id="stop"),
    pytest.param(Reply(finish_reason="length"), "fake", "MAX_TOKENS", id="length"),
    pytest.param(Reply(tool_calls=[{"id": "c1", "name": "f", "arguments": "{}"}]), "fake", "TOOL_CALL",
                 id="tool-calls"),
    pytest.param(Reply(fault="drip"), "fake", "COMPLETE", id="dripped"),
    pytest.param(Reply(), "fake-cohere", "COMPLETE", id="cohere-provider"),
    pytest.param(Reply(), "demo", "COMPLETE", id="mock-response"),  # LiteLLM's mock_response, no provider
])
def test_a_stream_with_its_finish_reason_keeps_it(client: httpx.Client, fake: FakeUpstream, reply: Reply,
                                                  model: str, finish_reason: str) -> None:
    _, events = ask(client, fake, reply, stream=True, model=model)
    end = ended(events)
    assert end == {"finish_reason": finish_reason, "usage": end["usage"]}


@pytest.mark.parametrize("byte_every", [0.05, 1.0])
def test_a_stream_that_drips_from_its_first_byte_is_cut_at_its_stream_timeout(
        client: httpx.Client, fake: FakeUpstream, byte_every: float) -> None:
    """The headers at once, then every byte `byte_every` seconds apart (a deployment with `timeout: 2` and
    `stream_timeout: 2`): no chunk is ever whole in time, nothing has been sent, so a Cohere-shaped 504,
    within a few multiples of the stream's timeout (before: held ~40 s, then `message-end` ERROR)."""
    started = time.monotonic()
    response, events = ask(client, fake, Reply(fault="drip-all", chunk_delay=byte_every), stream=True,
                           model="drip-guarded")
    took = time.monotonic() - started
    assert response.status_code == 504, (response.status_code, took, response.text[-700:])
    assert "2s" in response.json()["message"] and not events
    assert took < 3 * 2 + 2, took
