"""Cohere's list-models and get-model answers (`GET /v1/models`, `GET /v1/models/{model}`), from what the
proxy knows of each model group. Pure: the caller hands in the groups a key may use, in config order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import CohereError

# Cohere's `CompatibleEndpoint` values (its SDK's `compatible_endpoint.py`): what `endpoint=` may name.
ENDPOINTS = ("chat", "embed", "classify", "summarize", "rerank", "rate", "generate")

# LiteLLM's model-info `mode` -> the Cohere endpoints a model of that mode answers.
_ENDPOINTS_BY_MODE = {"chat": ("chat",), "completion": ("chat",), "responses": ("chat",),
                      "embedding": ("embed",), "rerank": ("rerank",)}
# A group whose mode LiteLLM does not know (most custom deployments) is sent chat calls by the chat
# route like any other, so it is listed as a chat model.
_UNKNOWN_MODE_ENDPOINTS = ("chat",)

DEFAULT_PAGE_SIZE = 20  # Cohere's own default
MAX_PAGE_SIZE = 1000  # Cohere's own maximum


@dataclass(frozen=True)
class ModelGroup:
    """What the proxy's router knows of one model group (one `model_name` of `model_list`)."""

    name: str
    mode: str | None = None
    max_input_tokens: int | None = None
    supports_function_calling: bool = False
    supports_vision: bool = False
    supports_response_schema: bool = False

    @property
    def endpoints(self) -> tuple[str, ...]:
        if self.mode is None:
            return _UNKNOWN_MODE_ENDPOINTS
        return _ENDPOINTS_BY_MODE.get(self.mode, ())

    @property
    def features(self) -> list[str]:
        """Cohere's feature names for what LiteLLM's model info says the model supports."""
        features = []
        if self.supports_function_calling:
            features.append("tools")
            if self.supports_response_schema:  # strict tools are schema-constrained arguments
                features.append("strict_tools")
        if self.supports_response_schema:
            features.extend(("json_mode", "json_schema"))
        if self.supports_vision:
            features.append("vision")
        return features


@dataclass(frozen=True)
class ListQuery:
    endpoint: str | None
    default_only: bool
    page_size: int
    offset: int


def parse_list_query(params: Mapping[str, str]) -> ListQuery:
    """The query of `GET /v1/models`; a bad value is a 400 naming the parameter."""
    endpoint = params.get("endpoint")
    if endpoint is not None and endpoint not in ENDPOINTS:
        raise CohereError(400, f"endpoint must be one of {', '.join(ENDPOINTS)}, got {endpoint!r}",
                          code="invalid_field")
    default_only = _boolean(params.get("default_only"), "default_only")
    if default_only and endpoint is None:
        raise CohereError(400, "default_only is only valid with endpoint (e.g. endpoint=chat)", code="invalid_field")
    page_size = _whole_number(params.get("page_size"), "page_size", DEFAULT_PAGE_SIZE)
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise CohereError(400, f"page_size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}",
                          code="invalid_field")
    token = params.get("page_token")
    offset = 0
    if token is not None:
        # The token is the offset of the page's first model; only what a previous page handed out is valid.
        if not token.isdigit() or not 0 < int(token) <= 1_000_000:
            raise CohereError(400, f"page_token {token[:40]!r} is not a next_page_token this proxy handed out",
                              code="invalid_field")
        offset = int(token)
    return ListQuery(endpoint, default_only, page_size, offset)


def _boolean(value: str | None, name: str) -> bool:
    if value is None:
        return False
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise CohereError(400, f"{name} must be true or false, got {value[:40]!r}", code="invalid_field")


def _whole_number(value: str | None, name: str, default: int) -> int:
    if value is None:
        return default
    try:
        number = float(value)  # the SDK types page_size as a float and may send "20.0"
    except ValueError:
        number = float("nan")
    if not number.is_integer():
        raise CohereError(400, f"{name} must be a whole number, got {value[:40]!r}", code="invalid_field")
    return int(number)


def default_models(groups: Sequence[ModelGroup]) -> dict[str, str]:
    """Each endpoint's default model: the first group (in config order) that answers it."""
    defaults: dict[str, str] = {}
    for group in groups:
        for endpoint in group.endpoints:
            defaults.setdefault(endpoint, group.name)
    return defaults


def to_cohere_model(group: ModelGroup, defaults: Mapping[str, str]) -> dict[str, Any]:
    """One model in Cohere's `GetModelResponse` shape. No `tokenizer_url`: the proxy has no public
    tokenizer file to point at, so SDKs that tokenize offline fall back to `POST /v1/tokenize`."""
    model: dict[str, Any] = {
        "name": group.name,
        "endpoints": list(group.endpoints),
        "finetuned": False,
        "default_endpoints": [endpoint for endpoint in group.endpoints if defaults.get(endpoint) == group.name],
        "features": group.features,
    }
    if group.max_input_tokens is not None:
        model["context_length"] = group.max_input_tokens
    return model


def list_models(groups: Sequence[ModelGroup], query: ListQuery) -> dict[str, Any]:
    """One page of Cohere's `ListModelsResponse`; `next_page_token` only when there is a next page."""
    defaults = default_models(groups)
    if query.endpoint is not None:
        groups = [group for group in groups if query.endpoint in group.endpoints]
    if query.default_only and query.endpoint is not None:  # parse_list_query allows it only with an endpoint
        groups = [group for group in groups if defaults.get(query.endpoint) == group.name]
    page = groups[query.offset:query.offset + query.page_size]
    body: dict[str, Any] = {"models": [to_cohere_model(group, defaults) for group in page]}
    if query.offset + query.page_size < len(groups):
        body["next_page_token"] = str(query.offset + query.page_size)
    return body


def get_model(groups: Sequence[ModelGroup], name: str) -> dict[str, Any]:
    """One model the key may use, by name; any other is a 404 that does not say whether it exists."""
    for group in groups:
        if group.name == name:
            return to_cohere_model(group, default_models(groups))
    raise CohereError(404, f"model {name[:100]!r} is not served to this key; GET /litellm/cohere/v1/models lists the "
                           "models it may use", code="model_not_found")
