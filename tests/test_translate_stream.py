"""OpenAI stream chunks -> Cohere v2 stream events, one chunk at a time."""

from __future__ import annotations

import json
from typing import Any

from plugin.cohere.stream import CohereStream, sse


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **choice: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish, **choice}]}


def usage_chunk(prompt: int = 5, completion: int = 3, cached: int = 0) -> dict[str, Any]:
    return {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion, "prompt_tokens_details": {"cached_tokens": cached}}}


def run(chunks: list[dict[str, Any]], **options: Any) -> list[dict[str, Any]]:
    stream = CohereStream(**options)
    events = [event for c in chunks for event in stream.feed(c)]
    return events + stream.finish()


def test_text_stream() -> None:
    events = run([chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}), chunk({"content": "lo"}),
                  chunk({}, "stop"), usage_chunk(cached=2)])
    assert events == [
        {"type": "message-start", "id": "chatcmpl-s", "delta": {"message": {"role": "assistant"}}},
        {"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}},
        {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Hel"}}}},
        {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "lo"}}}},
        {"type": "content-end", "index": 0},
        {"type": "message-end", "delta": {"finish_reason": "COMPLETE", "usage": {
            "billed_units": {"input_tokens": 5, "output_tokens": 3},
            "tokens": {"input_tokens": 5, "output_tokens": 3}, "cached_tokens": 2}}},
    ]


def test_each_chunk_yields_its_events_at_once() -> None:
    stream = CohereStream()
    assert [e["type"] for e in stream.feed(chunk({"content": "a"}))] == ["message-start", "content-start",
                                                                          "content-delta"]
    assert [e["type"] for e in stream.feed(chunk({"content": "b"}))] == ["content-delta"]
    assert stream.feed(chunk({}, "stop")) == []


def test_thinking_then_text_then_tool_calls() -> None:
    events = run([
        chunk({"reasoning_content": "Hmm"}), chunk({"reasoning_content": "."}), chunk({"content": "Plan"}),
        chunk({"tool_calls": [{"index": 0, "id": "c1", "type": "function",
                               "function": {"name": "f", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "c2", "type": "function",
                               "function": {"name": "g", "arguments": "{}"}}]}),
        chunk({}, "tool_calls"), usage_chunk(),
    ])
    summary = [(e["type"], e.get("index")) for e in events]
    assert summary == [
        ("message-start", None),
        ("content-start", 0), ("content-delta", 0), ("content-delta", 0), ("content-end", 0),
        ("content-start", 1), ("content-delta", 1), ("content-end", 1),
        ("tool-call-start", 0), ("tool-call-delta", 0), ("tool-call-delta", 0), ("tool-call-end", 0),
        ("tool-call-start", 1), ("tool-call-delta", 1), ("tool-call-end", 1),
        ("message-end", None),
    ]
    assert events[1]["delta"]["message"]["content"] == {"type": "thinking", "thinking": ""}
    assert events[2]["delta"]["message"]["content"] == {"thinking": "Hmm"}
    assert events[8]["delta"]["message"]["tool_calls"] == {
        "id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}
    arguments = "".join(e["delta"]["message"]["tool_calls"]["function"]["arguments"]
                        for e in events if e["type"] == "tool-call-delta" and e["index"] == 0)
    assert json.loads(arguments) == {"a": 1}
    assert events[-1]["delta"]["finish_reason"] == "TOOL_CALL"


def test_a_cohere_models_tool_plan_is_tool_plan_deltas() -> None:
    events = run([chunk({"content": "", "provider_specific_fields": {"tool_plan": "I will "}}),
                  chunk({"content": "", "provider_specific_fields": {"tool_plan": "look."}}),
                  chunk({"tool_calls": [{"index": 0, "id": "c1", "type": "function",
                                         "function": {"name": "f", "arguments": "{}"}}]}),
                  chunk({}, "tool_calls")])
    assert [e["type"] for e in events] == ["message-start", "tool-plan-delta", "tool-plan-delta", "tool-call-start",
                                           "tool-call-delta", "tool-call-end", "message-end"]
    assert [e["delta"]["message"]["tool_plan"] for e in events if e["type"] == "tool-plan-delta"] == ["I will ",
                                                                                                     "look."]


def test_finish_reasons_in_stream() -> None:
    assert run([chunk({"content": "x"}), chunk({}, "length")])[-1]["delta"]["finish_reason"] == "MAX_TOKENS"
    assert run([chunk({"content": "x"}), chunk({}, "stop", stop_reason="END")],
               stop_sequences=["END"])[-1]["delta"]["finish_reason"] == "STOP_SEQUENCE"
    assert run([chunk({"content": "x"}), chunk({}, "content_filter")])[-1]["delta"]["finish_reason"] == "ERROR"


def test_logprobs_ride_on_content_deltas() -> None:
    logprobs = {"content": [{"token": "a", "logprob": -1.0}, {"token": "b", "logprob": -2.0}]}
    events = run([chunk({"content": "ab"}, logprobs=logprobs)], with_logprobs=True)
    delta = next(e for e in events if e["type"] == "content-delta")
    assert delta["logprobs"] == {"text": "ab", "token_ids": [], "logprobs": [-1.0, -2.0]}
    assert "logprobs" not in next(e for e in run([chunk({"content": "ab"}, logprobs=logprobs)])
                                  if e["type"] == "content-delta")


def test_failure_after_start_ends_with_error() -> None:
    stream = CohereStream()
    stream.feed(chunk({"content": "partial"}))
    events = stream.fail("upstream connection lost")
    assert events == [
        {"type": "content-end", "index": 0},
        {"type": "message-end", "delta": {"finish_reason": "ERROR", "error": "upstream connection lost", "usage": {
            "billed_units": {"input_tokens": 0, "output_tokens": 0},
            "tokens": {"input_tokens": 0, "output_tokens": 0}, "cached_tokens": 0}}},
    ]
    assert stream.finish() == []  # ended once


def test_timeout_after_start() -> None:
    stream = CohereStream()
    stream.feed(chunk({"content": "partial"}))
    assert stream.fail("slow", timed_out=True)[-1]["delta"]["finish_reason"] == "TIMEOUT"


def test_empty_stream_still_starts_and_ends() -> None:
    assert [e["type"] for e in run([])] == ["message-start", "message-end"]


def test_other_choices_are_ignored() -> None:
    second = chunk({"content": "other"})
    second["choices"][0]["index"] = 1
    assert [e["type"] for e in run([second])] == ["message-start", "message-end"]


def test_sse_frame() -> None:
    frame = sse({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "é\n"}}}})
    assert frame == 'event: content-delta\ndata: {"type":"content-delta","index":0,' \
                    '"delta":{"message":{"content":{"text":"é\\n"}}}}\n\n'.encode()
