"""Cohere v2 request -> OpenAI request, table-driven over realistic payloads."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from plugin.cohere.citations import INSTRUCTIONS, citation_sources, document_sources
from plugin.cohere.errors import CohereError
from plugin.cohere.request import to_openai_request
from plugin.cohere.schema import parse_chat_request

USER = {"role": "user", "content": "hi"}


def translate(**body: Any) -> dict[str, Any]:
    return to_openai_request(parse_chat_request(json.dumps({"model": "m", "messages": [USER], **body}).encode()))


PARAMETERS = [
    pytest.param({}, {}, id="defaults-add-nothing"),
    pytest.param({"temperature": 0.2}, {"temperature": 0.2}, id="temperature"),
    pytest.param({"p": 0.9}, {"top_p": 0.9}, id="p-is-top_p"),
    pytest.param({"k": 40}, {"top_k": 40}, id="k-is-top_k"),
    pytest.param({"max_tokens": 128}, {"max_tokens": 128}, id="max_tokens"),
    pytest.param({"stop_sequences": ["\n\n", "END"]}, {"stop": ["\n\n", "END"]}, id="stop_sequences-is-stop"),
    pytest.param({"frequency_penalty": 0.5, "presence_penalty": 0.25},
                 {"frequency_penalty": 0.5, "presence_penalty": 0.25}, id="penalties"),
    pytest.param({"seed": 42}, {"seed": 42}, id="seed"),
    pytest.param({"priority": 3}, {"priority": 3}, id="priority-for-the-router-scheduler"),
    pytest.param({"logprobs": True}, {"logprobs": True}, id="logprobs"),
    pytest.param({"log_probs": True}, {"logprobs": True}, id="log_probs-seed-spelling"),
    pytest.param({"logprobs": False}, {}, id="logprobs-false"),
    pytest.param({"stream": True}, {"stream": True, "stream_options": {"include_usage": True}}, id="stream"),
    pytest.param({"response_format": {"type": "text"}}, {}, id="text-format"),
    pytest.param({"response_format": {"type": "json_object"}}, {"response_format": {"type": "json_object"}},
                 id="json-object"),
    pytest.param({"response_format": {"type": "json_object", "json_schema": {"type": "object"}}},
                 {"response_format": {"type": "json_schema",
                                      "json_schema": {"name": "response", "schema": {"type": "object"}}}},
                 id="json-schema"),
    pytest.param({"response_format": {"type": "json_object", "schema": {"type": "object"}}},
                 {"response_format": {"type": "json_schema",
                                      "json_schema": {"name": "response", "schema": {"type": "object"}}}},
                 id="json-schema-older-spelling-schema"),
    pytest.param({"thinking": {"type": "enabled", "token_budget": 2048}},
                 {"thinking": {"type": "enabled", "budget_tokens": 2048}}, id="thinking-budget"),
    pytest.param({"thinking": {"type": "enabled"}}, {"reasoning_effort": "medium"}, id="thinking-no-budget"),
    pytest.param({"thinking": {"type": "disabled"}}, {}, id="thinking-disabled"),
    pytest.param({"safety_mode": "NONE"}, {}, id="safety-mode-has-no-openai-equivalent"),
    pytest.param({"citation_options": {"mode": "FAST"}}, {}, id="citation-options-not-forwarded"),
    # Every bound at its edge is accepted (the spec's ranges).
    pytest.param({"temperature": 0, "p": 0.01, "k": 0, "frequency_penalty": 0, "presence_penalty": 0},
                 {"temperature": 0, "top_p": 0.01, "top_k": 0, "frequency_penalty": 0, "presence_penalty": 0},
                 id="lower-edges"),
    pytest.param({"temperature": 1, "p": 0.99, "k": 500, "frequency_penalty": 1, "presence_penalty": 1},
                 {"temperature": 1, "top_p": 0.99, "top_k": 500, "frequency_penalty": 1, "presence_penalty": 1},
                 id="upper-edges"),
    pytest.param({"max_tokens": 1}, {"max_tokens": 1}, id="max-tokens-1"),
    pytest.param({"priority": 0}, {"priority": 0}, id="priority-0"),
    pytest.param({"priority": 999}, {"priority": 999}, id="priority-999"),
    pytest.param({"stop_sequences": ["a", "b", "c", "d", "e"]}, {"stop": ["a", "b", "c", "d", "e"]},
                 id="five-stop-sequences"),
    pytest.param({"thinking": {"type": "enabled", "token_budget": 1}},
                 {"thinking": {"type": "enabled", "budget_tokens": 1}}, id="thinking-budget-1"),
    pytest.param({"safety_mode": "none"}, {}, id="safety-mode-any-case"),
    *(pytest.param({"safety_mode": mode}, {}, id=f"safety-mode-{mode}") for mode in ("CONTEXTUAL", "STRICT", "OFF")),
    *(pytest.param({"citation_options": {"mode": mode}}, {}, id=f"citation-mode-{mode}")
      for mode in ("ENABLED", "DISABLED", "ACCURATE", "OFF")),
    pytest.param({"tool_choice": "NONE"}, {"tool_choice": "none"}, id="tool-choice-none-without-tools"),
    pytest.param({"tool_choice": "REQUIRED"}, {}, id="tool-choice-required-without-tools-is-dropped"),
    pytest.param({"an_unknown_field": 1}, {}, id="unknown-top-level-fields-ignored"),
]


@pytest.mark.parametrize(("cohere", "openai"), PARAMETERS)
def test_parameters(cohere: dict[str, Any], openai: dict[str, Any]) -> None:
    out = translate(**cohere)
    assert out.pop("model") == "m"
    assert out.pop("messages") == [{"role": "user", "content": "hi"}]
    assert out.pop("drop_params") is True  # LiteLLM drops what a target model cannot honour
    assert out == openai


TOOL = {"type": "function", "function": {"name": "search", "description": "Search the web",
                                         "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}
OPENAI_TOOL = {"type": "function", "function": {"name": "search", "description": "Search the web",
                                                "parameters": TOOL["function"]["parameters"]}}

TOOLS = [
    pytest.param({"tools": [TOOL]}, {"tools": [OPENAI_TOOL]}, id="tools"),
    pytest.param({"tools": [TOOL], "tool_choice": "REQUIRED"}, {"tools": [OPENAI_TOOL], "tool_choice": "required"},
                 id="required"),
    pytest.param({"tools": [TOOL], "tool_choice": "NONE"}, {"tools": [OPENAI_TOOL], "tool_choice": "none"},
                 id="none"),
    pytest.param({"tools": [TOOL], "tool_choice": "auto"}, {"tools": [OPENAI_TOOL], "tool_choice": "auto"},
                 id="auto-any-case"),
    pytest.param({"tools": [TOOL], "strict_tools": True},
                 {"tools": [{**OPENAI_TOOL, "function": {**OPENAI_TOOL["function"], "strict": True}}]}, id="strict"),
    pytest.param({"tools": [TOOL], "strict_tool_choice": True},
                 {"tools": [{**OPENAI_TOOL, "function": {**OPENAI_TOOL["function"], "strict": True}}]},
                 id="strict-seed-spelling"),
    pytest.param({"tools": [{"type": "function", "function": {"name": "now"}}]},
                 {"tools": [{"type": "function", "function": {"name": "now", "parameters": {
                     "type": "object", "properties": {}}}}]}, id="no-parameters"),
]


@pytest.mark.parametrize(("cohere", "openai"), TOOLS)
def test_tools(cohere: dict[str, Any], openai: dict[str, Any]) -> None:
    out = translate(**cohere)
    assert {k: out[k] for k in openai} == openai


CONVERSATION = [
    {"role": "system", "content": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}]},
    {"role": "user", "content": [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "http://example.com/a.png", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/b.png", "detail": "auto"}},
    ]},
    {"role": "assistant", "content": [{"type": "thinking", "thinking": "A cat, clearly."},
                                      {"type": "text", "text": "A cat."}]},
    {"role": "user", "content": "Search for cats."},
    {"role": "assistant", "tool_plan": "I will search.", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": "{\"q\":\"cats\"}"}},
        {"id": "call_2", "type": "function", "function": {"name": "search", "arguments": {"q": "kittens"}}},
    ]},
    {"role": "tool", "tool_call_id": "call_1", "content": "Cats are mammals."},
    {"role": "tool", "tool_call_id": "call_2", "content": [
        {"type": "text", "text": "Result:"},
        {"type": "document", "document": {"id": "d1", "data": {"title": "Kittens", "snippet": "Small cats"}}},
    ]},
]

EXPECTED_CONVERSATION = [
    {"role": "system", "content": "Be brief.\nBe kind."},
    {"role": "user", "content": [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "http://example.com/a.png", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/b.png", "detail": "auto"}},
    ]},
    {"role": "assistant", "content": "A cat."},
    {"role": "user", "content": "Search for cats."},
    {"role": "assistant", "content": "I will search.", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": "{\"q\":\"cats\"}"}},
        {"id": "call_2", "type": "function", "function": {"name": "search", "arguments": "{\"q\": \"kittens\"}"}},
    ]},
    {"role": "tool", "tool_call_id": "call_1", "content": "Cats are mammals."},
    {"role": "tool", "tool_call_id": "call_2",
     "content": "Result:\n{\"title\": \"Kittens\", \"snippet\": \"Small cats\"}"},
]


def test_every_role_and_content_block() -> None:
    out = to_openai_request(parse_chat_request(json.dumps({"model": "m", "messages": CONVERSATION}).encode()))
    assert out["messages"] == EXPECTED_CONVERSATION


@pytest.mark.parametrize(("assistant", "replayed"), [
    pytest.param({"content": "A cat."}, {"content": "A cat."}, id="text-as-a-string"),
    pytest.param({"content": [{"type": "text", "text": "A"}, {"type": "text", "text": "cat."}]},
                 {"content": "A\ncat."}, id="text-blocks-joined-by-lines"),
    pytest.param({"content": "Answer text", "tool_plan": "plan"}, {"content": "Answer text"},
                 id="text-wins-over-a-plan"),
    pytest.param({"content": [], "tool_plan": "plan"}, {"content": "plan"}, id="a-plan-without-text"),
    pytest.param({"content": []}, {"content": ""}, id="nothing-at-all-is-empty-text"),
    pytest.param({"content": [{"type": "thinking", "thinking": "hm"}]}, {"content": ""}, id="only-thinking"),
    pytest.param({"tool_calls": [{"id": "c", "function": {"name": "f"}}]},
                 {"content": None, "tool_calls": [{"id": "c", "type": "function",
                                                   "function": {"name": "f", "arguments": ""}}]},
                 id="a-call-without-arguments-or-type"),
])
def test_assistant_turns_replayed(assistant: dict[str, Any], replayed: dict[str, Any]) -> None:
    out = translate(messages=[USER, {"role": "assistant", **assistant}])
    assert out["messages"][1] == {"role": "assistant", **replayed}


def test_tool_results_keep_non_ascii_text() -> None:
    out = translate(messages=[USER, {"role": "tool", "tool_call_id": "c", "content": [
        {"type": "document", "document": {"data": {"city": "Zürich"}}}]}])
    assert out["messages"][1]["content"] == '{"city": "Zürich"}'


def test_assistant_tool_calls_without_plan_have_no_content() -> None:
    out = translate(messages=[USER, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "ok"}])
    assert out["messages"][1]["content"] is None


def test_documents_become_a_system_message_after_the_callers_own() -> None:
    out = translate(messages=[{"role": "system", "content": "Be brief."}, USER],
                    documents=["Paris is in France.", {"id": "w1", "data": {"title": "Rome", "text": "In Italy."}}])
    assert out["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Use the following documents to answer. Each starts with its id in square "
                                      "brackets.\n[doc_0] Paris is in France.\n"
                                      '[w1] {"title": "Rome", "text": "In Italy."}'},
        {"role": "user", "content": "hi"},
    ]
    assert "documents" not in out  # the model reads them in its prompt


def native(**body: Any) -> dict[str, Any]:
    request = parse_chat_request(json.dumps({"model": "m", "messages": [USER], **body}).encode())
    return to_openai_request(request, citation_sources(request), native_documents=True)


def test_native_documents_go_as_cohere_documents_with_their_citation_mode() -> None:
    """A model LiteLLM serves through its Cohere provider reads documents itself and cites them natively."""
    out = native(documents=["Paris is in France.", {"id": "w1", "data": {"title": "Rome", "text": "In Italy."}}],
                 citation_options={"mode": "ACCURATE"})
    assert out["documents"] == [{"id": "doc_0", "data": {"text": "Paris is in France."}},
                                {"id": "w1", "data": {"title": "Rome", "text": "In Italy."}}]
    assert out["citation_options"] == {"mode": "ACCURATE"}
    assert out["messages"] == [{"role": "user", "content": "hi"}]  # no prompt: no documents, no markup


def test_native_documents_without_a_citation_mode_or_documents() -> None:
    out = native(documents=["Paris is in France."])
    assert out["documents"] == [{"id": "doc_0", "data": {"text": "Paris is in France."}}]
    assert "citation_options" not in out
    assert "citation_options" not in native(documents=["x"], citation_options={})
    assert "documents" not in native()


def test_document_ids_are_the_callers_else_positional() -> None:
    request = parse_chat_request(json.dumps({"model": "m", "messages": [USER], "documents": [
        "a", {"data": {"t": "b"}}, {"id": "mine", "data": {"t": "c"}}]}).encode())
    assert list(document_sources(request.documents)) == ["doc_0", "doc_1", "mine"]


def grounded(**body: Any) -> dict[str, Any]:
    request = parse_chat_request(json.dumps({"model": "m", "messages": [USER], **body}).encode())
    return to_openai_request(request, citation_sources(request))


def test_documents_with_citations_ask_for_markup() -> None:
    out = grounded(documents=["Paris is in France."])
    assert out["messages"][0]["content"].endswith(INSTRUCTIONS)
    assert "[doc_0] Paris is in France." in out["messages"][0]["content"]


def test_sources_are_cohere_source_objects() -> None:
    """What a citation's `sources` carry: Cohere's document and tool sources, by the id they are cited by."""
    request = parse_chat_request(json.dumps({"model": "m", "documents": ["Paris", {"data": {"city": "Zürich"}}],
                                             "messages": [USER, {"role": "tool", "tool_call_id": "c1",
                                                                 "content": "21 degrees"},
                                                          {"role": "tool", "tool_call_id": "c2", "content": [
                                                              {"type": "text", "text": "sunny"},
                                                              {"type": "document", "document": {"data": {"w": 3}}}]}]
                                             }).encode())
    assert citation_sources(request) == {
        "doc_0": {"type": "document", "id": "doc_0", "document": {"text": "Paris", "id": "doc_0"}},
        "doc_1": {"type": "document", "id": "doc_1", "document": {"city": "Zürich", "id": "doc_1"}},
        "c1": {"type": "tool", "id": "c1", "tool_output": {"text": "21 degrees"}},
        "c2:0": {"type": "tool", "id": "c2:0", "tool_output": {"text": "sunny"}},
        "c2:1": {"type": "tool", "id": "c2:1", "tool_output": {"w": 3}},
    }
    prompt = to_openai_request(request, citation_sources(request))["messages"][0]["content"]
    assert '[doc_1] {"city": "Zürich"}' in prompt  # UTF-8, as the caller wrote it


def test_no_sources_without_documents_or_tool_results() -> None:
    assert citation_sources(parse_chat_request(json.dumps({"model": "m", "messages": [USER]}).encode())) is None


def test_citations_off_gives_the_documents_without_markup_instructions() -> None:
    for mode in ("OFF", "DISABLED"):
        out = grounded(documents=["Paris is in France."], citation_options={"mode": mode})
        assert INSTRUCTIONS not in out["messages"][0]["content"]
        assert "[doc_0] Paris is in France." in out["messages"][0]["content"]


def test_tool_results_are_sources_named_by_their_tool_call_id() -> None:
    messages = [USER, {"role": "assistant", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"id": "call_2", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": [
            {"type": "document", "document": {"data": {"temp": 21}}}]},
        {"role": "tool", "tool_call_id": "call_2", "content": [
            {"type": "text", "text": "sunny"}, {"type": "document", "document": {"data": {"wind": 3}}}]}]
    out = grounded(messages=messages)
    assert out["messages"][0] == {"role": "system", "content": INSTRUCTIONS}
    assert out["messages"][3]["content"] == '[call_1] {"temp": 21}'
    assert out["messages"][4]["content"] == '[call_2:0] sunny\n[call_2:1] {"wind": 3}'



INVALID = [
    pytest.param({"temperature": 1.5}, "temperature", "1.5", id="temperature-1.5"),
    pytest.param({"temperature": -0.1}, "temperature", "-0.1", id="temperature-negative"),
    pytest.param({"p": 0}, "p", "0", id="p-0"),
    pytest.param({"p": 1}, "p", "1", id="p-1"),
    pytest.param({"k": 501}, "k", "501", id="k-501"),
    pytest.param({"k": 1.5}, "k", "1.5", id="k-float"),
    pytest.param({"stop_sequences": ["a", "b", "c", "d", "e", "f"]}, "stop_sequences", "at most 5",
                 id="six-stop-sequences"),
    pytest.param({"frequency_penalty": 2}, "frequency_penalty", "2", id="frequency-penalty-2"),
    pytest.param({"logprobs": "yes"}, "logprobs", "yes", id="logprobs-str"),
    pytest.param({"tool_choice": "ANY"}, "tool_choice", "ANY", id="tool-choice"),
    pytest.param({"safety_mode": "OFFF"}, "safety_mode", "OFFF", id="safety-mode"),
    pytest.param({"citation_options": {"mode": "MAYBE"}}, "citation_options.mode", "MAYBE", id="citation-mode"),
    pytest.param({"messages": [{"role": "user"}]}, "messages[0].content", "required", id="user-without-content"),
    pytest.param({"messages": [{"role": "assistant", "tool_calls": [{"type": "function", "function": {
        "name": "f"}}]}]}, "messages[0].tool_calls[0].id", "required", id="tool-call-without-id"),
    pytest.param({"messages": [{"role": "tool", "tool_call_id": "c", "content": [{"type": "image_url"}]}]},
                 "messages[0].content[0].type", "image_url", id="image-in-tool-result"),
    pytest.param({"documents": [3]}, "documents[0]", "3", id="document-not-str-or-object"),
    # Numbers JSON does not have, in free-form values: named where they are inside the value.
    pytest.param({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"a": [{"b": math.nan}]}}}]},
                 "tools[0].function.parameters.a[0].b: NaN is not a JSON number", "finite",
                 id="nan-in-tool-parameters"),
    pytest.param({"response_format": {"type": "json_object", "json_schema": {"maximum": -math.inf}}},
                 "response_format.json_schema.maximum: -Infinity", "not a JSON number", id="minus-infinity-in-schema"),
    pytest.param({"messages": [USER, {"role": "assistant", "content": "x", "citations": [{"start": math.inf}]}]},
                 "messages[1].citations[0].start: Infinity", "not a JSON number", id="infinity-in-citations"),
    # Every bound just past its edge is refused.
    pytest.param({"max_tokens": 0}, "max_tokens", "0", id="max-tokens-0"),
    pytest.param({"k": -1}, "k", "-1", id="k-negative"),
    pytest.param({"presence_penalty": 1.01}, "presence_penalty", "1.01", id="presence-penalty-over-1"),
    pytest.param({"priority": 1000}, "priority", "1000", id="priority-1000"),
    pytest.param({"priority": -1}, "priority", "-1", id="priority-negative"),
    pytest.param({"thinking": {"type": "enabled", "token_budget": 0}}, "thinking.token_budget", "0",
                 id="thinking-budget-0"),
    pytest.param({"tools": [{"type": "function", "function": {"name": ""}}]}, "tools[0].function.name",
                 "at least 1 character", id="tool-without-name"),
    pytest.param({"tools": [{"type": "retrieval", "function": {"name": "f"}}]}, "tools[0].type", "function",
                 id="tool-type"),
    pytest.param({"temperature": "0.5"}, "temperature", "0.5", id="no-coercion-from-strings"),
    pytest.param({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "ftp://example.com/cat.png"}}]}]}, "messages[0].content[0].image_url.url",
        "must be an http(s) URL or a base64 data URI", id="image-url-scheme"),
    pytest.param({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "https://example.com/cat.png", "detail": "medium"}}]}]}, "messages[0].content[0].image_url.detail",
        "medium", id="image-detail"),
    pytest.param({"messages": [{"role": "assistant", "content": [{"type": "thinking"}]}]},
                 "messages[0].content[0].thinking", "required", id="thinking-block-without-text"),
    pytest.param({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "retrieval", "function": {
        "name": "f"}}]}]}, "messages[0].tool_calls[0].type", "function", id="tool-call-type"),
    pytest.param({"messages": [{"role": "assistant", "content": "x", "citations": "none"}]},
                 "messages[0].citations", "valid array", id="assistant-citations-not-a-list"),
    pytest.param({"model": ""}, "model", "at least 1 character", id="empty-model"),
    pytest.param({"messages": []}, "messages", "at least 1 item", id="no-messages"),
]


@pytest.mark.parametrize(("body", "field", "detail"), INVALID)
def test_invalid_requests_name_the_field(body: dict[str, Any], field: str, detail: str) -> None:
    with pytest.raises(CohereError) as raised:
        translate(**body)
    assert raised.value.status == 400
    assert raised.value.message.startswith(field)
    assert detail in raised.value.message


@pytest.mark.parametrize(("response_format", "message"), [
    pytest.param({"type": "json_object", "json_schema": {}, "schema": {}},
                 "response_format: give json_schema or its older spelling schema, not both", id="both-spellings"),
    pytest.param({"type": "json_object", "jsonSchema": {}},
                 "response_format.jsonSchema is not a field of response_format", id="unknown-key-json-object"),
    pytest.param({"type": "text", "schema": {}}, "response_format.schema is not a field of response_format",
                 id="unknown-key-text"),
])
def test_response_format_keys_that_are_not_cohere_s_are_refused(response_format: dict[str, Any], message: str) -> None:
    """Unknown keys vanished silently before: a misspelt schema gave unconstrained JSON."""
    with pytest.raises(CohereError) as refused:
        translate(response_format=response_format)
    assert (refused.value.status, refused.value.message) == (400, message)
    assert refused.value.code == ("invalid_field" if "both" in message else "unknown_field")
