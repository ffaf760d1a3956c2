"""Streams from Cohere's own API through LiteLLM's Cohere provider (`cohere_chat/...`, `cohere/...`): a real
proxy, a fake Cohere that streams exactly as Cohere does (SSE, `type` inside each event), both our route
and LiteLLM's own `/v1/chat/completions`. LiteLLM's own reader fails on the first SSE line; the plugin's
`host.read_cohere_sse_streams` makes these pass."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import cohere
import httpx
import pytest

from .fake_cohere import CohereReply, FakeCohere
from .fake_upstream import FakeUpstream
from .harness import MASTER_KEY, PRICED, ProxyProcess, proxy_config_for

QUESTION = [{"role": "user", "content": "What is the weather in Paris and in Rome?"}]
TEXT = "Paris is sunny today, and Rome is warm; both are pleasant."
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CALLS = [{"id": "call_paris", "name": "get_weather", "arguments": '{"city": "Paris"}'},
         {"id": "call_rome", "name": "get_weather", "arguments": '{"city": "Rome", "units": "metric"}'}]
PLAN = "I will look up the weather in both cities."
MODELS = ("cohere-chat", "cohere-plain")  # `cohere_chat/...` and `cohere/...`: both are LiteLLM's Cohere v2 chat
T = TypeVar("T")


@pytest.fixture(scope="module")
def cohere_api() -> Iterator[FakeCohere]:
    server = FakeCohere().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(upstream: FakeUpstream, cohere_api: FakeCohere,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    """A proxy of its own whose model_list has Cohere models as a user writes them: the provider's
    prefix, Cohere's chat URL as api_base, a key."""
    models = [{"model_name": name, "litellm_params": {"model": model, "api_base": cohere_api.chat_url,
                                                      "api_key": "fake"}, "model_info": dict(PRICED)}
              for name, model in zip(MODELS, ("cohere_chat/command-r", "cohere/command-a-03-2025"), strict=True)]
    process = ProxyProcess(proxy_config_for(upstream, extra_models=models),
                           tmp_path_factory.mktemp("cohere-provider")).start()
    yield process
    process.stop()


@pytest.fixture
def fake(cohere_api: FakeCohere) -> FakeCohere:
    cohere_api.reset()
    return cohere_api


@pytest.fixture
def co(proxy: ProxyProcess) -> cohere.ClientV2:
    return cohere.ClientV2(api_key=MASTER_KEY, base_url=f"{proxy.url}/litellm/cohere", timeout=30, max_retries=0)


@pytest.fixture
def http(proxy: ProxyProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxy.url, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30) as client:
        yield client


def openai_stream(http: httpx.Client, body: dict[str, Any]) -> tuple[httpx.Response, list[dict[str, Any]]]:
    """LiteLLM's own route, streamed: its response and every chunk before `[DONE]`."""
    chunks: list[dict[str, Any]] = []
    with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line[len("data: "):]))
    assert not any("error" in chunk for chunk in chunks), chunks
    return response, chunks


def deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [choice.get("delta") or {} for chunk in chunks for choice in chunk.get("choices") or ()]


def finish_reasons(chunks: list[dict[str, Any]]) -> list[str]:
    return [choice["finish_reason"] for chunk in chunks for choice in chunk.get("choices") or ()
            if choice.get("finish_reason")]


def types_before(events: list[Any], first: str) -> set[str]:
    return {e.type for e in events[:next(n for n, e in enumerate(events) if e.type == first)]}


def wait_for(probe: Callable[[], T | None], timeout: float = 5) -> T:
    deadline = time.monotonic() + timeout
    while (found := probe()) is None:
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return found


# --- our route, with the cohere SDK ------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_text_streams_whole_and_in_order(co: cohere.ClientV2, fake: FakeCohere, model: str) -> None:
    fake.script(CohereReply(text=TEXT, input_tokens=13, output_tokens=9, cached_tokens=4, chunk_size=3))
    events = list(co.chat_stream(model=model, messages=QUESTION))
    assert fake.last["stream"] is True  # it did stream from Cohere
    types = [e.type for e in events]
    assert types[:2] == ["message-start", "content-start"] and types[-2:] == ["content-end", "message-end"]
    assert "".join(e.delta.message.content.text for e in events if e.type == "content-delta") == TEXT
    end = events[-1].delta
    assert end.finish_reason == "COMPLETE"
    assert (end.usage.tokens.input_tokens, end.usage.tokens.output_tokens, end.usage.cached_tokens) == (13, 9, 4)


def test_tool_calls_stream_with_names_and_arguments(co: cohere.ClientV2, fake: FakeCohere) -> None:
    fake.script(CohereReply(text="", tool_plan=PLAN, tool_calls=CALLS))
    events = list(co.chat_stream(model="cohere-chat", messages=QUESTION, tools=[WEATHER_TOOL]))
    assert fake.last["tools"][0]["function"]["name"] == "get_weather"
    starts = [e for e in events if e.type == "tool-call-start"]
    assert [(e.index, e.delta.message.tool_calls.id, e.delta.message.tool_calls.function.name) for e in starts] == \
        [(0, "call_paris", "get_weather"), (1, "call_rome", "get_weather")]
    arguments = ["".join(e.delta.message.tool_calls.function.arguments for e in events
                         if e.type == "tool-call-delta" and e.index == n) for n in (0, 1)]
    assert arguments == [call["arguments"] for call in CALLS]
    assert [e.index for e in events if e.type == "tool-call-end"] == [0, 1]
    assert "".join(e.delta.message.tool_plan for e in events if e.type == "tool-plan-delta") == PLAN
    assert types_before(events, "tool-call-start") == {"message-start", "tool-plan-delta"}
    assert events[-1].type == "message-end" and events[-1].delta.finish_reason == "TOOL_CALL"


def test_max_tokens_is_max_tokens(co: cohere.ClientV2, fake: FakeCohere) -> None:
    fake.script(CohereReply(text="Paris is sun", finish_reason="MAX_TOKENS"))
    events = list(co.chat_stream(model="cohere-chat", messages=QUESTION, max_tokens=3))
    assert fake.last["max_tokens"] == 3
    assert events[-1].delta.finish_reason == "MAX_TOKENS"


PARIS = {"id": "paris", "data": {"title": "Paris", "text": "Sunny, 24 degrees."}}
NATIVE_CITATION = {"start": 6, "end": 20, "text": "sunny in Paris", "type": "TEXT_CONTENT",
                   "sources": [{"type": "document", "id": "paris", "document": {"id": "paris", "snippet": "Sunny"}}]}


def test_documents_are_sent_natively_and_cohere_citations_stream_as_events(co: cohere.ClientV2,
                                                                          fake: FakeCohere) -> None:
    """A Cohere model takes the documents as Cohere's own `documents`, and its stream's citations (SSE
    `citation-start` events) come out as this route's citation events, with the caller's sources."""
    fake.script(CohereReply(text="It is sunny in Paris.", chunk_size=5, citations=[NATIVE_CITATION]))
    events = list(co.chat_stream(model="cohere-chat", messages=QUESTION, documents=[PARIS]))
    sent = fake.last
    assert sent["documents"] == [{"id": "paris", "data": {"title": "Paris", "text": "Sunny, 24 degrees."}}]
    assert "<co:" not in json.dumps(sent["messages"])  # no markup asked of Cohere
    text = "".join(e.delta.message.content.text for e in events if e.type == "content-delta")
    assert text == "It is sunny in Paris."
    (citation,) = [e.delta.message.citations for e in events if e.type == "citation-start"]
    assert (citation.start, citation.end, citation.text) == (6, 20, "sunny in Paris")
    assert text[citation.start:citation.end] == citation.text
    assert [(s.id, s.document["text"]) for s in citation.sources] == [("paris", "Sunny, 24 degrees.")]  # ours
    assert [e.type for e in events].count("citation-end") == 1
    assert events[-1].delta.finish_reason == "COMPLETE"
    # The non-stream answer cites the same.
    fake.script(CohereReply(text="It is sunny in Paris.", citations=[NATIVE_CITATION]))
    answer = co.chat(model="cohere-chat", messages=QUESTION, documents=[PARIS])
    assert [(c.start, c.end, c.text) for c in answer.message.citations] == [(6, 20, "sunny in Paris")]


def test_v1_chat_stream_to_a_cohere_model_cites_natively(proxy: ProxyProcess, fake: FakeCohere) -> None:
    fake.script(CohereReply(text="It is sunny in Paris.", chunk_size=5, citations=[NATIVE_CITATION]))
    v1 = cohere.Client(api_key=MASTER_KEY, base_url=f"{proxy.url}/litellm/cohere", timeout=30)
    events = list(v1.chat_stream(model="cohere-chat", message="Weather?",
                                 documents=[{"id": "paris", "title": "Paris", "text": "Sunny, 24 degrees."}]))
    cited = [c for e in events if e.event_type == "citation-generation" for c in e.citations]
    assert [(c.start, c.end, c.document_ids) for c in cited] == [(6, 20, ["paris"])]
    assert events[-1].response.documents[0]["title"] == "Paris"


def test_an_error_cohere_reports_mid_stream_ends_the_stream_with_error(co: cohere.ClientV2,
                                                                        fake: FakeCohere) -> None:
    fake.script(CohereReply(text="Paris is", error="internal model failure"))
    events = list(co.chat_stream(model="cohere-chat", messages=QUESTION))
    assert "".join(e.delta.message.content.text for e in events if e.type == "content-delta") == "Paris is"
    assert events[-1].type == "message-end" and events[-1].delta.finish_reason == "ERROR"
    assert "internal model failure" in events[-1].delta.error


# --- LiteLLM's own /v1/chat/completions --------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_openai_route_text_usage_and_cost(http: httpx.Client, fake: FakeCohere, proxy: ProxyProcess,
                                          model: str) -> None:
    fake.script(CohereReply(text=TEXT, input_tokens=13, output_tokens=9, chunk_size=3))
    response, chunks = openai_stream(http, {"model": model, "messages": QUESTION,
                                            "stream_options": {"include_usage": True}})
    assert "".join(d.get("content") or "" for d in deltas(chunks)) == TEXT
    assert finish_reasons(chunks) == ["stop"]
    usage = next(chunk["usage"] for chunk in chunks if chunk.get("usage"))
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (13, 9)  # Cohere's tokens, not billed units
    call_id = response.headers["x-litellm-call-id"]
    record = wait_for(lambda: next((r for r in proxy.spend_records() if r["call_id"] == call_id), None))
    assert record["status"] == "success"
    assert record["response_cost"] == pytest.approx(13 * PRICED["input_cost_per_token"]
                                                    + 9 * PRICED["output_cost_per_token"])


def test_openai_route_tool_calls_and_tool_plan(http: httpx.Client, fake: FakeCohere) -> None:
    fake.script(CohereReply(text="", tool_plan=PLAN, tool_calls=CALLS))
    _, chunks = openai_stream(http, {"model": "cohere-chat", "messages": QUESTION, "tools": [WEATHER_TOOL]})
    calls: dict[int, dict[str, str]] = {}
    for call in (c for d in deltas(chunks) for c in d.get("tool_calls") or ()):
        seen = calls.setdefault(call["index"], {"id": "", "name": "", "arguments": ""})
        seen["id"] += call.get("id") or ""
        seen["name"] += (call.get("function") or {}).get("name") or ""
        seen["arguments"] += (call.get("function") or {}).get("arguments") or ""
    assert [calls[n] for n in sorted(calls)] == [{k: c[k] for k in ("id", "name", "arguments")} for c in CALLS]
    assert finish_reasons(chunks) == ["tool_calls"]
    # LiteLLM's place for what OpenAI's format has no field for: the provider's fields of a delta.
    plan = "".join((d.get("provider_specific_fields") or {}).get("tool_plan") or "" for d in deltas(chunks))
    assert plan == PLAN


def test_openai_route_max_tokens_is_length(http: httpx.Client, fake: FakeCohere) -> None:
    fake.script(CohereReply(text="Paris is sun", finish_reason="MAX_TOKENS"))
    _, chunks = openai_stream(http, {"model": "cohere-chat", "messages": QUESTION, "max_tokens": 3})
    assert finish_reasons(chunks) == ["length"]


def test_openai_route_citations(http: httpx.Client, fake: FakeCohere) -> None:
    citation = {"start": 0, "end": 5, "text": "Paris", "type": "TEXT_CONTENT", "content_index": 0,
                "sources": [{"type": "document", "id": "paris", "document": {"id": "paris", "title": "Paris"}}]}
    fake.script(CohereReply(text=TEXT, citations=[citation]))
    documents = [{"id": "paris", "data": {"title": "Paris", "text": "Sunny."}}]
    _, chunks = openai_stream(http, {"model": "cohere-chat", "messages": QUESTION, "documents": documents})
    assert fake.last["documents"] == documents
    cited = [c for d in deltas(chunks) for c in (d.get("provider_specific_fields") or {}).get("citations") or ()]
    assert cited == [citation]
    assert "".join(d.get("content") or "" for d in deltas(chunks)) == TEXT


# --- the adapter itself, in this process -------------------------------------------------------------


@pytest.fixture
def cohere_config(monkeypatch: pytest.MonkeyPatch) -> type:
    """LiteLLM's Cohere v2 chat config, its stream reader restored after the test."""
    from litellm.llms.cohere.chat.v2_transformation import CohereV2ChatConfig

    monkeypatch.setattr(CohereV2ChatConfig, "get_model_response_iterator",
                        CohereV2ChatConfig.__dict__["get_model_response_iterator"])
    return CohereV2ChatConfig


def test_sync_streams_read_cohere_too(cohere_config: type, fake: FakeCohere) -> None:
    import litellm

    from plugin import host

    assert host.read_cohere_sse_streams() is True
    assert host.read_cohere_sse_streams() is True  # once: the second call finds it in place
    reader = cohere_config.__dict__["get_model_response_iterator"]
    host.read_cohere_sse_streams()
    assert cohere_config.__dict__["get_model_response_iterator"] is reader
    fake.script(CohereReply(text=TEXT, tool_calls=CALLS[:1]))
    chunks = list(litellm.completion(model="cohere_chat/command-r", api_base=fake.chat_url, api_key="fake",
                                     messages=QUESTION, stream=True))
    assert fake.last["stream"] is True
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or ()]
    assert calls[0].function.name == "get_weather"
    assert "".join(call.function.arguments or "" for call in calls) == CALLS[0]["arguments"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_a_release_that_reads_cohere_streams_keeps_its_own_reader(cohere_config: type) -> None:
    from plugin import host

    def fixed_release(self: Any, streaming_response: Any, sync_stream: bool, json_mode: bool | None = False) -> Any:
        return host.CohereSSEReader(streaming_response=streaming_response, sync_stream=sync_stream)

    cohere_config.get_model_response_iterator = fixed_release
    assert host.read_cohere_sse_streams() is False
    assert cohere_config.__dict__["get_model_response_iterator"] is fixed_release
