"""Cohere v2 rerank <-> LiteLLM's rerank call: the request as Cohere's SDK sends it, the body LiteLLM's
`arerank` takes (Cohere's own shape: LiteLLM's rerank API follows Cohere's), and Cohere's answer."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import Field, model_validator

from .errors import CohereError
from .schema import JsonObject, RequestSchema, parse_body

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


# --- v1 rerank: documents as strings or objects, ranked by their `text` or `rank_fields`, echoed back ------

class RerankV1Request(RequestSchema):
    model: str = Field(min_length=1)
    query: str = Field(min_length=1)
    documents: list[str | JsonObject] = Field(min_length=1)
    top_n: int | None = Field(default=None, ge=1)
    rank_fields: list[str] | None = Field(default=None, min_length=1)
    return_documents: bool | None = None
    max_chunks_per_doc: int | None = Field(default=None, ge=1)  # Cohere's own chunking; whole documents here
    max_tokens_per_doc: int | None = Field(default=None, ge=1)

    def texts(self) -> list[str]:
        """Each document as the one string a reranker reads: a string as it is; an object's `text`, or its
        `rank_fields` as `field: value` lines, in that order (as Cohere ranks structured documents)."""
        texts = []
        for position, document in enumerate(self.documents):
            if isinstance(document, str):
                texts.append(document)
            elif self.rank_fields:
                missing = [field for field in self.rank_fields if field not in document]
                if missing:
                    raise CohereError(400, f"documents[{position}] has no field {missing[0]!r} of rank_fields")
                texts.append("\n".join(f"{field}: {_as_text(document[field])}" for field in self.rank_fields))
            elif isinstance(document.get("text"), str):
                texts.append(document["text"])
            else:
                raise CohereError(400, f"documents[{position}].text must be a string (or name the fields to rank "
                                       "by in rank_fields)")
        return texts

    def as_v2(self) -> RerankRequest:
        return RerankRequest.model_construct(model=self.model, query=self.query, documents=self.texts(),
                                             top_n=self.top_n, max_tokens_per_doc=self.max_tokens_per_doc,
                                             priority=None)


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def parse_rerank_v1_request(body: bytes) -> RerankV1Request:
    """A raw `/v1/rerank` body; a bad one raises `CohereError` (400) naming the field."""
    request = parse_body(RerankV1Request, body)
    request.texts()  # an object without its text is the caller's mistake, before anything is called
    return request


def to_cohere_rerank_v1_response(litellm: Mapping[str, Any], request: RerankV1Request,
                                 response_id: str) -> dict[str, Any]:
    """v2's answer, in v1's shape: `document` with each result when asked (a string as `{"text": ...}`, an
    object with all its fields), `api_version` 1."""
    answer = to_cohere_rerank_response(litellm, request.as_v2(), response_id)
    if request.return_documents:
        for result in answer["results"]:
            document = request.documents[result["index"]]
            result["document"] = {"text": document} if isinstance(document, str) else dict(document)
    answer["meta"]["api_version"] = {"version": "1"}
    return answer
