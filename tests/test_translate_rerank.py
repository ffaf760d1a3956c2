"""Cohere v2 rerank <-> LiteLLM's rerank call, table-driven."""

from __future__ import annotations

import json
from typing import Any

import pytest

from plugin.cohere.errors import CohereError
from plugin.cohere.rerank import parse_rerank_request, to_cohere_rerank_response, to_litellm_rerank_request


def request(**fields: Any) -> Any:
    return parse_rerank_request(json.dumps({"model": "m", "query": "q", "documents": ["a", "b", "c"],
                                            **fields}).encode())


def test_litellm_request_asks_for_no_documents_back() -> None:
    assert to_litellm_rerank_request(request()) == {"model": "m", "query": "q", "documents": ["a", "b", "c"],
                                                    "return_documents": False}
    assert to_litellm_rerank_request(request(top_n=2, max_tokens_per_doc=50, priority=1)) == {
        "model": "m", "query": "q", "documents": ["a", "b", "c"], "return_documents": False, "top_n": 2,
        "max_tokens_per_doc": 50}


@pytest.mark.parametrize("fields", [
    pytest.param({"documents": ["only"]}, id="one-document"),
    pytest.param({"top_n": 1, "max_tokens_per_doc": 1, "priority": 0}, id="lowest-bounds"),
    pytest.param({"priority": 999}, id="priority-999"),
    pytest.param({"model": "m", "query": "q"}, id="one-character-model-and-query"),
])
def test_documented_bounds_are_accepted(fields: dict[str, Any]) -> None:
    assert request(**fields).model_dump(exclude_none=True) == {"model": "m", "query": "q",
                                                               "documents": ["a", "b", "c"], **fields}


V1_ONLY = [
    ("return_documents", "return_documents is not part of Cohere's v2 rerank API: v2 answers indexes and scores "
                         "only; look documents up by `index`"),
    ("rank_fields", "rank_fields is not part of Cohere's v2 rerank API: v2 documents are strings; send each "
                    "document as one string"),
    ("max_chunks_per_doc", "max_chunks_per_doc is not part of Cohere's v2 rerank API: v2 bounds documents with "
                           "`max_tokens_per_doc`"),
]


@pytest.mark.parametrize(("field", "message"), V1_ONLY)
def test_v1_fields_are_refused_saying_what_v2_does_instead(field: str, message: str) -> None:
    with pytest.raises(CohereError) as raised:
        request(**{field: None})
    assert (raised.value.status, raised.value.code, raised.value.message) == (400, "invalid_field", message)


@pytest.mark.parametrize(("fields", "fragment"), [
    pytest.param({"return_documents": False}, "return_documents is not part of Cohere's v2", id="return_documents"),
    pytest.param({"rank_fields": ["title"]}, "rank_fields", id="rank_fields"),
    pytest.param({"max_chunks_per_doc": 3}, "max_chunks_per_doc", id="max_chunks_per_doc"),
    pytest.param({"documents": [{"text": "a"}]}, "documents[0]", id="document-object"),
    pytest.param({"documents": []}, "documents", id="no-documents"),
    pytest.param({"query": ""}, "query", id="empty-query"),
    pytest.param({"top_n": 0}, "top_n", id="top_n-0"),
    pytest.param({"max_tokens_per_doc": 0}, "max_tokens_per_doc", id="max_tokens_per_doc-0"),
    pytest.param({"priority": 1000}, "priority", id="priority-1000"),
    pytest.param({"priority": -1}, "priority", id="priority-negative"),
])
def test_bad_requests_name_the_field(fields: dict[str, Any], fragment: str) -> None:
    with pytest.raises(CohereError) as raised:
        request(**fields)
    assert raised.value.status == 400 and fragment in raised.value.message


def litellm_answer(*scored: tuple[int, float], search_units: int | None = 1) -> dict[str, Any]:
    meta: dict[str, Any] = {"billed_units": {"search_units": search_units}} if search_units is not None else {}
    return {"id": "r", "results": [{"index": i, "relevance_score": s, "document": {"text": "x"}} for i, s in scored],
            "meta": meta}


def test_results_best_first_cut_to_top_n_without_documents() -> None:
    out = to_cohere_rerank_response(litellm_answer((0, 0.1), (2, 0.9), (1, 0.5)), request(top_n=2), "call-1")
    assert out == {"id": "call-1",
                   "results": [{"index": 2, "relevance_score": 0.9}, {"index": 1, "relevance_score": 0.5}],
                   "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}}}


def test_no_search_units_reported_none_invented() -> None:
    out = to_cohere_rerank_response(litellm_answer((0, 0.3), search_units=None), request(), "call-2")
    assert out["meta"]["billed_units"] == {}


@pytest.mark.parametrize("index", [3, -1, None, "0"])
def test_a_ranked_document_that_was_not_sent_is_an_error(index: Any) -> None:
    with pytest.raises(CohereError) as raised:
        to_cohere_rerank_response({"results": [{"index": index, "relevance_score": 0.5}]}, request(), "call-3")
    assert raised.value.status == 500


def test_a_result_without_a_score_scores_zero() -> None:
    out = to_cohere_rerank_response({"results": [{"index": 1}]}, request(), "call-4")
    assert out["results"] == [{"index": 1, "relevance_score": 0.0}]
