"""The real `cohere` SDK against a real proxy with the plugin, a fake OpenAI upstream behind it."""

from __future__ import annotations

import json

import cohere
import httpx
import pytest

from .fake_upstream import FakeUpstream, Reply

USER = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_chat_text_answer(co: cohere.ClientV2, fake: FakeUpstream) -> None:
    fake.script(Reply(text="It is sunny.", prompt_tokens=21, completion_tokens=4, cached_tokens=5))
    response = co.chat(model="fake", messages=USER, temperature=0.3, max_tokens=50)

    assert response.finish_reason == "COMPLETE"
    assert response.message.role == "assistant"
    assert [(c.type, c.text) for c in response.message.content] == [("text", "It is sunny.")]
    assert response.usage.tokens.input_tokens == 21
    assert response.usage.tokens.output_tokens == 4
    assert response.usage.billed_units.output_tokens == 4
    assert response.usage.cached_tokens == 5
    sent = fake.last
    assert sent["model"] == "fake-upstream"
    assert sent["messages"] == [{"role": "user", "content": "What is the weather in Paris?"}]
    assert sent["temperature"] == 0.3
    assert sent["max_tokens"] == 50


def test_chat_stream_text(co: cohere.ClientV2, fake: FakeUpstream) -> None:
    fake.script(Reply(text="Streaming works fine.", completion_tokens=5))
    events = list(co.chat_stream(model="fake", messages=USER))

    types = [e.type for e in events]
    assert types[0] == "message-start"
    assert types[1] == "content-start"
    assert types[-2:] == ["content-end", "message-end"]
    assert all(t == "content-delta" for t in types[2:-2])
    text = "".join(e.delta.message.content.text for e in events if e.type == "content-delta")
    assert text == "Streaming works fine."
    end = events[-1]
    assert end.delta.finish_reason == "COMPLETE"
    assert end.delta.usage.tokens.output_tokens == 5
    assert fake.last["stream"] is True
    assert fake.last["stream_options"] == {"include_usage": True}


def test_tool_use_round_trip(co: cohere.ClientV2, fake: FakeUpstream) -> None:
    fake.script(
        Reply(text="I will look up the weather.",
              tool_calls=[{"id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}]),
        Reply(text="It is 21 degrees in Paris."),
    )
    first = co.chat(model="fake", messages=USER, tools=[WEATHER_TOOL])
    assert first.finish_reason == "TOOL_CALL"
    assert first.message.tool_plan == "I will look up the weather."
    call = first.message.tool_calls[0]
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
        "call_1", "get_weather", {"city": "Paris"})
    assert fake.last["tools"][0]["function"]["name"] == "get_weather"

    messages = [
        *USER,
        {"role": "assistant", "tool_plan": first.message.tool_plan, "tool_calls": first.message.tool_calls},
        {"role": "tool", "tool_call_id": call.id,
         "content": [{"type": "document", "document": {"data": {"temperature_c": 21}}}]},
    ]
    second = co.chat(model="fake", messages=messages, tools=[WEATHER_TOOL])
    assert second.message.content[0].text == "It is 21 degrees in Paris."
    sent = fake.last["messages"]
    assert sent[0]["role"] == "system"  # tool results are citable: the model is told how to cite
    assert sent[2]["role"] == "assistant"
    assert sent[2]["content"] == "I will look up the weather."
    assert sent[2]["tool_calls"][0]["id"] == "call_1"
    assert json.loads(sent[2]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert sent[3] == {"role": "tool", "tool_call_id": "call_1", "content": '[call_1] {"temperature_c": 21}'}


def test_tool_call_stream(co: cohere.ClientV2, fake: FakeUpstream) -> None:
    fake.script(Reply(text="", tool_calls=[
        {"id": "call_a", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"id": "call_b", "name": "get_weather", "arguments": '{"city": "Rome"}'},
    ]))
    events = list(co.chat_stream(model="fake", messages=USER, tools=[WEATHER_TOOL]))
    starts = [e for e in events if e.type == "tool-call-start"]
    assert [(e.index, e.delta.message.tool_calls.id) for e in starts] == [(0, "call_a"), (1, "call_b")]
    for index, city in ((0, "Paris"), (1, "Rome")):
        args = "".join(e.delta.message.tool_calls.function.arguments
                       for e in events if e.type == "tool-call-delta" and e.index == index)
        assert json.loads(args) == {"city": city}
    assert [e.index for e in events if e.type == "tool-call-end"] == [0, 1]
    assert events[-1].delta.finish_reason == "TOOL_CALL"


def test_thinking_non_stream_and_stream(co: cohere.ClientV2, fake: FakeUpstream, http: httpx.Client) -> None:
    fake.script(Reply(text="42.", reasoning="Six times seven."), Reply(text="42.", reasoning="Six times seven."))
    response = co.chat(model="fake", messages=USER, thinking={"type": "enabled", "token_budget": 2048})
    assert [c.type for c in response.message.content] == ["thinking", "text"]
    assert response.message.content[0].thinking == "Six times seven."
    # A token budget is a `thinking` param, which LiteLLM drops for a provider that cannot take it.
    assert "thinking" not in fake.last

    events = list(co.chat_stream(model="fake", messages=USER, thinking={"type": "enabled"}))
    starts = [(e.index, e.delta.message.content.type) for e in events if e.type == "content-start"]
    assert starts == [(0, "thinking"), (1, "text")]
    thinking = "".join(e.delta.message.content.thinking for e in events
                       if e.type == "content-delta" and e.index == 0)
    assert thinking == "Six times seven."
    sent = fake.last.get("reasoning_effort")
    # No budget: the provider-neutral effort, forwarded as LiteLLM's own route forwards it to this model
    # (1.100 drops `reasoning_effort` for a model it does not know to reason; later releases pass it on).
    fake.script(Reply(text="42."))
    http.post("/v1/chat/completions", json={"model": "fake", "messages": USER, "reasoning_effort": "medium"})
    assert sent == fake.last.get("reasoning_effort") and sent in ("medium", None)


def test_logprobs(co: cohere.ClientV2, fake: FakeUpstream) -> None:
    fake.script(Reply(text="a b c"))
    response = co.chat(model="fake", messages=USER, logprobs=True)
    assert fake.last["logprobs"] is True
    assert [item.text for item in response.logprobs] == ["a ", "b ", "c"]
    assert [value for item in response.logprobs for value in item.logprobs] == pytest.approx([-0.1, -0.2, -0.3])


def test_json_schema_and_sampling_reach_upstream(co: cohere.ClientV2, fake: FakeUpstream) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    co.chat(model="fake", messages=USER, response_format={"type": "json_object", "json_schema": schema},
            p=0.5, k=40, seed=7, stop_sequences=["END"], frequency_penalty=0.2, presence_penalty=0.1)
    sent = fake.last
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
    assert (sent["top_p"], sent["seed"], sent["stop"]) == (0.5, 7, ["END"])
    assert (sent["frequency_penalty"], sent["presence_penalty"]) == (0.2, 0.1)
    # LiteLLM forwards top_k to OpenAI-compatible servers (vLLM and others take it).
    assert sent["top_k"] == 40


def test_cohere_only_fields_are_accepted_and_not_sent_upstream(co: cohere.ClientV2, fake: FakeUpstream) -> None:
    response = co.chat(model="fake", messages=USER, safety_mode="STRICT", priority=2,
                       citation_options={"mode": "FAST"})
    assert response.finish_reason == "COMPLETE"
    # priority is consumed by LiteLLM's router scheduler; safety mode has no OpenAI equivalent.
    assert not {"priority", "safety_mode", "citation_options"} & set(fake.last)


def test_stop_sequence_finish_reason(co: cohere.ClientV2, fake: FakeUpstream) -> None:
    fake.script(Reply(text="one two", stop_reason="END"), Reply(text="one two", finish_reason="length"))
    assert co.chat(model="fake", messages=USER, stop_sequences=["END"]).finish_reason == "STOP_SEQUENCE"
    assert co.chat(model="fake", messages=USER).finish_reason == "MAX_TOKENS"


def test_images_reach_upstream(co: cohere.ClientV2, fake: FakeUpstream) -> None:
    image = "data:image/png;base64,iVBORw0KGgo="
    co.chat(model="fake", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": image, "detail": "low"}},
    ]}])
    assert fake.last["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": image, "detail": "low"}},
    ]


def test_fallback_through_the_router(co: cohere.ClientV2, fake: FakeUpstream) -> None:
    fake.script(Reply(text="answered by the fallback"))
    response = co.chat(model="fake-broken", messages=USER)
    assert response.message.content[0].text == "answered by the fallback"
    assert fake.last["model"] == "fake-b-upstream"
