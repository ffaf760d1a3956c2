"""Cohere-shaped errors: one exception type and the wire body every client can read.

Cohere answers `{"message", "id"}`; the seed API page shows `{"type", "message", "code"}`.
We send the union so both kinds of client read it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

# Statuses the cohere SDK maps to its own exception classes (402 is ours: budget exhausted).
_COHERE_STATUSES = frozenset({400, 401, 402, 403, 404, 422, 429, 498, 499, 500, 501, 503, 504})

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "budget_exceeded_error",
    403: "permission_error",
    404: "not_found_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    499: "client_closed_request",
    501: "not_implemented_error",
    503: "service_unavailable_error",
    504: "timeout_error",
}

_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    402: "budget_exceeded",
    403: "forbidden",
    404: "not_found",
    422: "unprocessable_entity",
    429: "too_many_requests",
    499: "client_closed_request",
    501: "not_implemented",
    503: "service_unavailable",
    504: "gateway_timeout",
}


class CohereError(Exception):
    """An error to answer in Cohere's shape with `status`. `message` must never carry a secret."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _CODES.get(status, "internal_error" if status >= 500 else "invalid_request")
        self.headers = dict(headers or {})

    def body(self, request_id: str) -> dict[str, str]:
        return {
            "type": _TYPES.get(self.status, "api_error" if self.status >= 500 else "invalid_request_error"),
            "message": self.message,
            "code": self.code,
            "id": request_id,
        }


# Values that look like a credential: API keys (sk-...), JWTs, and what follows "Bearer" when it is
# token-shaped (16+ token characters), so that words such as "malformed bearer token" stay.
_SECRET = re.compile(r"(?:\bsk-[A-Za-z0-9._\-]{4,}|\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"
                     r"|(?i:bearer)\s+[A-Za-z0-9._~+/\-]{16,}=*)")


# A full key id (SHA-256 hex): shown by its prefix, as the plugin names keys everywhere.
_KEY_ID = re.compile(r"\b([0-9a-f]{12})[0-9a-f]{52}\b")


def redact(text: str) -> str:
    """`text` with every credential-looking token replaced and key ids shortened, for messages that
    came from elsewhere."""
    return _KEY_ID.sub(r"\1", _SECRET.sub("[redacted]", text))


# LiteLLM's wrapping of a provider's error: "litellm.RateLimitError: RateLimitError: OpenAIException - ".
_LITELLM_WRAPPING = re.compile(r"^\s*(?:litellm\.[A-Za-z]+:\s*)?(?:[A-Za-z]+Error:\s*)?(?:[A-Za-z_]+Exception\s*-\s*)?")


# What LiteLLM's router appends to a failed call's message: the proxy's fallback settings, which are the
# operator's business, and (1.100-1.104) the whole message again; from 1.106 a paragraph of its own ("LiteLLM:
# model group 'x' failed with the error above ... Fallbacks are configured for: ..."). The provider's words
# end before it.
_ROUTER_FALLBACK_NOTE = re.compile(r"No fallback model group found for original model_group=|Received Model Group="
                                   r"|\n\nLiteLLM: model group '")


def call_failure_message(status: int, text: str, model: str | None) -> str:
    """What a client is told when the call to `model` failed: the provider's own words without LiteLLM's
    exception class names or its router's notes, and, for a 429, which limit was hit."""
    said = _LITELLM_WRAPPING.sub("", text, count=1)
    said = _ROUTER_FALLBACK_NOTE.split(said, maxsplit=1)[0].strip() or text
    if status == 429:
        return f"the provider of model {model!r} is rate limiting requests; retry later (it said: {said})"
    return said


def cohere_status(upstream_status: int) -> int:
    """The Cohere status for an HTTP status LiteLLM or a provider answered with."""
    if upstream_status in _COHERE_STATUSES:
        return upstream_status
    if upstream_status == 408:
        return 504
    if upstream_status == 502:
        return 503
    return 500 if upstream_status >= 500 or upstream_status < 400 else 400


def field_path(loc: tuple[int | str, ...], body: Any) -> str:
    """`("messages", 0, "tool", "tool_call_id")` -> `messages[0].tool_call_id`.

    Pydantic puts the chosen branch of a union (`tool`, `text`, `str`, `list[...]`) into the
    location. A client knows its own field names, not our branch names, so the location is walked
    along the client's own JSON and only keys and indexes found there (or a missing field, last)
    are named.
    """
    out = ""
    node = body
    for position, part in enumerate(loc):
        if isinstance(part, int) and isinstance(node, list):
            out += f"[{part}]"
            node = node[part] if part < len(node) else None
        elif isinstance(part, str) and isinstance(node, dict) and (part in node or position == len(loc) - 1):
            out += f".{part}" if out else part
            node = node.get(part)
    return out or "body"


# The error type of a number JSON does not have (NaN, Infinity), inside a free-form value of the schema;
# its context says where inside the value (`at`).
NON_FINITE_NUMBER = "non_finite_number"


# The error type of an object that spells one field two ways (`response_format`'s `json_schema` and `schema`):
# raised by the object itself, so its location ends in the object's branch of a union, which is not a field.
BOTH_SPELLINGS = "both_spellings"


def _where(problem: Any) -> tuple[int | str, ...]:
    """A problem's full location: a free-form value's problem also says where inside the value."""
    if problem["type"] == BOTH_SPELLINGS:
        return tuple(problem["loc"][:-1])
    inside = (problem.get("ctx") or {}).get("at", ()) if problem["type"] == NON_FINITE_NUMBER else ()
    return (*problem["loc"], *inside)


def from_validation_error(error: ValidationError, body: Any = None) -> CohereError:
    """The problem of a request that failed validation, naming the field as the client spelled it."""
    problems = error.errors(include_url=False)
    # A value that fits no branch of a union is reported once per branch; the deepest report is the
    # one about what the client meant (`content[0].type`, not "content is not a string").
    first = max(problems, key=lambda problem: len(_where(problem)))
    kind = first["type"]
    if kind == "json_invalid":
        return CohereError(400, f"request body is not valid JSON: {first['ctx'].get('error', 'parse error')}",
                           code="invalid_json")
    if kind == "model_type" and not first["loc"]:
        return CohereError(400, "request body must be a JSON object", code="invalid_json")
    field = field_path(_where(first), body)
    message = first["msg"]
    if kind == NON_FINITE_NUMBER:
        number = first["ctx"]["number"]
        # The parser reads 1e309 as infinity: the client may have written either.
        given = "NaN" if math.isnan(number) else f"{'-' if number < 0 else ''}Infinity (or a number beyond ±1.8e308)"
        return CohereError(400, f"{field}: {given} is not a JSON number; numbers must be finite, within ±1.8e308",
                           code="invalid_field")
    if kind == "missing":
        return CohereError(400, f"{field} is required", code="missing_field")
    if kind == "extra_forbidden":
        return CohereError(400, f"{field} is not a field of {field.rpartition('.')[0] or 'the body'}",
                           code="unknown_field")
    if kind == "union_tag_invalid":
        ctx = first["ctx"]
        tag_field = ctx["discriminator"].strip("'")
        return CohereError(
            400,
            f"{field}.{tag_field}: unknown value {ctx['tag']!r}, expected one of {ctx['expected_tags']}",
            code="invalid_field",
        )
    given = first.get("input")
    if isinstance(given, (int, float, str, bool)) and len(repr(given)) <= 80:
        message = f"{message}, got {given!r}"
    return CohereError(400, f"{field}: {message}", code="invalid_field")
