"""`POST /litellm/cohere/v2/embed`, `POST /litellm/cohere/v2/rerank`, `POST /litellm/cohere/v1/embed`
(the v1 embed LangChain's CohereEmbeddings calls) and `POST /litellm/cohere/v1/rerank`: auth -> validate
-> translate -> LiteLLM's embedding or rerank call -> translate back. One route function per endpoint."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from .. import host
from ..auth.hook import mpilot_auth
from ..cohere.embed import (
    AnyEmbedRequest,
    EmbedRequest,
    EmbedV1Request,
    parse_embed_request,
    parse_embed_v1_request,
    to_cohere_embed_response,
    to_cohere_embed_v1_response,
    to_openai_embedding_request,
)
from ..cohere.errors import CohereError
from ..cohere.rerank import (
    RerankRequest,
    RerankV1Request,
    parse_rerank_request,
    parse_rerank_v1_request,
    to_cohere_rerank_response,
    to_cohere_rerank_v1_response,
    to_litellm_rerank_request,
)
from ..cohere.wire import dumps
from .chat import error_response

EMBED_PATH = "/litellm/cohere/v2/embed"
RERANK_PATH = "/litellm/cohere/v2/rerank"
EMBED_V1_PATH = "/litellm/cohere/v1/embed"
RERANK_V1_PATH = "/litellm/cohere/v1/rerank"
RequestT = TypeVar("RequestT")

router = APIRouter()


@router.post(EMBED_PATH, tags=["Cohere v2 embed (MPilot)"])
async def cohere_v2_embed(
    request: Request,
    caller: Annotated[host.Caller | CohereError, Depends(host.caller_or_refusal)],
) -> Response:
    """Cohere's v2 embed API, served by any embedding model the proxy's router can reach."""
    return await serve(request, caller, parse_embed_request, _embedding_call, to_cohere_embed_response)


@router.post(RERANK_PATH, tags=["Cohere v2 rerank (MPilot)"])
async def cohere_v2_rerank(
    request: Request,
    caller: Annotated[host.Caller | CohereError, Depends(host.caller_or_refusal)],
) -> Response:
    """Cohere's v2 rerank API, served by any rerank model the proxy's router can reach."""
    return await serve(request, caller, parse_rerank_request, _rerank_call, to_cohere_rerank_response)


@router.post(EMBED_V1_PATH, tags=["Cohere v1 embed (MPilot)"])
async def cohere_v1_embed(
    request: Request,
    caller: Annotated[host.Caller | CohereError, Depends(host.caller_or_refusal)],
) -> Response:
    """Cohere's v1 embed API (LangChain's CohereEmbeddings and `cohere.Client` call it), served as v2's."""
    return await serve(request, caller, parse_embed_v1_request, _embedding_call, to_cohere_embed_v1_response)


@router.post(RERANK_V1_PATH, tags=["Cohere v1 rerank (MPilot)"])
async def cohere_v1_rerank(
    request: Request,
    caller: Annotated[host.Caller | CohereError, Depends(host.caller_or_refusal)],
) -> Response:
    """Cohere's v1 rerank API (`cohere.Client.rerank`): documents as strings or objects, `rank_fields`,
    `return_documents`; served as v2's."""
    return await serve(request, caller, parse_rerank_v1_request, _rerank_v1_call, to_cohere_rerank_v1_response)


async def _embedding_call(request: Request, caller: host.Caller, embed: AnyEmbedRequest) -> Called:
    try:
        return await host.embed(request, caller,
                                to_openai_embedding_request(embed, host.served_by_cohere(embed.model)))
    except CohereError as error:
        asked = getattr(embed, "output_dimension", None)
        if asked is not None and error.status == 400 and "dimensions" in error.message:
            # LiteLLM refuses OpenAI's `dimensions` for such a model, and advises its own `drop_params`.
            raise CohereError(400, f"output_dimension is not supported by model {embed.model!r}: it answers "
                                   f"vectors of its own size only; omit output_dimension (asked {asked})",
                              headers=error.headers) from None
        raise


async def _rerank_call(request: Request, caller: host.Caller, rerank: RerankRequest) -> Called:
    return await host.rerank(request, caller, to_litellm_rerank_request(rerank))


async def _rerank_v1_call(request: Request, caller: host.Caller, rerank: RerankV1Request) -> Called:
    return await host.rerank(request, caller, to_litellm_rerank_request(rerank.as_v2()))


Called = tuple[dict[str, Any], dict[str, str]]  # LiteLLM's answer and the response headers


async def serve(request: Request, caller: host.Caller | CohereError, parse: Callable[[bytes], RequestT],
                call: Callable[[Request, host.Caller, RequestT], Awaitable[Called]],
                translate: Callable[[dict[str, Any], RequestT, str], dict[str, Any]]) -> Response:
    """One call of an endpoint: the caller's refusal, or its request parsed, called and translated back,
    each failure in Cohere's shape."""
    if isinstance(caller, CohereError):
        return error_response(caller)
    try:
        parsed = parse(await request.body())
        result, headers = await call(request, caller, parsed)
    except CohereError as error:
        await mpilot_auth().release(host.reservation_of(caller))  # a call that never ran costs nothing
        return error_response(error)
    try:
        body = translate(result, parsed, host.call_id(headers))
    except CohereError as error:  # a provider's answer of the wrong shape; the call ran and was settled
        error.headers = {**headers, **error.headers}
        return error_response(error)
    return Response(content=dumps(body), media_type="application/json", headers=headers)


def _embedding_input(schema: type[AnyEmbedRequest]) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    def as_openai(body: dict[str, Any]) -> dict[str, Any] | None:
        """An embed body as LiteLLM's `/v1/embeddings` takes it, for the budget estimate (inputs counted)."""
        try:
            embed = schema.model_validate(body)
        except ValidationError:
            return None
        return {"model": embed.model, "input": embed.items()}

    return as_openai


def _rerank_input(body: dict[str, Any]) -> dict[str, Any] | None:
    try:
        rerank = RerankRequest.model_validate(body)
    except (ValidationError, CohereError):
        return None
    return to_litellm_rerank_request(rerank)


def _rerank_v1_input(body: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return to_litellm_rerank_request(RerankV1Request.model_validate(body).as_v2())
    except (ValidationError, CohereError):
        return None


VIEWS = {EMBED_PATH: host.LitellmView("/v1/embeddings", _embedding_input(EmbedRequest)),
         RERANK_PATH: host.LitellmView("/v1/rerank", _rerank_input),
         EMBED_V1_PATH: host.LitellmView("/v1/embeddings", _embedding_input(EmbedV1Request)),
         RERANK_V1_PATH: host.LitellmView("/v1/rerank", _rerank_v1_input)}
