"""Citations in answers and streams: the same objects either way, spans that match the text."""

from __future__ import annotations

from typing import Any

import pytest

from plugin.cohere.response import to_cohere_response
from plugin.cohere.stream import CohereStream

SOURCES = {
    "doc_0": {"type": "document", "id": "doc_0", "document": {"text": "Paris is in France.", "id": "doc_0"}},
    "call_1": {"type": "tool", "id": "call_1", "tool_output": {"temp": 21}},
}
ANSWER = "It is <co: call_1>21 degrees</co: call_1> in <co: doc_0,ghost>Paris, France</co>. <co: ghost>Nice</co>!"
CLEAN = "It is 21 degrees in Paris, France. Nice!"


def completion(text: str, reasoning: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if reasoning:
        message["reasoning_content"] = reasoning
    return {"id": "x", "choices": [{"index": 0, "message": message, "finish_reason": "stop"}], "usage": {}}


def streamed(text: str, cuts: list[int], reasoning: str | None = None) -> list[dict[str, Any]]:
    stream = CohereStream(sources=SOURCES)
    events: list[dict[str, Any]] = []
    if reasoning:
        events += stream.feed({"id": "x", "choices": [{"index": 0, "delta": {"reasoning_content": reasoning}}]})
    points = [0, *cuts, len(text)]
    for a, b in zip(points, points[1:], strict=False):
        events += stream.feed({"id": "x", "choices": [{"index": 0, "delta": {"content": text[a:b]}}]})
    return events + stream.finish()


def test_answer_citations() -> None:
    out = to_cohere_response(completion(ANSWER), sources=SOURCES)
    assert out["message"]["content"] == [{"type": "text", "text": CLEAN}]
    citations = out["message"]["citations"]
    assert [(c["start"], c["end"], c["text"]) for c in citations] == [(6, 16, "21 degrees"), (20, 33, "Paris, France")]
    assert citations[0]["sources"] == [SOURCES["call_1"]]
    assert citations[1]["sources"] == [SOURCES["doc_0"]]  # the unknown id is dropped
    assert all(c["type"] == "TEXT_CONTENT" and c["content_index"] == 0 for c in citations)
    for c in citations:
        assert CLEAN[c["start"]:c["end"]] == c["text"]


@pytest.mark.parametrize("cuts", [[], [1, 2, 3, 4, 5, 6, 7, 8], [7, 25, 26], list(range(1, len(ANSWER)))])
def test_stream_carries_the_same_citations_after_their_text(cuts: list[int]) -> None:
    events = streamed(ANSWER, cuts, reasoning="hm")
    text = "".join(e["delta"]["message"]["content"]["text"] for e in events
                   if e["type"] == "content-delta" and "text" in e["delta"]["message"]["content"])
    assert text == CLEAN
    assert "<co" not in text and "</co" not in text
    starts = [e for e in events if e["type"] == "citation-start"]
    expected = to_cohere_response(completion(ANSWER, reasoning="hm"), sources=SOURCES)["message"]["citations"]
    assert [e["delta"]["message"]["citations"] for e in starts] == expected
    assert [e["index"] for e in starts] == [0, 1]
    assert all(c["content_index"] == 1 for c in expected)  # the thinking block comes first
    # Each citation comes after the text it covers.
    for start in starts:
        position = events.index(start)
        sent = "".join(e["delta"]["message"]["content"].get("text", "") for e in events[:position]
                       if e["type"] == "content-delta")
        assert len(sent) >= start["delta"]["message"]["citations"]["end"]
    assert [e["type"] for e in events][-2:] == ["content-end", "message-end"]


def test_no_sources_leaves_markup_alone() -> None:
    out = to_cohere_response(completion("a <co: doc_0>b</co>"))
    assert out["message"]["content"][0]["text"] == "a <co: doc_0>b</co>"
    assert "citations" not in out["message"]


def test_unclosed_markup_at_the_end_of_a_stream_keeps_its_text() -> None:
    events = streamed("Hello <co: doc_0>world", [8, 15])
    text = "".join(e["delta"]["message"]["content"]["text"] for e in events if e["type"] == "content-delta")
    assert text == "Hello world"
    assert not [e for e in events if e["type"] == "citation-start"]
