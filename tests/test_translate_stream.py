"""OpenAI stream chunks -> Cohere v2 stream events, one chunk at a time."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_a_streamed_tool_call_reported_with_stop_is_still_a_tool_call() -> None:
    events = run([chunk({"tool_calls": [{"index": 0, "id": "c1", "type": "function",
                                         "function": {"name": "f", "arguments": "{}"}}]}), chunk({}, "stop")])
    assert events[-1]["delta"]["finish_reason"] == "TOOL_CALL"
    assert run([chunk({"content": "x"}), chunk({}, "stop")])[-1]["delta"]["finish_reason"] == "COMPLETE"
    stopped = run([chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f"}}]}), chunk({}, "length")])
    assert stopped[-1]["delta"]["finish_reason"] == "MAX_TOKENS"


def test_a_stop_sequence_reported_in_provider_fields() -> None:
    events = run([chunk({"content": "x"}), chunk({}, "stop", provider_specific_fields={"stop_reason": "END"})],
                 stop_sequences=["END"])
    assert events[-1]["delta"]["finish_reason"] == "STOP_SEQUENCE"


def test_reasoning_in_the_reasoning_field_streams_as_thinking() -> None:
    events = run([chunk({"reasoning": "Hmm"}), chunk({"content": "Yes"})])
    assert events[2]["delta"]["message"]["content"] == {"thinking": "Hmm"}


def test_an_empty_tool_plan_sends_nothing() -> None:
    events = run([chunk({"content": "", "provider_specific_fields": {"tool_plan": ""}})])
    assert [e["type"] for e in events] == ["message-start", "message-end"]


def test_chunks_without_an_id_or_a_choice_index() -> None:
    stream = CohereStream()
    first = stream.feed({"choices": [{"delta": {"content": "a"}}]})
    assert first[0] == {"type": "message-start", "id": "", "delta": {"message": {"role": "assistant"}}}
    assert first[-1]["delta"]["message"]["content"] == {"text": "a"}


def test_only_the_first_choice_counts_wherever_it_is() -> None:
    other = {"index": 1, "delta": {"content": "other"}}
    events = run([{"id": "s", "choices": [other, {"index": 0, "delta": {"content": "mine"}}]}])
    assert [e["delta"]["message"]["content"]["text"] for e in events if e["type"] == "content-delta"] == ["mine"]


def test_a_failure_before_anything_was_sent_still_starts_the_message() -> None:
    events = CohereStream().fail("refused")
    assert events[0] == {"type": "message-start", "id": "", "delta": {"message": {"role": "assistant"}}}
    assert events[-1]["delta"]["finish_reason"] == "ERROR"


def tool_calls(events: list[dict[str, Any]]) -> list[tuple[int, str, str, str]]:
    """(index, id, name, arguments) of each streamed tool call."""
    calls: dict[int, list[str]] = {}
    for e in events:
        if e["type"] == "tool-call-start":
            call = e["delta"]["message"]["tool_calls"]
            calls[e["index"]] = [call["id"], call["function"]["name"], ""]
        elif e["type"] == "tool-call-delta":
            calls[e["index"]][2] += e["delta"]["message"]["tool_calls"]["function"]["arguments"]
    return [(index, *call) for index, call in sorted(calls.items())]


def test_tool_calls_are_told_apart_by_id_or_by_index() -> None:
    events = run([
        chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{\"a\""}}]}),
        chunk({"tool_calls": [{"function": {"arguments": ":1}"}}]}),  # no index: the open call
        chunk({"tool_calls": [{"index": 0, "id": "c2", "function": {"name": "g", "arguments": "{}"}}]}),  # index 0
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),  # no id, no name: a new call
        chunk({}, "tool_calls"),
    ])
    assert tool_calls(events) == [(0, "c1", "f", "{\"a\":1}"), (1, "c2", "g", "{}"), (2, "call_2", "", "{}")]


def test_a_tool_call_after_text_that_followed_another_is_a_new_one() -> None:
    events = run([
        chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}]}),
        chunk({"content": "and"}),
        chunk({"tool_calls": [{"index": 0, "function": {"name": "g", "arguments": "{}"}}]}),
    ])
    assert tool_calls(events) == [(0, "c1", "f", "{}"), (1, "call_1", "g", "{}")]
    assert [e["type"] for e in events].count("tool-call-end") == 2


text = st.text(alphabet="ab <>{}:\"é", min_size=1, max_size=6)
DELTAS = st.one_of(
    st.builds(lambda t: {"content": t}, text),
    st.builds(lambda t: {"reasoning_content": t}, text),
    st.builds(lambda index, call_id, name, arguments: {"tool_calls": [{
        "index": index, **({"id": call_id} if call_id else {}),
        "function": {**({"name": name} if name else {}), "arguments": arguments}}]},
        st.integers(0, 2), st.sampled_from([None, "c1", "c2"]), st.sampled_from([None, "f"]), text),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(DELTAS, max_size=12), st.sampled_from([None, "stop", "tool_calls", "length"]))
def test_any_stream_is_well_formed(deltas: list[dict[str, Any]], finish: str | None) -> None:
    """One message-start first and one message-end last; one block or tool call open at a time, each
    started, fed and ended under its own index, counted from 0; the text, thinking and arguments whole."""
    events = run([*(chunk(delta) for delta in deltas), chunk({}, finish)])
    assert events[0]["type"] == "message-start" and events[-1]["type"] == "message-end"
    assert [e["type"] for e in events].count("message-start") == 1
    assert [e["type"] for e in events].count("message-end") == 1
    open_kind, open_index, next_index = None, -1, {"content": 0, "tool-call": 0}
    sent: dict[str, str] = {"text": "", "thinking": "", "arguments": ""}
    for event in events[1:-1]:
        kind, _, phase = event["type"].rpartition("-")
        if phase == "start":
            assert open_kind is None
            assert event["index"] == next_index[kind]
            open_kind, open_index = kind, event["index"]
            next_index[kind] += 1
        else:
            assert (kind, event["index"]) == (open_kind, open_index)
            if phase == "end":
                open_kind = None
            elif kind == "content":
                for name, value in event["delta"]["message"]["content"].items():
                    sent[name] += value
            else:
                sent["arguments"] += event["delta"]["message"]["tool_calls"]["function"]["arguments"]
    assert open_kind is None
    assert sent == {"text": "".join(d.get("content", "") for d in deltas),
                    "thinking": "".join(d.get("reasoning_content", "") for d in deltas),
                    "arguments": "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas
                                         if "tool_calls" in d)}
    called = any("tool_calls" in d for d in deltas)
    expected = "MAX_TOKENS" if finish == "length" else "TOOL_CALL" if called or finish == "tool_calls" \
        else "COMPLETE"
    assert events[-1]["delta"]["finish_reason"] == expected
