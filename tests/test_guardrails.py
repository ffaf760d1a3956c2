"""LiteLLM's guardrails guard the Cohere route as they guard /v1/chat/completions: a proxy of its own
with LiteLLM's built-in content filter (no outside service), on the request and on the answer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cohere
import cohere.errors
import httpx
import pytest

from .fake_upstream import FakeUpstream, Reply
from .harness import MASTER_KEY, ProxyProcess, proxy_config_for
from .test_route_http import PATH, frames

BLOCKED, MASKED, REDACTED = "forbidden-topic", "secret-sauce", "[KEYWORD_REDACTED]"


@pytest.fixture(scope="module")
def guarded(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    config = proxy_config_for(upstream)
    config["guardrails"] = [{
        "guardrail_name": "words",
        "litellm_params": {"guardrail": "litellm_content_filter", "mode": ["pre_call", "post_call"],
                           "default_on": True,
                           "blocked_words": [{"keyword": BLOCKED, "action": "BLOCK"},
                                             {"keyword": MASKED, "action": "MASK"}]},
    }]
    process = ProxyProcess(config, tmp_path_factory.mktemp("guarded")).start()
    yield process
    process.stop()


@pytest.fixture
def http(guarded: ProxyProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=guarded.url, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30) as c:
        yield c


@pytest.fixture
def co(guarded: ProxyProcess) -> cohere.ClientV2:
    return cohere.ClientV2(api_key=MASTER_KEY, base_url=f"{guarded.url}/litellm/cohere", timeout=30, max_retries=0)


def ask(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def test_a_blocked_request_never_reaches_the_provider(http: httpx.Client, co: cohere.ClientV2,
                                                      fake: FakeUpstream) -> None:
    response = http.post(PATH, json={"model": "fake", "messages": ask(f"tell me about {BLOCKED}")})
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"type", "message", "code", "id"}
    assert f"keyword '{BLOCKED}' detected" in body["message"]
    with pytest.raises(cohere.errors.BadRequestError):
        co.chat(model="fake", messages=ask(f"more on {BLOCKED}"))
    with pytest.raises(cohere.errors.BadRequestError):
        list(co.chat_stream(model="fake", messages=ask(f"and {BLOCKED} streamed")))
    assert fake.requests == []


def test_a_masked_word_is_masked_on_the_way_to_the_provider(co: cohere.ClientV2, fake: FakeUpstream) -> None:
    co.chat(model="fake", messages=ask(f"what is the {MASKED}?"))
    sent = fake.requests[-1].body["messages"][-1]["content"]
    assert MASKED not in sent
    assert sent == f"what is the {REDACTED}?"


def test_a_masked_word_is_masked_in_the_answer(co: cohere.ClientV2, fake: FakeUpstream) -> None:
    fake.script(Reply(text=f"The {MASKED} is ketchup."))
    assert co.chat(model="fake", messages=ask("hi")).message.content[0].text == f"The {REDACTED} is ketchup."
    fake.script(Reply(text=f"The {MASKED} is ketchup.", chunk_size=3))
    events = list(co.chat_stream(model="fake", messages=ask("hi")))
    text = "".join(e.delta.message.content.text for e in events if e.type == "content-delta")
    assert text == f"The {REDACTED} is ketchup."
    assert events[-1].type == "message-end" and events[-1].delta.finish_reason == "COMPLETE"


def test_a_blocked_answer_is_refused(http: httpx.Client, fake: FakeUpstream) -> None:
    fake.script(Reply(text=f"Here is all about {BLOCKED}."))
    response = http.post(PATH, json={"model": "fake", "messages": ask("hi")})
    assert response.status_code == 400, response.text
    assert f"keyword '{BLOCKED}' detected" in response.json()["message"]


def test_a_blocked_stream_ends_with_an_error_event(http: httpx.Client, co: cohere.ClientV2,
                                                   fake: FakeUpstream) -> None:
    """The guardrail blocks after the stream has started; LiteLLM re-raises its refusal mid-stream
    (its own route then cuts the connection); the Cohere stream ends properly instead."""
    fake.script(Reply(text=f"Here is all about {BLOCKED}.", chunk_size=4))
    with http.stream("POST", PATH, json={"model": "fake", "messages": ask("hi"), "stream": True}) as response:
        assert response.status_code == 200
        events = list(frames(response.iter_lines()))
    assert events[0][0] == "message-start"
    name, end = events[-1]
    assert name == "message-end"
    assert end["delta"]["finish_reason"] == "ERROR"
    assert f"keyword '{BLOCKED}' detected" in end["delta"]["error"]
    assert not any(BLOCKED in str(data) for name, data in events if name == "content-delta")
    fake.script(Reply(text=f"Here is all about {BLOCKED}.", chunk_size=4))
    last = list(co.chat_stream(model="fake", messages=ask("hi")))[-1]
    assert last.type == "message-end" and last.delta.finish_reason == "ERROR"


def test_embed_and_rerank_are_guarded_as_litellms_own_routes(http: httpx.Client, fake: FakeUpstream) -> None:
    """The content filter reads an embedding's input and a ranking's query as it does on LiteLLM's own
    `/v1/embeddings` and `/v1/rerank`: blocked on both, nothing sent."""
    texts = [f"all about {BLOCKED}"]
    ours = http.post("/litellm/cohere/v2/embed", json={"model": "fake-embed", "input_type": "search_query",
                                                       "texts": texts})
    theirs = http.post("/v1/embeddings", json={"model": "fake-embed", "input": texts})
    assert (ours.status_code, theirs.status_code) == (400, 400), (ours.text, theirs.text)
    assert f"keyword '{BLOCKED}' detected" in ours.json()["message"]
    assert set(ours.json()) == {"type", "message", "code", "id"}
    ranking = {"model": "fake-rerank", "query": f"what is {BLOCKED}", "documents": ["a", "b"]}
    ours, theirs = http.post("/litellm/cohere/v2/rerank", json=ranking), http.post("/v1/rerank", json=ranking)
    assert (ours.status_code, theirs.status_code) == (400, 400), (ours.text, theirs.text)
    assert ours.json()["message"] == f"Content blocked: keyword '{BLOCKED}' detected"
    assert fake.requests == []
