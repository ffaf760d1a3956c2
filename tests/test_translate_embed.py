"""Cohere v2 and v1 embed <-> OpenAI embeddings, and the embedding types derived from floats: expected values
computed by hand (see each comment), not by the code under test."""

from __future__ import annotations

import json
from typing import Any

import pytest

from plugin.cohere.embed import (
    embedding_of,
    parse_embed_request,
    parse_embed_v1_request,
    to_cohere_embed_response,
    to_cohere_embed_v1_response,
    to_openai_embedding_request,
)
from plugin.cohere.errors import CohereError

PNG = "data:image/png;base64,iVBORw0KGgo="


def request(**fields: Any) -> Any:
    return parse_embed_request(json.dumps({"model": "m", "input_type": "search_document", **fields}).encode())


DERIVED = [
    # peak 1.0, scale 127: 63.5 -> 64 (halves away from zero), 31.75 -> 32, 0.508 -> 1
    pytest.param("int8", [0.5, -1.0, 0.25, 0.0, 0.004], [64, -127, 32, 0, 1], id="int8"),
    pytest.param("int8", [-0.5, 1.0], [-64, 127], id="int8-negative-half"),
    # peak 0.2, scale 635: 0.1 -> 63.5 -> 64, -0.2 -> -127
    pytest.param("int8", [0.1, -0.2], [64, -127], id="int8-scaled-to-its-peak"),
    pytest.param("int8", [0.0, 0.0], [0, 0], id="int8-zero-vector"),
    pytest.param("int8", [], [], id="int8-empty"),
    # peak 1.0: 0.9 * 127 = 114.3 -> 114 (a scale of 128 would give 115)
    pytest.param("int8", [1.0, 0.9, -0.9], [127, 114, -114], id="int8-scale-127"),
    # peak 0.3: 0.1 * 127 / 0.3 = 42.33 -> 42
    pytest.param("int8", [0.3, 0.1, -0.3], [127, 42, -127], id="int8-peak-0.3"),
    pytest.param("uint8", [0.5, -1.0, 0.25, 0.0], [192, 1, 160, 128], id="uint8-is-int8-plus-128"),
    # bits 1010 0001 -> 0xA1 = 161
    pytest.param("ubinary", [0.1, -0.2, 0.3, 0.0, 0.0, 0.0, 0.0, 0.9], [161], id="ubinary"),
    # second byte: one bit, the highest, then 7 bits of padding -> 0x80 = 128
    pytest.param("ubinary", [0.1, -0.2, 0.3, 0.0, 0.0, 0.0, 0.0, 0.9, 0.5], [161, 128], id="ubinary-padded"),
    pytest.param("binary", [0.1, -0.2, 0.3, 0.0, 0.0, 0.0, 0.0, 0.9, -0.5], [33, -128], id="binary-is-minus-128"),
    pytest.param("binary", [1.0] * 8, [127], id="binary-all-set"),
    pytest.param("ubinary", [-1.0] * 8 + [1.0] * 8, [0, 255], id="ubinary-two-bytes"),
    pytest.param("ubinary", [], [], id="ubinary-empty"),
    # float32 LE: 1.0 = 00 00 80 3F, -2.0 = 00 00 00 C0; base64 of those 8 bytes
    pytest.param("base64", [1.0, -2.0], "AACAPwAAAMA=", id="base64-float32-le"),
    pytest.param("float", [0.25, -0.5], [0.25, -0.5], id="float"),
]


@pytest.mark.parametrize(("kind", "floats", "expected"), DERIVED)
def test_embedding_types_from_floats(kind: str, floats: list[float], expected: Any) -> None:
    assert embedding_of(kind, floats) == expected  # type: ignore[arg-type]


REQUESTS = [
    pytest.param({"texts": ["a", "b"]}, False, {"input": ["a", "b"]}, id="texts"),
    pytest.param({"images": [PNG]}, False, {"input": [PNG]}, id="images-as-data-uris"),
    pytest.param({"inputs": [{"content": [{"type": "text", "text": "a"}]},
                             {"content": [{"type": "image_url", "image_url": {"url": PNG}}]}]},
                 False, {"input": ["a", PNG]}, id="inputs-one-string-each"),
    pytest.param({"texts": ["a"], "output_dimension": 256}, False, {"input": ["a"], "dimensions": 256},
                 id="output_dimension-is-dimensions"),
    pytest.param({"texts": ["a"], "truncate": "end", "max_tokens": 9, "priority": 3}, False, {"input": ["a"]},
                 id="cohere-fields-not-for-other-providers"),
    pytest.param({"texts": ["a"], "truncate": "end", "max_tokens": 9}, True,
                 {"input": ["a"], "input_type": "search_document", "truncate": "END", "max_tokens": 9},
                 id="cohere-provider-gets-input_type-truncate-max_tokens"),
    pytest.param({"texts": ["a"]}, True, {"input": ["a"], "input_type": "search_document"},
                 id="cohere-provider-input_type-only"),
]


ACCEPTED = [
    *(pytest.param({"texts": ["a"], "input_type": kind}, id=f"input_type-{kind}")
      for kind in ("search_document", "search_query", "classification", "clustering", "image")),
    *(pytest.param({"texts": ["a"], "embedding_types": [kind]}, id=f"embedding_type-{kind}")
      for kind in ("float", "int8", "uint8", "binary", "ubinary", "base64")),
    *(pytest.param({"texts": ["a"], "truncate": value}, id=f"truncate-{value}") for value in ("NONE", "START", "END")),
    pytest.param({"inputs": [{"content": [{"type": "text", "text": "a"}]}]}, id="one-input"),
    pytest.param({"texts": ["a"], "output_dimension": 1, "max_tokens": 1, "priority": 0}, id="lowest-bounds"),
    pytest.param({"texts": ["a"], "priority": 999}, id="priority-999"),
]


@pytest.mark.parametrize("fields", ACCEPTED)
def test_every_documented_value_is_accepted(fields: dict[str, Any]) -> None:
    parsed = request(**fields)
    assert parsed.model_dump(exclude_none=True) == {"model": "m", "input_type": "search_document", **fields}


def test_cohere_fields_stay_home_unless_told() -> None:
    body = to_openai_embedding_request(request(texts=["a"], truncate="END"))
    assert body == {"model": "m", "input": ["a"], "encoding_format": "float"}


@pytest.mark.parametrize(("fields", "cohere_provider", "expected"), REQUESTS)
def test_openai_request(fields: dict[str, Any], cohere_provider: bool, expected: dict[str, Any]) -> None:
    body = to_openai_embedding_request(request(**fields), cohere_provider=cohere_provider)
    assert body == {"model": "m", "encoding_format": "float", **expected}


BAD = [
    pytest.param({"texts": ["a"], "images": [PNG]}, "not texts and images", id="two-kinds"),
    pytest.param({}, "one of texts, images or inputs is required", id="none"),
    pytest.param({"inputs": [{"content": [{"type": "text", "text": "a"}, {"type": "image_url",
                                                                         "image_url": {"url": PNG}}]}]},
                 "inputs[0].content: Value error, has 2 parts; this proxy embeds one text or one image per input",
                 id="input-of-two-parts"),
    pytest.param({"texts": ["a"], "embedding_types": []}, "embedding_types", id="no-embedding-types"),
    pytest.param({"inputs": []}, "inputs", id="no-inputs"),
    pytest.param({"texts": ["a"], "output_dimension": 0}, "output_dimension", id="output_dimension-0"),
    pytest.param({"texts": ["a"], "max_tokens": 0}, "max_tokens", id="max_tokens-0"),
    pytest.param({"texts": ["a"], "priority": -1}, "priority", id="priority-negative"),
    pytest.param({"texts": ["a"] * 96}, None, id="96-texts-fit"),
    pytest.param({"texts": ["a"] * 97}, "texts: List should have at most 96 items", id="97-texts"),
    pytest.param({"inputs": [{"content": [{"type": "text", "text": "a"}]}] * 97}, "inputs", id="97-inputs"),
    pytest.param({"inputs": [{"content": []}]}, "inputs[0].content", id="empty-content"),
    pytest.param({"texts": ["a"], "truncate": "middle"}, "truncate", id="truncate"),
    pytest.param({"texts": ["a"], "embedding_types": ["bit"]}, "embedding_types[0]", id="embedding-type"),
    pytest.param({"texts": ["a"], "priority": 1000}, "priority", id="priority-1000"),
    pytest.param({"images": ["file:///etc/passwd"]}, "images[0]: Value error, must be a base64 data URI",
                 id="image-not-data-uri"),
]


@pytest.mark.parametrize(("fields", "fragment"), BAD)
def test_bad_requests_name_the_field(fields: dict[str, Any], fragment: str | None) -> None:
    if fragment is None:
        request(**fields)
        return
    with pytest.raises(CohereError) as raised:
        request(**fields)
    assert raised.value.status == 400 and fragment in raised.value.message


def test_what_is_missing_and_what_is_too_much_have_their_codes() -> None:
    with pytest.raises(CohereError) as missing:
        request()
    assert missing.value.code == "missing_field"
    with pytest.raises(CohereError) as both:
        request(texts=["a"], inputs=[{"content": [{"type": "text", "text": "a"}]}])
    assert both.value.code == "invalid_field" and both.value.message == "send one of texts, images or inputs, not " \
        "texts and inputs"


def openai_answer(*vectors: Any, tokens: int = 7) -> dict[str, Any]:
    return {"object": "list", "model": "m", "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]}


def test_cohere_response_in_the_asked_order_with_texts_and_billed_tokens() -> None:
    asked = request(texts=["x", "y"], embedding_types=["ubinary", "float", "ubinary"])
    answer = openai_answer([0.5, -0.5], [-0.5, 0.5])
    answer["data"].reverse()  # providers may list rows in any order: the index says which input
    assert to_cohere_embed_response(answer, asked, "call-1") == {
        "id": "call-1",
        "embeddings": {"ubinary": [[128], [64]], "float": [[0.5, -0.5], [-0.5, 0.5]]},
        "texts": ["x", "y"],
        "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 7}},
        "response_type": "embeddings_by_type",
    }


def test_floats_by_default_and_no_texts_for_images() -> None:
    out = to_cohere_embed_response(openai_answer([1.0]), request(images=[PNG]), "call-2")
    assert out["embeddings"] == {"float": [[1.0]]} and "texts" not in out


def test_a_provider_answering_base64_is_read_as_float32() -> None:
    out = to_cohere_embed_response(openai_answer("AACAPwAAAMA="), request(texts=["x"]), "call-3")
    assert out["embeddings"]["float"] == [[1.0, -2.0]]


@pytest.mark.parametrize("answer", [openai_answer([1.0]), openai_answer([1.0], [1.0], [1.0])], ids=["fewer", "more"])
def test_a_provider_answering_another_count_is_an_error(answer: dict[str, Any]) -> None:
    with pytest.raises(CohereError) as raised:
        to_cohere_embed_response(answer, request(texts=["x", "y"]), "call-4")
    assert raised.value.status == 500 and "for 2 inputs" in raised.value.message


def test_an_embedding_that_is_not_a_list_is_an_error() -> None:
    with pytest.raises(CohereError) as raised:
        to_cohere_embed_response(openai_answer({"oops": 1}), request(texts=["x"]), "call-5")
    assert (raised.value.status, raised.value.message) == \
        (500, "the provider answered an embedding that is not a list of numbers")


def test_no_usage_bills_no_tokens() -> None:
    answer = openai_answer([1.0])
    del answer["usage"]
    assert to_cohere_embed_response(answer, request(texts=["x"]), "c")["meta"]["billed_units"] == {"input_tokens": 0}


# --- v1 ---------------------------------------------------------------------------------------------------


def v1_request(**fields: Any) -> Any:
    return parse_embed_v1_request(json.dumps({"model": "m", **fields}).encode())


def test_v1_without_embedding_types_answers_floats() -> None:
    answer = openai_answer([0.5, -0.5], [-0.5, 0.5], tokens=3)
    answer["data"].reverse()
    assert to_cohere_embed_v1_response(answer, v1_request(texts=["x", "y"]), "call-6") == {
        "id": "call-6",
        "response_type": "embeddings_floats",
        "embeddings": [[0.5, -0.5], [-0.5, 0.5]],
        "texts": ["x", "y"],
        "meta": {"api_version": {"version": "1"}, "billed_units": {"input_tokens": 3}},
    }


def test_v1_with_embedding_types_answers_by_type_and_texts_even_for_images() -> None:
    asked = v1_request(texts=["x"], embedding_types=["int8", "float"])
    assert to_cohere_embed_v1_response(openai_answer([0.5, -1.0]), asked, "call-7") == {
        "id": "call-7",
        "response_type": "embeddings_by_type",
        "embeddings": {"int8": [[64, -127]], "float": [[0.5, -1.0]]},  # 63.5 -> 64, -127
        "texts": ["x"],
        "meta": {"api_version": {"version": "1"}, "billed_units": {"input_tokens": 7}},
    }
    images = to_cohere_embed_v1_response(openai_answer([1.0]), v1_request(images=[PNG]), "call-8")
    assert images["texts"] == [] and images["embeddings"] == [[1.0]]


def test_v1_input_type_is_optional_and_v2_only_fields_are_ignored() -> None:
    asked = v1_request(texts=["a"], output_dimension=8, max_tokens=4, inputs=[], truncate="end")
    assert to_openai_embedding_request(asked, cohere_provider=True) == {
        "model": "m", "input": ["a"], "encoding_format": "float", "truncate": "END"}
    asked = v1_request(texts=["a"], input_type="search_query")
    assert to_openai_embedding_request(asked, cohere_provider=True)["input_type"] == "search_query"


BAD_V1 = [
    pytest.param({}, "one of texts or images is required", id="none"),
    pytest.param({"texts": ["a"], "images": [PNG]}, "send one of texts or images, not texts and images", id="two"),
    pytest.param({"texts": ["a"], "input_type": "query"}, "input_type", id="unknown-input-type"),
    pytest.param({"texts": ["a"] * 97}, "texts: List should have at most 96 items", id="97-texts"),
    pytest.param({"texts": ["a"], "embedding_types": ["bit"]}, "embedding_types[0]", id="embedding-type"),
]


@pytest.mark.parametrize(("fields", "fragment"), BAD_V1)
def test_bad_v1_requests_name_the_field(fields: dict[str, Any], fragment: str) -> None:
    with pytest.raises(CohereError) as raised:
        v1_request(**fields)
    assert raised.value.status == 400 and fragment in raised.value.message
