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


NATIVE_TEXT = "Paris is in France. Rome is in Italy."
NATIVE_SOURCES = {
    **SOURCES,
    "fn:call:1": {"type": "tool", "id": "fn:call:1", "tool_output": {"temp": 21}},  # an id may hold colons
    "call_2:0": {"type": "tool", "id": "call_2:0", "tool_output": {"text": "sunny"}},  # a result of two blocks
    "call_2:1": {"type": "tool", "id": "call_2:1", "tool_output": {"wind": 3}},
}


def url_citation(start: object, end: object, url: str) -> dict[str, Any]:
    return {"type": "url_citation", "url_citation": {"start_index": start, "end_index": end, "url": url,
                                                      "title": "t"}}


def test_native_citations_from_the_providers_annotations() -> None:
    """A model served through LiteLLM's Cohere provider reports its own citations (`url_citation`
    annotations, `url` = `source:<id>`): they are grouped back into spans over the text."""
    end = len(NATIVE_TEXT)
    annotations = [
        {"type": "file_citation"},  # not a url citation
        url_citation(20, end, "https://example.com"),  # not one of ours
        url_citation(20, end, "doc_0"),  # not marked as ours either
        url_citation(20, end, "source:doc_9"),  # no such source
        url_citation(20, end + 1, "source:doc_0"),  # past the end of the text
        url_citation(5, 5, "source:doc_0"),  # empty
        url_citation(-1, 5, "source:doc_0"),
        url_citation("0", 5, "source:doc_0"),
        url_citation(0, 18, "source:doc_0"),
        url_citation(0, 18, "source:fn:call:1:0"),  # Cohere names a tool result's block <tool_call_id>:<n>
        url_citation(0, 18, "source:doc_0"),  # the same source twice
        url_citation(20, end, "source:call_1"),
        url_citation(20, end, "source:call_2:1"),  # a block of a result that has several
    ]
    message = {"role": "assistant", "content": NATIVE_TEXT, "annotations": annotations}
    response = {"id": "x", "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
    out = to_cohere_response(response, sources=NATIVE_SOURCES, native_citations=True)
    assert out["message"]["content"] == [{"type": "text", "text": NATIVE_TEXT}]
    assert [(c["start"], c["end"], c["text"], c["sources"]) for c in out["message"]["citations"]] == [
        (0, 18, "Paris is in France", [NATIVE_SOURCES["doc_0"], NATIVE_SOURCES["fn:call:1"]]),
        (20, end, "Rome is in Italy.", [NATIVE_SOURCES["call_1"], NATIVE_SOURCES["call_2:1"]]),
    ]


def test_native_citations_leave_the_text_alone_and_need_sources() -> None:
    text = "a <co: doc_0>b</co>"
    response = {"id": "x", "choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": text, "annotations": [url_citation(0, 1, "source:doc_0")]}}]}
    out = to_cohere_response(response, sources=SOURCES, native_citations=True)
    assert out["message"]["content"][0]["text"] == text
    assert [c["text"] for c in out["message"]["citations"]] == ["a"]
    assert "citations" not in to_cohere_response(response, native_citations=True)["message"]


def citation_events(events: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(e["type"], e["index"]) for e in events if e["type"].startswith("citation-")]


def test_each_citation_start_has_its_end() -> None:
    assert citation_events(streamed(ANSWER, [7, 25, 26])) == [("citation-start", 0), ("citation-end", 0),
                                                              ("citation-start", 1), ("citation-end", 1)]


@pytest.mark.parametrize("ending", ["<co", "<co: doc_0", "</co", "<", "<co: doc_0>cited"])
def test_a_grounded_stream_ending_inside_a_possible_tag_keeps_its_tail(ending: str) -> None:
    events = streamed("See " + ending, [4])
    text = "".join(e["delta"]["message"]["content"]["text"] for e in events if e["type"] == "content-delta")
    assert text == "See " + ending.replace("<co: doc_0>", "")
    assert [e["type"] for e in events][-3:] == ["content-delta", "content-end", "message-end"]


def test_a_citation_closing_at_the_end_of_a_stream_comes_before_message_end() -> None:
    events = streamed("It is <co: doc_0>warm</co", [])  # the close tag never finished: not a citation
    assert citation_events(events) == []
    events = streamed("It is <co: doc_0>warm</co>", [24])
    assert citation_events(events) == [("citation-start", 0), ("citation-end", 0)]
    assert [e["type"] for e in events][-4:] == ["citation-start", "citation-end", "content-end", "message-end"]
