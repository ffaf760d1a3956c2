"""OpenAI response (as LiteLLM returns it) -> Cohere v2 response, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from plugin.cohere.response import to_cohere_response

USAGE = {"prompt_tokens": 71, "completion_tokens": 418, "total_tokens": 489,
         "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": None},
         "completion_tokens_details": {"reasoning_tokens": 0}}


def openai_response(message: dict[str, Any], finish: str = "stop", **choice: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-123", "object": "chat.completion", "created": 1764290000, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish,
                         **choice}],
            "usage": USAGE}


def test_text_answer_and_usage_with_cached_tokens() -> None:
    out = to_cohere_response(openai_response({"content": "Hello!", "tool_calls": None, "function_call": None}))
    assert out == {
        "id": "chatcmpl-123",
        "finish_reason": "COMPLETE",
        "message": {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]},
        "usage": {"billed_units": {"input_tokens": 71, "output_tokens": 418},
                  "tokens": {"input_tokens": 71, "output_tokens": 418}, "cached_tokens": 64},
    }


FINISH_REASONS = [
    pytest.param("stop", {}, None, "COMPLETE", id="stop"),
    pytest.param("length", {}, None, "MAX_TOKENS", id="length"),
    pytest.param("tool_calls", {}, None, "TOOL_CALL", id="tool_calls"),
    pytest.param("function_call", {}, None, "TOOL_CALL", id="function_call"),
    pytest.param("content_filter", {}, None, "ERROR", id="content_filter"),
    pytest.param("stop", {"stop_reason": "END"}, ["END"], "STOP_SEQUENCE", id="vllm-stop-reason"),
    pytest.param("stop", {"provider_specific_fields": {"stop_reason": "END"}}, ["END"], "STOP_SEQUENCE",
                 id="provider-specific-stop-reason"),
    pytest.param("stop", {"stop_reason": 128001}, ["END"], "COMPLETE", id="eos-token-is-complete"),
    pytest.param("stop", {"stop_reason": "OTHER"}, ["END"], "COMPLETE", id="not-a-requested-sequence"),
    pytest.param("stop_sequence", {}, None, "STOP_SEQUENCE", id="anthropic-style"),
    pytest.param(None, {}, None, "COMPLETE", id="missing"),
]


@pytest.mark.parametrize(("finish", "choice", "stops", "expected"), FINISH_REASONS)
def test_finish_reasons(finish: str | None, choice: dict[str, Any], stops: list[str] | None, expected: str) -> None:
    out = to_cohere_response(openai_response({"content": "x"}, finish, **choice), stop_sequences=stops)
    assert out["finish_reason"] == expected


def test_tool_calls_with_plan() -> None:
    out = to_cohere_response(openai_response({
        "content": "I will check the weather.",
        "tool_calls": [{"id": "call_9", "type": "function",
                        "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}],
    }, "tool_calls"))
    assert out["finish_reason"] == "TOOL_CALL"
    assert out["message"] == {
        "role": "assistant",
        "tool_plan": "I will check the weather.",
        "tool_calls": [{"id": "call_9", "type": "function",
                        "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}],
    }


def test_tool_calls_reported_with_stop_are_still_a_tool_call() -> None:
    out = to_cohere_response(openai_response({"content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}, "stop"))
    assert out["finish_reason"] == "TOOL_CALL"
    assert "content" not in out["message"] and "tool_plan" not in out["message"]


THINKING = [
    pytest.param({"reasoning_content": "Because."}, id="reasoning_content"),
    pytest.param({"thinking_blocks": [{"type": "thinking", "thinking": "Because", "signature": "s"},
                                      {"type": "thinking", "thinking": "."}]}, id="anthropic-thinking-blocks"),
]


@pytest.mark.parametrize("fields", THINKING)
def test_thinking_comes_first(fields: dict[str, Any]) -> None:
    out = to_cohere_response(openai_response({"content": "Yes.", **fields}))
    assert out["message"]["content"] == [{"type": "thinking", "thinking": "Because."}, {"type": "text", "text": "Yes."}]


def test_logprobs_when_asked() -> None:
    logprobs = {"content": [{"token": "Hel", "logprob": -0.01, "bytes": [72, 101, 108], "top_logprobs": []},
                            {"token": "lo", "logprob": -0.5, "bytes": [108, 111], "top_logprobs": []}]}
    message = openai_response({"content": "Hello"}, logprobs=logprobs)
    assert to_cohere_response(message, with_logprobs=True)["logprobs"] == [
        {"text": "Hel", "token_ids": [], "logprobs": [-0.01]},
        {"text": "lo", "token_ids": [], "logprobs": [-0.5]},
    ]
    assert "logprobs" not in to_cohere_response(message)
    assert to_cohere_response(openai_response({"content": "x"}), with_logprobs=True)["logprobs"] == []


def test_empty_answer_still_has_a_text_block() -> None:
    out = to_cohere_response(openai_response({"content": None}))
    assert out["message"]["content"] == [{"type": "text", "text": ""}]


def test_missing_usage_is_zero() -> None:
    response = openai_response({"content": "x"})
    del response["usage"]
    assert to_cohere_response(response)["usage"] == {
        "billed_units": {"input_tokens": 0, "output_tokens": 0},
        "tokens": {"input_tokens": 0, "output_tokens": 0}, "cached_tokens": 0}


def test_an_unknown_finish_reason_is_complete() -> None:
    assert to_cohere_response(openai_response({"content": "x"}, "end_turn"))["finish_reason"] == "COMPLETE"


def test_cached_tokens_in_anthropics_spelling() -> None:
    response = openai_response({"content": "x"})
    response["usage"] = {"prompt_tokens": 10, "completion_tokens": 2, "cache_read_input_tokens": 7}
    assert to_cohere_response(response)["usage"]["cached_tokens"] == 7


def test_reasoning_in_the_reasoning_field() -> None:
    out = to_cohere_response(openai_response({"content": "Yes.", "reasoning": "Because."}))
    assert out["message"]["content"][0] == {"type": "thinking", "thinking": "Because."}


def test_thinking_blocks_without_text_add_nothing() -> None:
    """Anthropic's redacted thinking has no readable text."""
    out = to_cohere_response(openai_response({"content": "Yes.", "thinking_blocks": [
        {"type": "redacted_thinking", "data": "opaque"}, {"type": "thinking", "thinking": "Because."}]}))
    assert out["message"]["content"][0] == {"type": "thinking", "thinking": "Because."}


def test_missing_ids_and_names_are_empty_strings() -> None:
    """Cohere's schema has strings there; a provider's nulls would fail the client's parsing."""
    response = openai_response({"content": None, "tool_calls": [
        {"id": None, "type": "function", "function": {"name": None, "arguments": None}}]}, "tool_calls")
    del response["id"]
    out = to_cohere_response(response)
    assert out["id"] == ""
    assert out["message"]["tool_calls"] == [{"id": "", "type": "function", "function": {"name": "", "arguments": ""}}]
