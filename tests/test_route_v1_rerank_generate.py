"""Cohere's v1 rerank and v1 generate (deprecated by Cohere) through the real proxy with the real
`cohere.Client`: v1 request and answer shapes, documents as strings or objects, `rank_fields`,
`return_documents`; generate answered through the chat path for any chat model, stream and non-stream;
bad input a 400 naming the field; the same limits as every route."""

from __future__ import annotations

import json

import cohere
import httpx
import pytest

from .fake_upstream import FakeUpstream, Reply
from .harness import MASTER_KEY, ProxyProcess, virtual_key

DOCUMENTS = ["Blue whales are the largest animals", "The sky is blue", "Carpets are soft"]


@pytest.fixture
def v1(proxy: ProxyProcess) -> cohere.Client:
    return cohere.Client(api_key=MASTER_KEY, base_url=f"{proxy.url}/litellm/cohere", timeout=30, max_retries=0)


def post(proxy: ProxyProcess, path: str, body: dict, token: str = MASTER_KEY) -> httpx.Response:
    return httpx.post(f"{proxy.url}/litellm/cohere/v1/{path}", json=body,
                      headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_v1_rerank_of_strings_with_documents_returned(v1: cohere.Client, fake: FakeUpstream) -> None:
    answer = v1.rerank(model="fake-rerank", query="blue whales", documents=DOCUMENTS, top_n=2, return_documents=True)
    assert [(r.index, r.relevance_score) for r in answer.results] == [(0, 1.0), (1, 0.5)]
    assert [r.document.text for r in answer.results] == DOCUMENTS[:2]
    assert answer.meta.api_version.version == "1"
    assert fake.last["documents"] == DOCUMENTS and fake.last["top_n"] == 2


def test_v1_rerank_of_objects_by_text_or_rank_fields(proxy: ProxyProcess, fake: FakeUpstream) -> None:
    objects = [{"text": "Blue whales are the largest animals", "source": "encyclopedia"},
               {"text": "Carpets are soft", "source": "shop"}]
    answer = post(proxy, "rerank", {"model": "fake-rerank", "query": "blue whales", "documents": objects,
                                    "return_documents": True}).json()
    assert answer["results"][0] == {"index": 0, "relevance_score": 1.0, "document": objects[0]}
    assert fake.last["documents"] == [document["text"] for document in objects]
    without = post(proxy, "rerank", {"model": "fake-rerank", "query": "blue whales", "documents": objects}).json()
    assert all("document" not in result for result in without["results"])

    titled = [{"title": "Whales", "body": "Blue whales are the largest animals"}, {"title": "Rugs", "body": "soft"}]
    ranked = post(proxy, "rerank", {"model": "fake-rerank", "query": "blue whales", "documents": titled,
                                    "rank_fields": ["title", "body"]})
    assert ranked.status_code == 200, ranked.text
    assert fake.last["documents"] == ["title: Whales\nbody: Blue whales are the largest animals",
                                      "title: Rugs\nbody: soft"]


@pytest.mark.parametrize(("body", "named"), [
    ({"documents": [{"title": "no text"}]}, "documents[0].text"),
    ({"documents": [{"text": "a"}], "rank_fields": ["title"]}, "'title' of rank_fields"),
    ({"documents": []}, "documents"),
    ({"query": ""}, "query"),
    ({"top_n": 0}, "top_n"),
])
def test_bad_v1_rerank_is_a_400_naming_the_field(proxy: ProxyProcess, fake: FakeUpstream, body: dict,
                                                 named: str) -> None:
    response = post(proxy, "rerank", {"model": "fake-rerank", "query": "q", "documents": ["a"], **body})
    assert response.status_code == 400, response.text
    assert named in response.json()["message"]
    assert fake.requests == []  # nothing reached the provider


def test_v1_generate_answers_through_any_chat_model(v1: cohere.Client, fake: FakeUpstream) -> None:
    fake.script(Reply(text="Once upon a time.", prompt_tokens=9, completion_tokens=4))
    answer = v1.generate(model="fake", prompt="Tell a story", max_tokens=30, temperature=1.5,
                         end_sequences=["THE END"], k=3, p=0.5, seed=2)
    (generation,) = answer.generations
    assert generation.text == "Once upon a time." and generation.id and answer.id
    assert answer.prompt == "Tell a story"
    assert answer.meta.billed_units.output_tokens == 4 and answer.meta.api_version.version == "1"
    sent = fake.last
    assert sent["messages"] == [{"role": "user", "content": "Tell a story"}]
    assert (sent["max_tokens"], sent["temperature"], sent["stop"], sent["top_p"], sent["seed"]) == \
        (30, 1.5, ["THE END"], 0.5, 2)


def test_v1_generate_stream(v1: cohere.Client, proxy: ProxyProcess, fake: FakeUpstream) -> None:
    fake.script(Reply(text="Streamed generation.", completion_tokens=3))
    events = list(v1.generate_stream(model="fake", prompt="Go"))
    assert [event.event_type for event in events][-1] == "stream-end"
    text = "".join(event.text for event in events if event.event_type == "text-generation")
    assert text == "Streamed generation."
    end = events[-1]
    assert end.is_finished and end.finish_reason == "COMPLETE"
    assert end.response.generations[0].text == text
    fake.script(Reply(text="raw"))
    with httpx.stream("POST", f"{proxy.url}/litellm/cohere/v1/generate",
                      json={"model": "fake", "prompt": "hi", "stream": True},
                      headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30) as raw:
        lines = [json.loads(line) for line in raw.iter_lines() if line]
    assert lines[-1]["event_type"] == "stream-end" and lines[-1]["response"]["generations"][0]["text"] == "raw"


@pytest.mark.parametrize(("body", "named"), [
    ({"num_generations": 2}, "num_generations"),
    ({"truncate": "END"}, "truncate"),
    ({"preset": "my-preset"}, "preset"),
    ({"return_likelihoods": "GENERATION"}, "return_likelihoods"),
    ({"raw_prompting": True}, "raw_prompting"),
    ({"prompt": ""}, "prompt"),
    ({"temperature": 6}, "temperature"),
    ({"stop_sequences": ["a", "b", "c"], "end_sequences": ["d", "e", "f"]}, "end_sequences and stop_sequences"),
])
def test_bad_v1_generate_is_a_400_naming_the_field(proxy: ProxyProcess, fake: FakeUpstream, body: dict,
                                                   named: str) -> None:
    response = post(proxy, "generate", {"model": "fake", "prompt": "hi", **body})
    assert response.status_code == 400, response.text
    assert named in response.json()["message"]
    assert fake.requests == []


@pytest.mark.parametrize(("path", "body"), [
    ("generate", {"model": "fake", "prompt": "hi"}),
    ("rerank", {"model": "fake-rerank", "query": "q", "documents": ["a"]}),
    ("chat", {"model": "fake", "message": "hi"}),
])
def test_every_v1_route_is_held_to_a_keys_limits(proxy: ProxyProcess, fake: FakeUpstream, path: str,
                                                  body: dict) -> None:
    assert post(proxy, path, body, virtual_key("cfg", "broke")).status_code == 402
    refused = post(proxy, path, {**body, "model": "fake-b"}, virtual_key("cfg", "models"))
    assert refused.status_code == 403 and "fake-b" in refused.json()["message"]
    assert post(proxy, path, body, virtual_key("cfg", "blocked")).status_code == 403
    assert fake.requests == []
