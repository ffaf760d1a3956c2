"""Cohere's `POST /v1/tokenize` and `POST /v1/detokenize`: requests validated, answers shaped. Pure: the
tokenizer itself is the caller's (see `host.model_tokenizer`)."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import from_validation_error
from .schema import decode_json_body

MAX_TEXT_CHARS = 65536  # Cohere's own limit on tokenize's text
MAX_TOKENS = 65536  # detokenize: as many tokens as the longest text could make, about


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class TokenizeRequest(_Request):
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    model: str = Field(min_length=1)


class DetokenizeRequest(_Request):
    tokens: list[Annotated[int, Field(ge=0)]] = Field(min_length=1, max_length=MAX_TOKENS)
    model: str = Field(min_length=1)


def parse_tokenize_request(body: bytes) -> TokenizeRequest:
    return _parse(TokenizeRequest, body)


def parse_detokenize_request(body: bytes) -> DetokenizeRequest:
    return _parse(DetokenizeRequest, body)


Request = TypeVar("Request", bound=_Request)


def _parse(schema: type[Request], body: bytes) -> Request:
    decoded = decode_json_body(body)
    try:
        return schema.model_validate(decoded)
    except ValidationError as error:
        raise from_validation_error(error, decoded) from None


def tokenize_response(tokens: list[int], token_strings: list[str], tokenizer: str,
                      warnings: list[str]) -> dict[str, Any]:
    """Cohere's `TokenizeResponse`; `meta.tokenizer` (an extra field the SDKs keep) names the tokenizer."""
    return {"tokens": tokens, "token_strings": token_strings, "meta": _meta(tokenizer, warnings)}


def detokenize_response(text: str, tokenizer: str, warnings: list[str]) -> dict[str, Any]:
    return {"text": text, "meta": _meta(tokenizer, warnings)}


def _meta(tokenizer: str, warnings: list[str]) -> dict[str, Any]:
    meta: dict[str, Any] = {"api_version": {"version": "1"}, "tokenizer": tokenizer}
    if warnings:
        meta["warnings"] = warnings
    return meta
