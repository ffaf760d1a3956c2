"""Grounded answers through the real proxy: documents in, Cohere citations out, for an OpenAI model."""

from __future__ import annotations

from typing import Any

import cohere

from .fake_upstream import FakeUpstream, Reply

QUESTION = [{"role": "user", "content": "What are the capitals?"}]
DOCUMENTS = [{"id": "paris", "data": {"title": "Paris", "text": "Paris is the capital of France."}},
             "Rome is the capital of Italy."]
ANSWER = "The capital of France is <co: paris>Paris</co: paris>; <co: doc_1>Italy's is Rome</co: doc_1>."
CLEAN = "The capital of France is Paris; Italy's is Rome."


def citations_of(response: Any) -> list[dict[str, Any]]:
    return [c.dict() if hasattr(c, "dict") else dict(c) for c in response.message.citations or []]


def test_documents_reach_the_model_and_citations_come_back(co: cohere.ClientV2, fake: FakeUpstream) -> None:
    fake.script(Reply(text=ANSWER))
    response = co.chat(model="fake", messages=QUESTION, documents=DOCUMENTS)
    text = response.message.content[0].text
    assert text == CLEAN
    citations = response.message.citations
    assert [(c.start, c.end, c.text) for c in citations] == [(25, 30, "Paris"), (32, 47, "Italy's is Rome")]
    for citation in citations:
        assert text[citation.start:citation.end] == citation.text
        assert citation.type == "TEXT_CONTENT" and citation.content_index == 0
    assert [s.id for s in citations[0].sources] == ["paris"]
    assert citations[0].sources[0].type == "document"
    assert citations[0].sources[0].document["title"] == "Paris"
    assert citations[1].sources[0].document["text"] == "Rome is the capital of Italy."
    grounding = fake.last["messages"][0]
    assert grounding["role"] == "system"
    assert '[paris] {"title": "Paris", "text": "Paris is the capital of France."}' in grounding["content"]
    assert "[doc_1] Rome is the capital of Italy." in grounding["content"]
    assert "<co: ID>" in grounding["content"]


def test_stream_citations_equal_the_answers(co: cohere.ClientV2, fake: FakeUpstream) -> None:
    fake.script(Reply(text=ANSWER), Reply(text=ANSWER, chunk_size=3))  # tags split at awkward places
    expected = citations_of(co.chat(model="fake", messages=QUESTION, documents=DOCUMENTS))
    events = list(co.chat_stream(model="fake", messages=QUESTION, documents=DOCUMENTS))
    text = "".join(e.delta.message.content.text for e in events if e.type == "content-delta")
    assert text == CLEAN and "<" not in text
    streamed = [e.delta.message.citations for e in events if e.type == "citation-start"]
    assert [c.dict() for c in streamed] == expected
    assert [e.index for e in events if e.type == "citation-end"] == [0, 1]
    for event in (e for e in events if e.type == "citation-start"):
        before = "".join(e.delta.message.content.text for e in events[:events.index(event)]
                         if e.type == "content-delta")
        assert len(before) >= event.delta.message.citations.end  # after the text it covers


def test_malformed_markup_keeps_the_text(co: cohere.ClientV2, fake: FakeUpstream) -> None:
    answer = "See <co: nobody>this</co>, 1 < 2, and <co: paris>an unclosed one"
    fake.script(Reply(text=answer), Reply(text=answer, chunk_size=2))
    response = co.chat(model="fake", messages=QUESTION, documents=DOCUMENTS)
    assert response.message.content[0].text == "See this, 1 < 2, and an unclosed one"
    assert not response.message.citations
    events = list(co.chat_stream(model="fake", messages=QUESTION, documents=DOCUMENTS))
    text = "".join(e.delta.message.content.text for e in events if e.type == "content-delta")
    assert text == "See this, 1 < 2, and an unclosed one"
    assert not [e for e in events if e.type == "citation-start"]


# A tool round trip: the assistant called `weather` (call_w), the tool answered with one document.
WEATHER_ROUND_TRIP = [*QUESTION,
                      {"role": "assistant", "tool_calls": [{"id": "call_w", "type": "function",
                                                            "function": {"name": "weather", "arguments": "{}"}}]},
                      {"role": "tool", "tool_call_id": "call_w",
                       "content": [{"type": "document", "document": {"data": {"temp_c": 21}}}]}]


def test_tool_results_are_cited_as_tool_sources(co: cohere.ClientV2, fake: FakeUpstream) -> None:
    fake.script(Reply(text="It is <co: call_w>21 degrees</co: call_w>."))
    response = co.chat(model="fake", messages=WEATHER_ROUND_TRIP)
    (citation,) = response.message.citations
    assert (citation.text, citation.sources[0].type, citation.sources[0].id) == ("21 degrees", "tool", "call_w")
    assert citation.sources[0].tool_output == {"temp_c": 21}
    assert fake.last["messages"][-1]["content"] == '[call_w] {"temp_c": 21}'


def test_citations_off(co: cohere.ClientV2, fake: FakeUpstream) -> None:
    for mode in ("OFF", "DISABLED"):
        fake.script(Reply(text="Paris and Rome."))
        response = co.chat(model="fake", messages=QUESTION, documents=DOCUMENTS, citation_options={"mode": mode})
        assert not response.message.citations
        assert "<co: ID>" not in fake.last["messages"][0]["content"]
        assert "[doc_1] Rome is the capital of Italy." in fake.last["messages"][0]["content"]


# --- a model LiteLLM serves through its Cohere provider (fake Cohere v2 API behind it) --------------


def test_cohere_model_gets_documents_natively_and_its_citations_pass_through(co: cohere.ClientV2,
                                                                            fake: FakeUpstream) -> None:
    answer = "France's capital is Paris and Italy's is Rome."
    fake.script(Reply(text=answer, citations=[
        {"start": 20, "end": 25, "text": "Paris", "type": "TEXT_CONTENT",
         "sources": [{"type": "document", "id": "paris", "document": {"id": "paris", "title": "Paris"}}]},
        {"start": 41, "end": 45, "text": "Rome", "type": "TEXT_CONTENT",
         "sources": [{"type": "document", "id": "doc_1", "document": {"id": "doc_1"}},
                     {"type": "document", "id": "paris", "document": {"id": "paris"}}]},
    ]))
    response = co.chat(model="fake-cohere", messages=QUESTION, documents=DOCUMENTS)
    sent = fake.last
    assert sent["documents"] == [
        {"id": "paris", "data": {"title": "Paris", "text": "Paris is the capital of France."}},
        {"id": "doc_1", "data": {"text": "Rome is the capital of Italy."}},
    ]
    assert all("<co:" not in str(m.get("content")) for m in sent["messages"])  # no markup asked of Cohere
    text = response.message.content[0].text
    assert text == answer
    citations = response.message.citations
    assert [(c.start, c.end, c.text) for c in citations] == [(20, 25, "Paris"), (41, 45, "Rome")]
    assert [[s.id for s in c.sources] for c in citations] == [["paris"], ["doc_1", "paris"]]
    assert citations[1].sources[0].document["text"] == "Rome is the capital of Italy."  # re-attached to ours
    for citation in citations:
        assert text[citation.start:citation.end] == citation.text and citation.content_index == 0


def test_cohere_model_with_tool_results_uses_markup(co: cohere.ClientV2, fake: FakeUpstream) -> None:
    """LiteLLM's Cohere provider drops tool citations, so tool results are cited through markup."""
    fake.script(Reply(text="It is <co: call_w>21 degrees</co: call_w>.", citations=[
        {"start": 6, "end": 16, "text": "21 degrees", "type": "TEXT_CONTENT",
         "sources": [{"type": "tool", "id": "call_w:0", "tool_output": {"temp_c": 21}}]}]))
    response = co.chat(model="fake-cohere", messages=WEATHER_ROUND_TRIP)
    assert response.message.content[0].text == "It is 21 degrees."
    (citation,) = response.message.citations
    assert (citation.text, citation.sources[0].type, citation.sources[0].id) == ("21 degrees", "tool", "call_w")
    assert fake.last["messages"][-1]["content"] == '[call_w] {"temp_c": 21}'


def test_cohere_model_stream_takes_documents_natively(co: cohere.ClientV2, fake: FakeUpstream) -> None:
    """A stream to a Cohere model sends the documents as Cohere's own (its citations: see
    tests/test_cohere_provider_stream.py, whose fake Cohere streams them); nothing asks it for markup."""
    fake.script(Reply(text=CLEAN, chunk_size=5))
    events = list(co.chat_stream(model="fake-cohere", messages=QUESTION, documents=DOCUMENTS))
    text = "".join(e.delta.message.content.text for e in events if e.type == "content-delta")
    assert text == CLEAN
    assert fake.last["documents"][1] == {"id": "doc_1", "data": {"text": "Rome is the capital of Italy."}}
    assert all("<co:" not in str(m.get("content")) for m in fake.last["messages"])
