"""The Cohere v2 chat request, as Cohere's SDK and the seed API page send it.

Both spellings are accepted where the two differ (`logprobs`/`log_probs`,
`strict_tools`/`strict_tool_choice`, safety mode `OFF`/`NONE`). Unknown top-level fields are
ignored so newer clients keep working; unknown roles and content types are refused.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, TypeVar

import pydantic_core
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import BOTH_SPELLINGS, NON_FINITE_NUMBER, CohereError, from_validation_error


class _Schema(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


RequestSchema = _Schema  # the base of every endpoint's request schema: strict types, unknown fields ignored
RequestT = TypeVar("RequestT", bound=BaseModel)


def _finite_numbers(value: dict[str, Any] | list[Any]) -> dict[str, Any] | list[Any]:
    """Refuse NaN, Infinity and numbers too large for a double (1e309 parses as infinity) anywhere in a
    free-form value. The parser takes them, but they are not JSON: the provider call could not be sent,
    and would fail only after LiteLLM's retries. The error says where, inside the value."""
    stack: list[tuple[dict[str, Any] | list[Any], tuple[int | str, ...]]] = [(value, ())]
    while stack:  # no recursion: values come nested as deep as the parser allows
        node, at = stack.pop()
        for key, item in node.items() if isinstance(node, dict) else enumerate(node):
            if isinstance(item, float) and not math.isfinite(item):
                raise pydantic_core.PydanticCustomError(
                    NON_FINITE_NUMBER, "{number} is not a JSON number", {"number": item, "at": (*at, key)})
            if isinstance(item, (dict, list)):
                stack.append((item, (*at, key)))
    return value


# JSON of the caller's own that the schema does not type (tool parameters, schemas, documents, arguments).
JsonObject = Annotated[dict[str, Any], AfterValidator(_finite_numbers)]
JsonArray = Annotated[list[Any], AfterValidator(_finite_numbers)]


class TextContent(_Schema):
    type: Literal["text"]
    text: str


class ImageUrl(_Schema):
    url: str
    detail: Literal["auto", "low", "high"] | None = None

    @field_validator("url")
    @classmethod
    def _http_or_data_uri(cls, url: str) -> str:
        if not url.startswith(("http://", "https://", "data:")):
            raise ValueError("must be an http(s) URL or a base64 data URI")
        return url


class ImageContent(_Schema):
    type: Literal["image_url"]
    image_url: ImageUrl


class ThinkingContent(_Schema):
    type: Literal["thinking"]
    thinking: str


class Document(_Schema):
    data: JsonObject
    id: str | None = None


class DocumentContent(_Schema):
    type: Literal["document"]
    document: Document


UserContent = Annotated[TextContent | ImageContent, Field(discriminator="type")]
AssistantContent = Annotated[TextContent | ThinkingContent, Field(discriminator="type")]
ToolContent = Annotated[TextContent | DocumentContent, Field(discriminator="type")]


class ToolCallFunction(_Schema):
    name: str
    # A JSON string as Cohere sends it; an object is accepted and re-serialised.
    arguments: str | JsonObject = ""


class ToolCall(_Schema):
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class SystemMessage(_Schema):
    role: Literal["system"]
    content: str | list[TextContent]


class UserMessage(_Schema):
    role: Literal["user"]
    content: str | list[UserContent]


class AssistantMessage(_Schema):
    role: Literal["assistant"]
    content: str | list[AssistantContent] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_plan: str | None = None
    citations: JsonArray | None = None


class ToolMessage(_Schema):
    role: Literal["tool"]
    tool_call_id: str
    content: str | list[ToolContent]


Message = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolMessage, Field(discriminator="role")
]


class FunctionDefinition(_Schema):
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: JsonObject = Field(default_factory=dict)


class Tool(_Schema):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class Thinking(_Schema):
    type: Literal["enabled", "disabled"]
    token_budget: int | None = Field(default=None, gt=0)


class TextFormat(_Schema):
    # Unknown keys are refused here, unlike at the top level: a misspelt schema key would otherwise vanish
    # and the answer would silently be unconstrained JSON.
    model_config = ConfigDict(extra="forbid")  # merged with _Schema's: still strict
    type: Literal["text"]


class JsonObjectFormat(_Schema):
    model_config = ConfigDict(extra="forbid")  # merged with _Schema's: still strict
    type: Literal["json_object"]
    # `schema` is Cohere's older spelling, which LangChain's `with_structured_output` still sends.
    json_schema: JsonObject | None = Field(default=None, validation_alias=AliasChoices("json_schema", "schema"))

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, value: object) -> object:
        if isinstance(value, dict) and "json_schema" in value and "schema" in value:
            raise pydantic_core.PydanticCustomError(
                BOTH_SPELLINGS, "give json_schema or its older spelling schema, not both")
        return value


ResponseFormat = Annotated[TextFormat | JsonObjectFormat, Field(discriminator="type")]


class CitationOptions(_Schema):
    mode: Literal["ENABLED", "DISABLED", "FAST", "ACCURATE", "OFF"] | None = None


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


class ChatRequest(_Schema):
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    tools: list[Tool] | None = None
    tool_choice: Literal["AUTO", "NONE", "REQUIRED"] | None = None
    strict_tools: bool | None = Field(
        default=None, validation_alias=AliasChoices("strict_tools", "strict_tool_choice")
    )
    documents: list[str | Document] | None = None
    citation_options: CitationOptions | None = None
    response_format: ResponseFormat | None = None
    safety_mode: Literal["CONTEXTUAL", "STRICT", "OFF"] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    stop_sequences: list[str] | None = Field(default=None, max_length=5)
    temperature: float | None = Field(default=None, ge=0, le=1)
    seed: int | None = None
    frequency_penalty: float | None = Field(default=None, ge=0, le=1)
    presence_penalty: float | None = Field(default=None, ge=0, le=1)
    k: int | None = Field(default=None, ge=0, le=500)
    p: float | None = Field(default=None, ge=0.01, le=0.99)
    logprobs: bool | None = Field(default=None, validation_alias=AliasChoices("logprobs", "log_probs"))
    thinking: Thinking | None = None
    priority: int | None = Field(default=None, ge=0, le=999)
    stream: bool | None = None

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _tool_choice_any_case(cls, value: object) -> object:
        return _upper(value)

    @field_validator("safety_mode", mode="before")
    @classmethod
    def _safety_mode_none_is_off(cls, value: object) -> object:
        value = _upper(value)
        return "OFF" if value == "NONE" else value


def parse_chat_request(body: bytes) -> ChatRequest:
    """Validate a raw request body; a bad one raises `CohereError` (400) naming the field."""
    return parse_body(ChatRequest, body)


def parse_body(schema: type[RequestT], body: bytes) -> RequestT:
    """A raw request body validated as `schema` (a Cohere request of any endpoint); a bad one raises
    `CohereError` (400) naming the field as the client spelled it."""
    try:
        return schema.model_validate_json(body)
    except ValidationError as error:
        problems = error.errors(include_url=False)
        # Only a field's problem needs the body decoded, to name the field as the client spelled it.
        decoded = None if any(problem["type"] == "json_invalid" for problem in problems) else _decoded(body)
        raise from_validation_error(error, decoded) from None


def decode_json_body(body: bytes) -> Any:
    """`body` decoded by the parser `parse_chat_request` reads it with (pydantic's), within that parser's
    nesting limit (about 200 levels); `CohereError` (400 `invalid_json`) when it is not JSON. The standard
    library's `json` fails on bodies nested some 950 levels deep with a RecursionError instead, which
    escapes most handlers and makes the server drop the connection."""
    try:
        return pydantic_core.from_json(body)
    except ValueError as error:
        raise CohereError(400, f"request body is not valid JSON: {error}", code="invalid_json") from None


def _decoded(body: bytes) -> Any:
    try:
        return decode_json_body(body)
    except CohereError:
        return None


__all__ = ["ChatRequest", "CohereError", "decode_json_body", "parse_body", "parse_chat_request"]
