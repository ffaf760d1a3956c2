"""Cohere's model list and tokenizer endpoints: `GET /litellm/cohere/v1/models[/{model}]`,
`POST /litellm/cohere/v1/tokenize` and `/v1/detokenize`. None of them reaches a model: they answer from
the proxy's router (the models the caller's key may use) and LiteLLM's tokenizers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from .. import host
from ..cohere.errors import CohereError
from ..cohere.models import get_model, list_models, parse_list_query
from ..cohere.tokenize import (
    DetokenizeRequest,
    TokenizeRequest,
    detokenize_response,
    parse_detokenize_request,
    parse_tokenize_request,
    tokenize_response,
)
from ..cohere.wire import dumps
from .chat import error_response

PREFIX = "/litellm/cohere"
TOKENIZER_HEADER = "x-mpilot-tokenizer"
TAGS: list[str | Any] = ["Cohere models and tokenizers (MPilot)"]

router = APIRouter()
Asked = TypeVar("Asked", TokenizeRequest, DetokenizeRequest)
CallerOrRefusal = Annotated[host.Caller | CohereError, Depends(host.caller_or_refusal)]


@router.get(f"{PREFIX}/v1/models", tags=TAGS)
async def cohere_list_models(request: Request, caller: CallerOrRefusal) -> Response:
    """The models the caller's key may use, in the order of the proxy's `model_list`."""
    if isinstance(caller, CohereError):
        return error_response(caller)
    try:
        query = parse_list_query(request.query_params)
    except CohereError as error:
        return error_response(error)
    return _json(list_models(await host.model_groups(caller), query))


# `name`, not `model`: LiteLLM's auth would check a path's `model` against the key and answer 403,
# which tells a key that a model it may not use exists. Here any model it may not use is a 404.
@router.get(PREFIX + "/v1/models/{name:path}", tags=TAGS)
async def cohere_get_model(name: str, caller: CallerOrRefusal) -> Response:
    if isinstance(caller, CohereError):
        return error_response(caller)
    try:
        return _json(get_model(await host.model_groups(caller), name))
    except CohereError as error:
        return error_response(error)


@router.post(f"{PREFIX}/v1/tokenize", tags=TAGS)
async def cohere_tokenize(request: Request, caller: CallerOrRefusal) -> Response:
    """Tokens of `text` by the model's tokenizer as LiteLLM knows it; no provider call, no spend."""

    def answer(asked: TokenizeRequest, tokenizer: host.ModelTokenizer) -> dict[str, Any]:
        return tokenize_response(*tokenizer.encode(asked.text), tokenizer.name, tokenizer.warnings)

    return await _tokenizer_answer(request, caller, parse_tokenize_request, answer)


@router.post(f"{PREFIX}/v1/detokenize", tags=TAGS)
async def cohere_detokenize(request: Request, caller: CallerOrRefusal) -> Response:
    def answer(asked: DetokenizeRequest, tokenizer: host.ModelTokenizer) -> dict[str, Any]:
        return detokenize_response(tokenizer.decode(asked.tokens), tokenizer.name, tokenizer.warnings)

    return await _tokenizer_answer(request, caller, parse_detokenize_request, answer)


async def _tokenizer_answer(request: Request, caller: host.Caller | CohereError, parse: Callable[[bytes], Asked],
                            answer: Callable[[Asked, host.ModelTokenizer], dict[str, Any]]) -> Response:
    """The request parsed, the key's access to its model checked (404 for one it may not use), the
    answer made by the model's tokenizer, which the `x-mpilot-tokenizer` header names."""
    if isinstance(caller, CohereError):
        return error_response(caller)
    try:
        asked = parse(await request.body())
        get_model(await host.model_groups(caller), asked.model)
        tokenizer = await host.model_tokenizer(asked.model)
        body = answer(asked, tokenizer)
    except CohereError as error:
        return error_response(error)
    return _json(body, {TOKENIZER_HEADER: tokenizer.name})


def _json(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(content=dumps(body), media_type="application/json", headers=headers)
