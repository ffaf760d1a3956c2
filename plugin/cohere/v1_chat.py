"""Cohere v1 chat <-> Cohere v2 chat, so that v1 requests go the v2 route's way (translate, LiteLLM's
router, translate back) and answer in v1's shape: the non-stream answer, and the stream as one JSON
event per line (`stream-start`, `text-generation`, `citation-generation`, `tool-calls-chunk`,
`tool-calls-generation`, `stream-end` carrying the whole answer), as `cohere.Client` reads it.

v1 names the turn differently: a `message` (the user's), a `preamble` (the system's), a `chat_history` of
USER / CHATBOT / SYSTEM / TOOL entries (roles in any case, `null` for absent), tools with
`parameter_definitions` (Python type names), and tool calls without ids, matched to their results by
name and parameters. Fields Cohere removed (`connectors`, `search_queries_only`) and those this gateway
cannot honour (`conversation_id`, `raw_prompting`, prompt truncation) are refused by name.

Pure: data in, data out; imports nothing from LiteLLM.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import Field, field_validator

from .errors import CohereError
from .schema import ChatRequest, JsonObject, RequestSchema, ResponseFormat

API_VERSION = {"version": "1"}
Event = dict[str, Any]


class V1ToolCall(RequestSchema):
    name: str = Field(min_length=1)
    parameters: JsonObject | None = None


class V1ToolResult(RequestSchema):
    call: V1ToolCall
    outputs: list[JsonObject]


class V1Message(RequestSchema):
    role: Literal["USER", "CHATBOT", "SYSTEM", "TOOL"]
    message: str | None = None
    tool_calls: list[V1ToolCall] | None = None
    tool_results: list[V1ToolResult] | None = None

    @field_validator("role", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value  # LlamaIndex sends "User", "Chatbot"


class V1ParameterDefinition(RequestSchema):
    type: str = Field(min_length=1)
    description: str | None = None
    required: bool | None = None


class V1Tool(RequestSchema):
    name: str = Field(min_length=1)
    description: str | None = None
    parameter_definitions: dict[str, V1ParameterDefinition] | None = None


class V1ChatRequest(RequestSchema):
    message: str
    model: str = Field(min_length=1)
    stream: bool | None = None
    preamble: str | None = None
    chat_history: list[V1Message] | None = None
    conversation_id: str | None = None
    prompt_truncation: Literal["OFF", "AUTO", "AUTO_PRESERVE_ORDER"] | None = None
    connectors: list[Any] | None = None
    search_queries_only: bool | None = None
    documents: list[JsonObject] | None = None
    citation_quality: Literal["ENABLED", "DISABLED", "FAST", "ACCURATE", "OFF"] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_input_tokens: int | None = None
    k: int | None = Field(default=None, ge=0, le=500)
    p: float | None = Field(default=None, ge=0.01, le=0.99)
    seed: int | None = None
    stop_sequences: list[str] | None = Field(default=None, max_length=5)
    frequency_penalty: float | None = Field(default=None, ge=0, le=1)
    presence_penalty: float | None = Field(default=None, ge=0, le=1)
    raw_prompting: bool | None = None
    tools: list[V1Tool] | None = None
    tool_results: list[V1ToolResult] | None = None
    force_single_step: bool | None = None  # every answer here is one step: nothing to force
    response_format: ResponseFormat | None = None
    safety_mode: Literal["CONTEXTUAL", "STRICT", "NONE", "OFF"] | None = None
    return_prompt: bool | None = None  # SDK 5.3-5.15; no prompt is kept here to return

    @field_validator("citation_quality", "prompt_truncation", "safety_mode", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


def refused_fields(request: V1ChatRequest) -> None:
    """A 400 naming the first field this gateway does not serve rather than ignore silently."""
    if request.connectors:
        raise CohereError(400, "connectors are not supported: Cohere deprecated them (September 2025); pass "
                               "the documents to ground on in documents")
    if request.search_queries_only:
        raise CohereError(400, "search_queries_only is not supported: Cohere deprecated it (September 2025)")
    if request.conversation_id is not None:
        raise CohereError(400, "conversation_id is not supported: this gateway keeps no conversations; pass "
                               "the earlier turns in chat_history")
    if request.raw_prompting:
        raise CohereError(400, "raw_prompting is not supported: the prompt is always built from the messages")
    if request.prompt_truncation in ("AUTO", "AUTO_PRESERVE_ORDER"):
        raise CohereError(400, f"prompt_truncation {request.prompt_truncation} is not supported: this gateway "
                               "never drops turns from chat_history; use OFF")
    if request.max_input_tokens is not None:
        raise CohereError(400, "max_input_tokens is not supported: this gateway does not truncate the prompt")


# --- request: v1 -> v2 -------------------------------------------------------------------------------------

def to_v2_chat(request: V1ChatRequest) -> ChatRequest:
    """The v2 chat request that asks the same as `request` (which `refused_fields` has accepted)."""
    messages: list[dict[str, Any]] = []
    if request.preamble:
        messages.append({"role": "system", "content": request.preamble})
    calls: list[tuple[str, V1ToolCall]] = []  # the tool calls of the last CHATBOT turn, with the ids given them
    history = request.chat_history or []
    for turn, entry in enumerate(history):
        if entry.role == "SYSTEM" and entry.message:
            messages.append({"role": "system", "content": entry.message})
        elif entry.role == "USER" and entry.message:
            messages.append({"role": "user", "content": entry.message})
        elif entry.role == "CHATBOT":
            calls = [(tool_call_id(call.name, n, turn), call) for n, call in enumerate(entry.tool_calls or [])]
            if calls or entry.message:
                messages.append(_assistant(entry.message, calls))
        elif entry.role == "TOOL" and entry.tool_results:
            messages.extend(_tool_turn(entry.tool_results, calls, turn))
            calls = []
    if request.tool_results:
        messages.extend(_tool_turn(request.tool_results, calls, len(history)))
    if request.message:
        messages.append({"role": "user", "content": request.message})
    if not messages or messages[-1]["role"] not in ("user", "tool"):
        raise CohereError(400, "message must not be empty (on a tool turn, pass tool_results)")
    body: dict[str, Any] = {"model": request.model, "messages": messages}
    if request.tools:
        body["tools"] = [_tool(tool, n) for n, tool in enumerate(request.tools)]
    if request.documents:
        body["documents"] = [_document(document) for document in request.documents]
    if request.citation_quality:
        body["citation_options"] = {"mode": request.citation_quality}
    if request.safety_mode:
        body["safety_mode"] = "OFF" if request.safety_mode == "NONE" else request.safety_mode
    for name in ("max_tokens", "stop_sequences", "temperature", "seed", "frequency_penalty", "presence_penalty",
                 "k", "p", "stream"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    if request.response_format is not None:
        body["response_format"] = request.response_format.model_dump(exclude_none=True)
    return ChatRequest.model_validate(body)


def tool_call_id(name: str, position: int, turn: int) -> str:
    """v1 tool calls have no id; this one names a call by its turn and place, as Cohere's v1 document ids
    of tool results do (`<tool>:<call>:<turn>`, `:<output>` appended where a result has several)."""
    return f"{name}:{position}:{turn}"


def _assistant(text: str | None, calls: Sequence[tuple[str, V1ToolCall]]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant"}
    if calls:
        message["tool_calls"] = [{"id": call_id, "type": "function",
                                  "function": {"name": call.name, "arguments": json.dumps(call.parameters or {})}}
                                 for call_id, call in calls]
        if text:
            message["tool_plan"] = text
    else:
        message["content"] = text or ""
    return message


def _tool_turn(results: Sequence[V1ToolResult], calls: Sequence[tuple[str, V1ToolCall]],
               turn: int) -> list[dict[str, Any]]:
    """Tool messages for `results`, each answering the call of the last CHATBOT turn it matches (same name
    and parameters); results of calls no turn shows are preceded by the call they answer."""
    unmatched = list(calls)
    answered: list[tuple[str, V1ToolResult]] = []
    made: list[tuple[str, V1ToolCall]] = []
    for n, result in enumerate(results):
        match = next((pair for pair in unmatched if pair[1].name == result.call.name
                      and (pair[1].parameters or {}) == (result.call.parameters or {})), None)
        if match is None:
            match = (tool_call_id(result.call.name, n, turn), result.call)
            made.append(match)
        else:
            unmatched.remove(match)
        answered.append((match[0], result))
    messages = [_assistant(None, made)] if made else []
    for call_id, result in answered:
        content = [{"type": "document", "document": {"data": output}} for output in result.outputs] \
            or [{"type": "text", "text": "[]"}]
        messages.append({"role": "tool", "tool_call_id": call_id, "content": content})
    return messages


def _document(document: Mapping[str, Any]) -> dict[str, Any]:
    """A v1 document (string fields, an optional `id`, `_excludes`: fields the model must not see)."""
    excluded = document.get("_excludes") or []
    data = {key: value for key, value in document.items() if key not in ("id", "_excludes") and key not in excluded}
    doc_id = document.get("id")
    return {"data": data, **({"id": str(doc_id)} if doc_id is not None else {})}


_SCALARS = {"str": "string", "string": "string", "int": "integer", "integer": "integer", "float": "number",
            "number": "number", "bool": "boolean", "boolean": "boolean", "list": "array", "array": "array",
            "tuple": "array", "dict": "object", "object": "object"}
_GENERIC = re.compile(r"^\s*(\w+)\s*\[\s*(.*?)\s*\]\s*$")


def json_schema_of(python_type: str) -> dict[str, Any] | None:
    """A v1 parameter's type (`str`, `int`, `List[str]`, `Dict[str, int]`, JSON schema names too) as a
    JSON schema; None for one it cannot read."""
    name = python_type.strip()
    scalar = _SCALARS.get(name.lower())
    if scalar is not None:
        return {"type": scalar}
    generic = _GENERIC.match(name)
    if generic is None:
        return None
    outer, inner = generic.group(1).lower(), generic.group(2)
    if outer in ("list", "sequence", "set", "tuple"):
        items = json_schema_of(inner.split(",")[0]) if outer == "tuple" else json_schema_of(inner)
        return {"type": "array", "items": items} if items is not None else None
    if outer in ("dict", "mapping"):
        key, _, value = inner.partition(",")
        values = json_schema_of(value) if value else None
        if json_schema_of(key) is None or (value and values is None):
            return None
        return {"type": "object", **({"additionalProperties": values} if values else {})}
    if outer == "optional":
        return json_schema_of(inner)
    return None


def _tool(tool: V1Tool, position: int) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, definition in (tool.parameter_definitions or {}).items():
        schema = json_schema_of(definition.type)
        if schema is None:
            raise CohereError(400, f"tools[{position}].parameter_definitions.{name}.type must be a Python type such "
                                   f"as str, int, float, bool, list, dict or List[str], got {definition.type!r}")
        if definition.description:
            schema = {**schema, "description": definition.description}
        properties[name] = schema
        if definition.required:
            required.append(name)
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    function: dict[str, Any] = {"name": tool.name, "parameters": parameters}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


# --- answer: v2 -> v1 --------------------------------------------------------------------------------------

_FINISH = {"COMPLETE": "COMPLETE", "STOP_SEQUENCE": "STOP_SEQUENCE", "MAX_TOKENS": "MAX_TOKENS",
           "TOOL_CALL": "COMPLETE", "ERROR": "ERROR", "TIMEOUT": "ERROR"}
# A stream's `stream-end` takes fewer reasons than an answer's `finish_reason`.
_STREAM_END_FINISH = {"STOP_SEQUENCE": "COMPLETE"}


def to_v1_response(v2: Mapping[str, Any], request: V1ChatRequest, generation_id: str | None = None) -> dict[str, Any]:
    """The v1 answer from the v2 one (`response.to_cohere_response`'s shape)."""
    message = v2.get("message") or {}
    calls = [{"name": (call.get("function") or {}).get("name") or "",
              "parameters": _parameters((call.get("function") or {}).get("arguments"))}
             for call in message.get("tool_calls") or []]
    text = message.get("tool_plan") or "" if calls else \
        "".join(block.get("text") or "" for block in message.get("content") or [] if block.get("type") == "text")
    citations = message.get("citations") or []
    answer: dict[str, Any] = {
        "response_id": v2.get("id") or str(uuid.uuid4()),
        "text": text,
        "generation_id": generation_id or str(uuid.uuid4()),
        "chat_history": _history_after(request, text, calls),
        "finish_reason": _FINISH.get(v2.get("finish_reason") or "COMPLETE", "COMPLETE"),
        "meta": meta(v2.get("usage")),
    }
    if citations:
        answer["citations"] = [v1_citation(citation) for citation in citations]
        answer["documents"] = cited_documents(citations)
    if calls:
        answer["tool_calls"] = calls
    return answer


def meta(usage: Mapping[str, Any] | None) -> dict[str, Any]:
    usage = usage or {}
    return {"api_version": API_VERSION, "billed_units": dict(usage.get("billed_units") or {}),
            "tokens": dict(usage.get("tokens") or {})}


def _parameters(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def v1_citation(citation: Mapping[str, Any]) -> dict[str, Any]:
    return {"start": citation.get("start"), "end": citation.get("end"), "text": citation.get("text"),
            "document_ids": [source.get("id") for source in citation.get("sources") or []],
            "type": citation.get("type") or "TEXT_CONTENT"}


def cited_documents(citations: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The documents the citations cite, once each, in the order first cited: a caller's document with its
    fields and `id`, a tool result's output with its `id`."""
    documents: dict[str, dict[str, Any]] = {}
    for citation in citations:
        for source in citation.get("sources") or []:
            source_id = source.get("id")
            if source_id in documents:
                continue
            data = source.get("document") or source.get("tool_output") or {}
            documents[source_id] = {**data, "id": source_id}
    return list(documents.values())


def _history_after(request: V1ChatRequest, text: str, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation so far, as the next request passes it back: the request's history, this turn (its
    message, or its tool results) and the answer."""
    history = [entry.model_dump(exclude_none=True) for entry in request.chat_history or []]
    if request.tool_results:
        history.append({"role": "TOOL", "tool_results": [result.model_dump(exclude_none=True)
                                                         for result in request.tool_results]})
    if request.message:
        history.append({"role": "USER", "message": request.message})
    reply: dict[str, Any] = {"role": "CHATBOT", "message": text}
    if calls:
        reply["tool_calls"] = calls
    history.append(reply)
    return history


class V1ChatStream:
    """v2 stream events (`stream.CohereStream`'s) -> v1 stream events, per request. Keeps what the closing
    `stream-end` carries: the whole answer, built as the non-stream one is."""

    def __init__(self, request: V1ChatRequest) -> None:
        self._request = request
        self._generation_id = str(uuid.uuid4())
        self._id = ""
        self._text: list[str] = []
        self._plan: list[str] = []
        self._calls: list[dict[str, Any]] = []  # v2 tool calls, their arguments accumulated
        self._citations: list[dict[str, Any]] = []

    def events(self, v2_events: Sequence[Event]) -> list[Event]:
        out: list[Event] = []
        for event in v2_events:
            out.extend(self._one(event))
        return out

    def _one(self, event: Event) -> list[Event]:
        kind, delta = event.get("type"), event.get("delta") or {}
        message = delta.get("message") or {}
        if kind == "message-start":
            self._id = event.get("id") or ""
            return [{"event_type": "stream-start", "generation_id": self._generation_id, "is_finished": False}]
        if kind == "content-delta":
            text = (message.get("content") or {}).get("text")
            if text:
                self._text.append(text)
                return [{"event_type": "text-generation", "text": text, "is_finished": False}]
            return []  # thinking: v1 has none
        if kind == "tool-plan-delta":
            plan = message.get("tool_plan") or ""
            self._plan.append(plan)
            return [{"event_type": "tool-calls-chunk", "text": plan, "tool_call_delta": {"text": plan},
                     "is_finished": False}]
        if kind == "tool-call-start":
            call = message.get("tool_calls") or {}
            function = call.get("function") or {}
            self._calls.append({"id": call.get("id"), "type": "function",
                                "function": {"name": function.get("name") or "", "arguments": ""}})
            return [{"event_type": "tool-calls-chunk", "text": "", "is_finished": False,
                     "tool_call_delta": {"index": len(self._calls) - 1, "name": function.get("name") or ""}}]
        if kind == "tool-call-delta" and self._calls:
            arguments = ((message.get("tool_calls") or {}).get("function") or {}).get("arguments") or ""
            self._calls[-1]["function"]["arguments"] += arguments
            return [{"event_type": "tool-calls-chunk", "text": "", "is_finished": False,
                     "tool_call_delta": {"index": len(self._calls) - 1, "parameters": arguments}}]
        if kind == "citation-start":
            citation = message.get("citations") or {}
            self._citations.append(citation)
            return [{"event_type": "citation-generation", "citations": [v1_citation(citation)],
                     "is_finished": False}]
        if kind == "message-end":
            return self._end(delta)
        return []

    def _end(self, delta: Mapping[str, Any]) -> list[Event]:
        v2_message: dict[str, Any] = {"role": "assistant", "content": [{"type": "text", "text": "".join(self._text)}]}
        if self._calls:
            v2_message["tool_calls"] = self._calls
            v2_message["tool_plan"] = "".join(self._plan) or "".join(self._text)
        if self._citations:
            v2_message["citations"] = self._citations
        v2 = {"id": self._id, "finish_reason": delta.get("finish_reason"), "message": v2_message,
              "usage": delta.get("usage")}
        response = to_v1_response(v2, self._request, self._generation_id)
        out: list[Event] = []
        if self._calls:
            out.append({"event_type": "tool-calls-generation", "text": response["text"],
                        "tool_calls": response["tool_calls"], "is_finished": False})
        finish = _STREAM_END_FINISH.get(response["finish_reason"], response["finish_reason"])
        out.append({"event_type": "stream-end", "finish_reason": finish, "response": response,
                    "is_finished": True})
        return out
