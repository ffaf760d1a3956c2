"""Cohere v2 rerank <-> LiteLLM's rerank call: the request as Cohere's SDK sends it, the body LiteLLM's
`arerank` takes (Cohere's own shape: LiteLLM's rerank API follows Cohere's), and Cohere's answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, model_validator

from .errors import CohereError
from .schema import RequestSchema, parse_body

# Fields of Cohere's v1 rerank that v2 dropped: a client sending them expects what v2 no longer does
# (documents echoed back, structured documents ranked by fields), so they are refused, not ignored.
_V1_ONLY = {
    "return_documents": "v2 answers indexes and scores only; look documents up by `index`",
    "rank_fields": "v2 documents are strings; send each document as one string",
    "max_chunks_per_doc": "v2 bounds documents with `max_tokens_per_doc`",
}


class RerankRequest(RequestSchema):
    model: str = Field(min_length=1)
    query: str = Field(min_length=1)
    documents: list[str] = Field(min_length=1)
    top_n: int | None = Field(default=None, ge=1)
    max_tokens_per_doc: int | None = Field(default=None, ge=1)
    priority: int | None = Field(default=None, ge=0, le=999)

    @model_validator(mode="before")
    @classmethod
    def _no_v1_fields(cls, body: Any) -> Any:
        if isinstance(body, dict):
            for field, instead in _V1_ONLY.items():
                if field in body:
                    raise CohereError(400, f"{field} is not part of Cohere's v2 rerank API: {instead}",
                                      code="invalid_field")
        return body


def parse_rerank_request(body: bytes) -> RerankRequest:
    """A raw `/v2/rerank` body; a bad one raises `CohereError` (400) naming the field."""
    return parse_body(RerankRequest, body)


def to_litellm_rerank_request(request: RerankRequest) -> dict[str, Any]:
    """The body of LiteLLM's rerank call. `return_documents: false`: Cohere's v2 answer has no documents
    (LiteLLM's Cohere provider asks for them back by default)."""
    body: dict[str, Any] = {"model": request.model, "query": request.query, "documents": list(request.documents),
                            "return_documents": False}
    for field in ("top_n", "max_tokens_per_doc"):
        if getattr(request, field) is not None:
            body[field] = getattr(request, field)
    return body


def to_cohere_rerank_response(litellm: Mapping[str, Any], request: RerankRequest, response_id: str) -> dict[str, Any]:
    """LiteLLM's rerank response as Cohere's `V2RerankResponse`: results best first, each an index into
    the request's documents and its relevance score."""
    results = []
    for result in litellm.get("results") or []:
        index = result.get("index")
        if not isinstance(index, int) or not 0 <= index < len(request.documents):
            raise CohereError(500, f"the provider of model {request.model!r} ranked a document that was not "
                                   f"sent (index {index!r} of {len(request.documents)})")
        results.append({"index": index, "relevance_score": float(result.get("relevance_score") or 0.0)})
    results.sort(key=lambda result: -result["relevance_score"])
    if request.top_n is not None:
        results = results[:request.top_n]
    # The provider's count of search units, which LiteLLM prices; none when the provider reports none.
    billed = (litellm.get("meta") or {}).get("billed_units") or {}
    search_units = billed.get("search_units")
    return {
        "id": response_id,
        "results": results,
        "meta": {"api_version": {"version": "2"},
                 "billed_units": {"search_units": int(search_units)} if search_units is not None else {}},
    }
