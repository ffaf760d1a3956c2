"""Cohere's model list and tokenize shapes from what the router knows, table-driven, in-process."""

from __future__ import annotations

import json
from typing import Any

import pytest

from plugin.cohere.errors import CohereError
from plugin.cohere.models import ListQuery, ModelGroup, get_model, list_models, parse_list_query
from plugin.cohere.tokenize import (
    detokenize_response,
    parse_detokenize_request,
    parse_tokenize_request,
    tokenize_response,
)

GROUPS = [
    ModelGroup("small"),
    ModelGroup("embedder", mode="embedding"),
    ModelGroup("big", mode="chat", max_input_tokens=128000, supports_function_calling=True,
               supports_vision=True, supports_response_schema=True),
    ModelGroup("ranker", mode="rerank"),
    ModelGroup("painter", mode="image_generation"),
]


def query(**params: str) -> ListQuery:
    return parse_list_query(params)


@pytest.mark.parametrize(("group", "endpoints", "features"), [
    pytest.param(ModelGroup("m"), ["chat"], [], id="mode-unknown-is-chat"),
    pytest.param(ModelGroup("m", mode="chat"), ["chat"], [], id="chat"),
    pytest.param(ModelGroup("m", mode="completion"), ["chat"], [], id="completion"),
    pytest.param(ModelGroup("m", mode="responses"), ["chat"], [], id="responses"),
    pytest.param(ModelGroup("m", mode="embedding"), ["embed"], [], id="embedding"),
    pytest.param(ModelGroup("m", mode="rerank"), ["rerank"], [], id="rerank"),
    pytest.param(ModelGroup("m", mode="image_generation"), [], [], id="no-cohere-endpoint"),
    pytest.param(ModelGroup("m", supports_function_calling=True), ["chat"], ["tools"], id="tools"),
    pytest.param(ModelGroup("m", supports_response_schema=True), ["chat"], ["json_mode", "json_schema"], id="json"),
    pytest.param(ModelGroup("m", supports_function_calling=True, supports_response_schema=True), ["chat"],
                 ["tools", "strict_tools", "json_mode", "json_schema"], id="strict-tools"),
    pytest.param(ModelGroup("m", supports_vision=True), ["chat"], ["vision"], id="vision"),
])
def test_endpoints_and_features_from_litellms_model_info(group: ModelGroup, endpoints: list[str],
                                                        features: list[str]) -> None:
    assert (group.endpoints, group.features) == (tuple(endpoints), features)


def test_a_model_in_cohere_shape() -> None:
    assert get_model(GROUPS, "big") == {"name": "big", "endpoints": ["chat"], "finetuned": False,
                                        "default_endpoints": [], "features": ["tools", "strict_tools", "json_mode",
                                                                              "json_schema", "vision"],
                                        "context_length": 128000}
    assert get_model(GROUPS, "small")["default_endpoints"] == ["chat"]  # first chat model: the default
    assert "context_length" not in get_model(GROUPS, "small")


def test_an_unknown_model_is_a_404_that_points_at_the_list() -> None:
    with pytest.raises(CohereError) as refused:
        get_model(GROUPS, "missing")
    assert refused.value.status == 404 and refused.value.code == "model_not_found"
    assert "GET /litellm/cohere/v1/models" in refused.value.message


@pytest.mark.parametrize(("params", "names", "next_token"), [
    pytest.param({}, ["small", "embedder", "big", "ranker", "painter"], None, id="all"),
    pytest.param({"endpoint": "chat"}, ["small", "big"], None, id="chat"),
    pytest.param({"endpoint": "rerank"}, ["ranker"], None, id="rerank"),
    pytest.param({"endpoint": "classify"}, [], None, id="none-classify"),
    pytest.param({"endpoint": "chat", "default_only": "true"}, ["small"], None, id="default-chat"),
    pytest.param({"endpoint": "embed", "default_only": "TRUE"}, ["embedder"], None, id="default-embed"),
    pytest.param({"endpoint": "chat", "default_only": "false"}, ["small", "big"], None, id="default-only-false"),
    pytest.param({"page_size": "2"}, ["small", "embedder"], "2", id="first-page"),
    pytest.param({"page_size": "2", "page_token": "2"}, ["big", "ranker"], "4", id="second-page"),
    pytest.param({"page_size": "2", "page_token": "4"}, ["painter"], None, id="last-page"),
    pytest.param({"page_size": "5"}, ["small", "embedder", "big", "ranker", "painter"], None, id="exactly-one-page"),
    pytest.param({"page_size": "2.0"}, ["small", "embedder"], "2", id="page-size-as-the-sdk-sends-a-float"),
    pytest.param({"page_token": "9"}, [], None, id="past-the-end"),
])
def test_list_pages_and_filters(params: dict[str, str], names: list[str], next_token: str | None) -> None:
    listed = list_models(GROUPS, query(**params))
    assert [model["name"] for model in listed["models"]] == names
    assert listed.get("next_page_token") == next_token


@pytest.mark.parametrize(("params", "message"), [
    ({"page_size": "0"}, "page_size must be between 1 and 1000, got 0"),
    ({"page_size": "1001"}, "page_size must be between 1 and 1000, got 1001"),
    ({"page_size": "1.5"}, "page_size must be a whole number, got '1.5'"),
    ({"page_size": "lots"}, "page_size must be a whole number, got 'lots'"),
    ({"page_token": "abc"}, "page_token 'abc' is not a next_page_token this proxy handed out"),
    ({"page_token": "0"}, "page_token '0' is not a next_page_token this proxy handed out"),
    ({"page_token": "1000001"}, "page_token '1000001' is not a next_page_token this proxy handed out"),
    ({"endpoint": "Chat"}, "endpoint must be one of chat, embed, classify, summarize, rerank, rate, generate, "
                           "got 'Chat'"),
    ({"endpoint": "chat", "default_only": "yes"}, "default_only must be true or false, got 'yes'"),
    ({"default_only": "true"}, "default_only is only valid with endpoint (e.g. endpoint=chat)"),
])
def test_bad_list_parameters(params: dict[str, str], message: str) -> None:
    with pytest.raises(CohereError) as refused:
        query(**params)
    assert (refused.value.status, refused.value.message, refused.value.code) == (400, message, "invalid_field")


def test_list_defaults_and_bounds_are_cohere_s() -> None:
    assert query() == ListQuery(endpoint=None, default_only=False, page_size=20, offset=0)
    assert query(page_size="1000", page_token="1000000") == ListQuery(None, False, 1000, 1000000)
    assert query(page_size="1", page_token="1") == ListQuery(None, False, 1, 1)
    assert query(endpoint="chat", default_only="1").default_only is True
    assert query(endpoint="chat", default_only="0").default_only is False
    assert query(endpoint="chat", default_only="False").default_only is False


@pytest.mark.parametrize(("body", "message"), [
    ({"text": "x" * 65537, "model": "m"}, "text: String should have at most 65536 characters"),
    ({"text": "", "model": "m"}, "text: String should have at least 1 character, got ''"),
    ({"model": "m"}, "text is required"),
    ({"text": "hi", "model": ""}, "model: String should have at least 1 character, got ''"),
])
def test_bad_tokenize_requests(body: dict[str, Any], message: str) -> None:
    with pytest.raises(CohereError) as refused:
        parse_tokenize_request(json.dumps(body).encode())
    assert (refused.value.status, refused.value.message) == (400, message)


@pytest.mark.parametrize(("body", "message"), [
    ({"tokens": [1, -1], "model": "m"}, "tokens[1]: Input should be greater than or equal to 0, got -1"),
    ({"tokens": [True], "model": "m"}, "tokens[0]: Input should be a valid integer, got True"),
    ({"tokens": [0] * 65537, "model": "m"}, "tokens: List should have at most 65536 items after validation, not "
                                            "65537"),
    ({"tokens": [], "model": "m"}, "tokens: List should have at least 1 item after validation, not 0"),
    ({"tokens": [1], "model": ""}, "model: String should have at least 1 character, got ''"),
    ({"tokens": [1]}, "model is required"),
])
def test_bad_detokenize_requests(body: dict[str, Any], message: str) -> None:
    with pytest.raises(CohereError) as refused:
        parse_detokenize_request(json.dumps(body).encode())
    assert (refused.value.status, refused.value.message) == (400, message)


def test_tokenize_answers_name_their_tokenizer() -> None:
    assert parse_tokenize_request(b'{"text": "x" , "model": "m", "newer_field": 1}').text == "x"
    assert tokenize_response([1], ["x"], "tiktoken/cl100k_base", []) == {
        "tokens": [1], "token_strings": ["x"], "meta": {"api_version": {"version": "1"},
                                                        "tokenizer": "tiktoken/cl100k_base"}}
    assert tokenize_response([1], ["x"], "t", ["approximate"])["meta"]["warnings"] == ["approximate"]
    assert detokenize_response("hi", "huggingface/anthropic", []) == {
        "text": "hi", "meta": {"api_version": {"version": "1"}, "tokenizer": "huggingface/anthropic"}}
    assert parse_detokenize_request(b'{"tokens": [0, 7], "model": "m"}').tokens == [0, 7]
