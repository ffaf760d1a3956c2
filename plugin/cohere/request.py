"""Cohere v2 chat request -> the OpenAI chat-completions request LiteLLM's router takes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .citations import INSTRUCTIONS, Source, document_sources, source_text, tool_sources
from .schema import (
    AssistantMessage,
    ChatRequest,
    JsonObjectFormat,
    Message,
    SystemMessage,
    TextContent,
    ToolMessage,
    UserMessage,
)

_TOOL_CHOICE = {"AUTO": "auto", "NONE": "none", "REQUIRED": "required"}

# Without a budget, "enabled" asks for LiteLLM's provider-neutral reasoning effort.
_DEFAULT_REASONING_EFFORT = "medium"


def to_openai_request(request: ChatRequest, sources: Mapping[str, Source] | None = None,
                      native_documents: bool = False) -> dict[str, Any]:
    """The OpenAI-format body for `request`. Parameters a target model cannot honour are left for
    LiteLLM to drop (`drop_params`), as it does for its own routes. With `sources` (see
    `citations.citation_sources`) the model is asked to mark what it cites. With `native_documents`
    (a model LiteLLM serves through its Cohere provider) documents go as Cohere's own `documents`."""
    body: dict[str, Any] = {
        "model": request.model,
        "messages": _messages(request, None if native_documents else sources,
                              with_documents=not native_documents),
        "drop_params": True,
    }
    if native_documents and request.documents:
        body["documents"] = [{"id": source["id"], "data": {k: v for k, v in source["document"].items() if k != "id"}}
                             for source in document_sources(request.documents).values()]
        if request.citation_options is not None and request.citation_options.mode is not None:
            body["citation_options"] = {"mode": request.citation_options.mode}
    if request.stream:
        body["stream"] = True
        # Usage arrives in a last chunk only when asked for; Cohere's message-end carries it.
        body["stream_options"] = {"include_usage": True}
    _copy(request, body, "temperature", "temperature")
    _copy(request, body, "p", "top_p")
    _copy(request, body, "k", "top_k")
    _copy(request, body, "max_tokens", "max_tokens")
    _copy(request, body, "stop_sequences", "stop")
    _copy(request, body, "frequency_penalty", "frequency_penalty")
    _copy(request, body, "presence_penalty", "presence_penalty")
    _copy(request, body, "seed", "seed")
    # LiteLLM's router schedules by `priority` (lower first), as Cohere does.
    _copy(request, body, "priority", "priority")
    if request.logprobs:
        body["logprobs"] = True
    if request.tools:
        body["tools"] = [_tool(tool.function, request.strict_tools) for tool in request.tools]
        if request.tool_choice is not None:
            body["tool_choice"] = _TOOL_CHOICE[request.tool_choice]
    elif request.tool_choice == "NONE":
        body["tool_choice"] = "none"
    if isinstance(request.response_format, JsonObjectFormat):
        body["response_format"] = _json_format(request.response_format)
    if request.thinking is not None and request.thinking.type == "enabled":
        if request.thinking.token_budget is not None:
            body["thinking"] = {"type": "enabled", "budget_tokens": request.thinking.token_budget}
        else:
            body["reasoning_effort"] = _DEFAULT_REASONING_EFFORT
    return body


def _copy(request: ChatRequest, body: dict[str, Any], field: str, openai_name: str) -> None:
    value = getattr(request, field)
    if value is not None:
        body[openai_name] = value


def _tool(function: Any, strict: bool | None) -> dict[str, Any]:
    definition: dict[str, Any] = {"name": function.name, "parameters": function.parameters or {
        "type": "object", "properties": {}}}
    if function.description is not None:
        definition["description"] = function.description
    if strict:
        definition["strict"] = True
    return {"type": "function", "function": definition}


def _json_format(response_format: JsonObjectFormat) -> dict[str, Any]:
    if response_format.json_schema is None:
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": response_format.json_schema}}


def _messages(request: ChatRequest, sources: Mapping[str, Source] | None,
              with_documents: bool = True) -> list[dict[str, Any]]:
    converted = [
        _tool_result(message, sources) if isinstance(message, ToolMessage) else _message(message)
        for message in request.messages
    ]
    grounding = _grounding_prompt(request, sources, with_documents)
    if grounding:
        # After the caller's own system prompt, before the conversation.
        position = next(
            (i for i, message in enumerate(request.messages) if not isinstance(message, SystemMessage)),
            len(converted),
        )
        converted.insert(position, {"role": "system", "content": grounding})
    return converted


def _grounding_prompt(request: ChatRequest, sources: Mapping[str, Source] | None,
                      with_documents: bool) -> str | None:
    documents = document_sources(request.documents or []) if with_documents else {}
    lines = []
    if documents:
        lines.append("Use the following documents to answer. Each starts with its id in square brackets.")
        lines.extend(source_text(source) for source in documents.values())
    if sources:
        lines.append(INSTRUCTIONS)
    return "\n".join(lines) or None


def _message(message: Message) -> dict[str, Any]:
    if isinstance(message, SystemMessage):
        return {"role": "system", "content": _plain_text(message.content)}
    if isinstance(message, UserMessage):
        return {"role": "user", "content": _user_content(message.content)}
    if isinstance(message, AssistantMessage):
        return _assistant(message)
    return _tool_result(message, None)


def _plain_text(content: str | list[TextContent]) -> str:
    return content if isinstance(content, str) else "\n".join(block.text for block in content)


def _user_content(content: str | list[Any]) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for block in content:
        if block.type == "text":
            parts.append({"type": "text", "text": block.text})
        else:
            image: dict[str, Any] = {"url": block.image_url.url}
            if block.image_url.detail is not None:
                image["detail"] = block.image_url.detail
            parts.append({"type": "image_url", "image_url": image})
    return parts


def _assistant(message: AssistantMessage) -> dict[str, Any]:
    # Thinking blocks from earlier turns carry no provider signature, so they are not replayed.
    if isinstance(message.content, str):
        text = message.content
    else:
        text = "\n".join(block.text for block in message.content or [] if block.type == "text")
    if not text and message.tool_plan:
        text = message.tool_plan
    out: dict[str, Any] = {"role": "assistant", "content": text or None}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {
                    "name": call.function.name,
                    "arguments": call.function.arguments
                    if isinstance(call.function.arguments, str)
                    else json.dumps(call.function.arguments),
                },
            }
            for call in message.tool_calls
        ]
    elif not text:
        out["content"] = ""
    return out


def _tool_result(message: ToolMessage, sources: Mapping[str, Source] | None) -> dict[str, Any]:
    if sources:  # each result block with the id it is cited by
        content = "\n".join(source_text(source) for source in tool_sources(message).values())
    elif isinstance(message.content, str):
        content = message.content
    else:
        content = "\n".join(
            block.text if block.type == "text" else json.dumps(block.document.data, ensure_ascii=False)
            for block in message.content
        )
    return {"role": "tool", "tool_call_id": message.tool_call_id, "content": content}
