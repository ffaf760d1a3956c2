"""Cohere's models and tokenizer endpoints, the 404 for every other path under /litellm/cohere/, and
`response_format.schema`, through the real proxy with the plugin (master key, virtual keys, MPilot JWTs)."""

from __future__ import annotations

import hashlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cohere
import httpx
import pytest

from .fake_upstream import FakeUpstream
from .harness import MASTER_KEY, SOURCES, ProxyProcess, virtual_key
from .jwt_issuer import JwksServer, claims
from .test_route_errors import assert_cohere_error

BASE = "/litellm/cohere"
MODELS = f"{BASE}/v1/models"
USER = [{"role": "user", "content": "hi"}]


def get(proxy: ProxyProcess, path: str, token: str = MASTER_KEY, **params: Any) -> httpx.Response:
    return httpx.get(proxy.url + path, params=params, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def post(proxy: ProxyProcess, path: str, body: Any, token: str = MASTER_KEY) -> httpx.Response:
    return httpx.post(proxy.url + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def names(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [model["name"] for model in response.json()["models"]]


def sdk(proxy: ProxyProcess, token: str = MASTER_KEY) -> cohere.ClientV2:
    return cohere.ClientV2(api_key=token, base_url=proxy.url + BASE, timeout=30, max_retries=0)


# --- GET /v1/models ---------------------------------------------------------------------------------------


def test_models_lists_every_model_in_config_order_in_cohere_shape(proxy: ProxyProcess) -> None:
    listed = get(proxy, MODELS, page_size=1000).json()
    assert "next_page_token" not in listed
    by_name = {model["name"]: model for model in listed["models"]}
    assert [model["name"] for model in listed["models"]][:3] == ["demo", "fake", "fake-b"]  # config order
    assert by_name["demo"] == {"name": "demo", "endpoints": ["chat"], "finetuned": False,
                               "default_endpoints": ["chat"], "features": []}
    assert by_name["fake"]["default_endpoints"] == []
    assert by_name["fake-embed"]["endpoints"] == ["embed"] and by_name["fake-embed"]["default_endpoints"] == ["embed"]
    tools = by_name["fake-tools"]
    assert tools["context_length"] == 32000
    assert tools["features"] == ["tools", "strict_tools", "json_mode", "json_schema", "vision"]


def test_the_cohere_sdk_reads_the_list_and_a_model(proxy: ProxyProcess) -> None:
    listed = sdk(proxy).models.list(page_size=1000)
    assert "fake-tools" in [model.name for model in listed.models]
    model = sdk(proxy).models.get("fake-tools")
    assert (model.name, model.endpoints, model.context_length, model.finetuned) == ("fake-tools", ["chat"], 32000,
                                                                                  False)
    assert "vision" in (model.features or [])


@pytest.mark.parametrize(("endpoint", "expected"), [("chat", "fake-tools"), ("embed", "fake-embed")])
def test_endpoint_filters_the_list(proxy: ProxyProcess, endpoint: str, expected: str) -> None:
    listed = get(proxy, MODELS, endpoint=endpoint, page_size=1000).json()["models"]
    assert expected in [model["name"] for model in listed]
    assert all(endpoint in model["endpoints"] for model in listed)


def test_default_only_gives_the_first_chat_model_the_key_may_use(proxy: ProxyProcess) -> None:
    assert names(get(proxy, MODELS, endpoint="chat", default_only="true")) == ["demo"]
    assert names(get(proxy, MODELS, endpoint="embed", default_only="true")) == ["fake-embed"]
    # A key allowed only `fake` gets `fake`, which LangChain's ChatCohere then uses.
    assert names(get(proxy, MODELS, virtual_key("cfg", "models"), endpoint="chat", default_only="true")) == ["fake"]


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize(("name", "expected"), [("models", ["fake"]), ("group", ["fake-b"]),
                                                ("wildcard", ["fake-b", "fake-timeout", "fake-timeout-then-fake",
                                                              "fake-dear", "fake-cohere", "fake-embed",
                                                              "fake-embed-ada", "fake-embed-timeout",
                                                              "fake-embed-broken",
                                                              "fake-cohere-embed", "fake-rerank", "fake-broken",
                                                              "fake-tools", "fake-claude"])])
def test_a_key_sees_only_the_models_it_may_use(proxy: ProxyProcess, source: str, name: str,
                                               expected: list[str]) -> None:
    assert names(get(proxy, MODELS, virtual_key(source, name), page_size=1000)) == expected


def test_a_jwt_for_a_key_sees_that_keys_models(proxy: ProxyProcess, jwks: JwksServer) -> None:
    token = jwks.keys[0].sign(claims(vk=hashlib.sha256(virtual_key("cfg", "jwt").encode()).hexdigest()))
    assert names(get(proxy, MODELS, token)) == ["fake"]


def test_pages_follow_next_page_token_to_the_whole_list(proxy: ProxyProcess) -> None:
    whole = names(get(proxy, MODELS, page_size=1000))
    paged: list[str] = []
    token: str | None = None
    while True:
        page = get(proxy, MODELS, page_size=3, **({"page_token": token} if token else {})).json()
        assert len(page["models"]) <= 3
        paged.extend(model["name"] for model in page["models"])
        token = page.get("next_page_token")
        if token is None:
            break
    assert paged == whole and len(whole) > 3


@pytest.mark.parametrize(("params", "fragment"), [
    ({"page_size": "0"}, "page_size must be between 1 and 1000"),
    ({"page_size": "1001"}, "page_size"),
    ({"page_size": "ten"}, "page_size must be a whole number"),
    ({"page_token": "not-a-token"}, "page_token"),
    ({"page_token": "-3"}, "page_token"),
    ({"endpoint": "teleport"}, "endpoint must be one of chat, embed"),
    ({"endpoint": "chat", "default_only": "maybe"}, "default_only must be true or false"),
    ({"default_only": "true"}, "default_only is only valid with endpoint"),
])
def test_bad_list_parameters_are_a_400_naming_them(proxy: ProxyProcess, params: dict[str, str],
                                                   fragment: str) -> None:
    assert_cohere_error(get(proxy, MODELS, **params), 400, fragment)


def test_a_model_the_key_may_not_use_is_a_404_like_an_unknown_one(proxy: ProxyProcess) -> None:
    key = virtual_key("cfg", "models")
    assert get(proxy, f"{MODELS}/fake", key).json()["name"] == "fake"
    forbidden = assert_cohere_error(get(proxy, f"{MODELS}/fake-b", key), 404, "'fake-b'",
                                    "GET /litellm/cohere/v1/models")
    unknown = assert_cohere_error(get(proxy, f"{MODELS}/no-such-model", key), 404, "'no-such-model'")
    assert forbidden["message"].replace("fake-b", "X") == unknown["message"].replace("no-such-model", "X")
    assert_cohere_error(get(proxy, f"{MODELS}/no-such-model"), 404)  # the master key too


def test_model_list_needs_a_valid_token(proxy: ProxyProcess) -> None:
    assert_cohere_error(get(proxy, MODELS, "sk-bf-nobody-0123456789abcdef0123456789abcdef"), 401)


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", MODELS, None), ("GET", f"{MODELS}/fake", None),
    ("POST", f"{BASE}/v1/tokenize", {"text": "hi", "model": "fake"}),
    ("POST", f"{BASE}/v1/detokenize", {"tokens": [6151], "model": "fake"})])
def test_a_key_out_of_budget_is_a_402_on_model_lists_and_tokenizing(
        proxy: ProxyProcess, fake: FakeUpstream, source: str, method: str, path: str, body: Any) -> None:
    """As on chat: a request of a spent key gets the budget's 402, though these routes cost nothing."""
    key = virtual_key(source, "broke")
    response = get(proxy, path, key) if method == "GET" else post(proxy, path, body, key)
    assert_cohere_error(response, 402, "exceeded its budget")
    assert fake.requests == []


@pytest.mark.parametrize("source", SOURCES)
def test_model_lists_and_tokenizing_count_against_the_keys_requests_per_minute(
        proxy: ProxyProcess, fake: FakeUpstream, source: str) -> None:
    """Each is a request of the key's rpm, like a chat: the fourth of three a minute is a 429, whichever
    route it takes, chat included; and these routes reserve nothing, so nothing is left held."""
    key = virtual_key(source, "listing-rpm")
    assert get(proxy, MODELS, key).status_code == 200
    assert post(proxy, f"{BASE}/v1/tokenize", {"text": "hi", "model": "fake"}, key).status_code == 200
    assert post(proxy, f"{BASE}/v1/detokenize", {"tokens": [6151], "model": "fake"}, key).status_code == 200
    for path, body in ((f"{MODELS}/fake", None), (f"{BASE}/v1/tokenize", {"text": "hi", "model": "fake"}),
                       (f"{BASE}/v2/chat", {"model": "fake", "messages": USER})):
        response = get(proxy, path, key) if body is None else post(proxy, path, body, key)
        assert_cohere_error(response, 429, "3 requests per minute")
        assert int(response.headers["retry-after"]) > 0
    assert fake.requests == []


@pytest.mark.parametrize("source", SOURCES)
def test_twenty_tokenize_requests_at_once_get_only_the_rpm_limit(proxy: ProxyProcess, source: str) -> None:
    key = virtual_key(source, "tokenize-burst")  # 5 a minute
    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(lambda n: post(proxy, f"{BASE}/v1/tokenize", {"text": f"hi {n}", "model": "fake"},
                                                 key), range(20)))
    assert Counter(r.status_code for r in responses) == {200: 5, 429: 15}


# --- POST /v1/tokenize, /v1/detokenize -------------------------------------------------------------------

TEXT = "Hello wörld, tokenize me 🙂"


def test_tokenize_with_the_default_tokenizer_says_so(proxy: ProxyProcess, fake: FakeUpstream) -> None:
    response = post(proxy, f"{BASE}/v1/tokenize", {"text": TEXT, "model": "fake"})
    assert response.status_code == 200, response.text
    assert response.headers["x-mpilot-tokenizer"] == "tiktoken/cl100k_base"
    body = response.json()
    assert len(body["tokens"]) == len(body["token_strings"]) > 3
    assert "".join(body["token_strings"][:-1]) == TEXT[:-2]  # the emoji's bytes span one token here
    assert body["meta"]["tokenizer"] == "tiktoken/cl100k_base"
    assert "no tokenizer of this model's own" in body["meta"]["warnings"][0]
    back = post(proxy, f"{BASE}/v1/detokenize", {"tokens": body["tokens"], "model": "fake"})
    assert back.status_code == 200 and back.json()["text"] == TEXT
    assert back.headers["x-mpilot-tokenizer"] == "tiktoken/cl100k_base"
    assert fake.requests == []  # no provider call


def test_tokenize_uses_the_models_own_tokenizer_where_litellm_ships_it(proxy: ProxyProcess) -> None:
    response = post(proxy, f"{BASE}/v1/tokenize", {"text": TEXT, "model": "fake-claude"})
    assert response.status_code == 200, response.text
    # LiteLLM 1.110 names the kind of its HuggingFace tokenizers; earlier releases do not.
    assert response.headers["x-mpilot-tokenizer"] in ("huggingface/anthropic", "huggingface")
    body = response.json()
    assert "".join(body["token_strings"]) == TEXT
    assert "warnings" not in body["meta"]
    default = post(proxy, f"{BASE}/v1/tokenize", {"text": TEXT, "model": "fake"}).json()
    assert body["tokens"] != default["tokens"]
    assert post(proxy, f"{BASE}/v1/detokenize", {"tokens": body["tokens"], "model": "fake-claude"}
                ).json()["text"] == TEXT


def test_the_cohere_sdk_reads_tokenize_and_detokenize(proxy: ProxyProcess) -> None:
    co = cohere.Client(api_key=MASTER_KEY, base_url=proxy.url + BASE, timeout=30, max_retries=0)
    tokens = co.tokenize(text=TEXT, model="fake", offline=False)
    assert tokens.tokens and tokens.meta is not None
    assert co.detokenize(tokens=tokens.tokens, model="fake", offline=False).text == TEXT


@pytest.mark.parametrize(("path", "body", "status", "fragment"), [
    ("tokenize", {"text": "x" * 65537, "model": "fake"}, 400, "text"),
    ("tokenize", {"text": "", "model": "fake"}, 400, "text"),
    ("tokenize", {"text": "hi"}, 400, "model is required"),
    ("tokenize", {"text": 3, "model": "fake"}, 400, "text"),
    ("tokenize", {"text": "hi", "model": "no-such-model"}, 404, "'no-such-model'"),
    ("detokenize", {"tokens": [1, -2], "model": "fake"}, 400, "tokens[1]"),
    ("detokenize", {"tokens": [1, 10**9], "model": "fake"}, 400, "tokens[1]: 1000000000 is not a token"),
    ("detokenize", {"tokens": [], "model": "fake"}, 400, "tokens"),
    ("detokenize", {"tokens": ["a"], "model": "fake"}, 400, "tokens[0]"),
    ("detokenize", {"tokens": [1], "model": "no-such-model"}, 404, "'no-such-model'"),
])
def test_bad_tokenize_requests_are_cohere_errors(proxy: ProxyProcess, path: str, body: dict[str, Any], status: int,
                                                 fragment: str) -> None:
    assert_cohere_error(post(proxy, f"{BASE}/v1/{path}", body), status, fragment)


def test_tokenize_text_at_cohere_s_limit_is_fine(proxy: ProxyProcess) -> None:
    assert post(proxy, f"{BASE}/v1/tokenize", {"text": "x" * 65536, "model": "fake"}).status_code == 200


@pytest.mark.parametrize("source", SOURCES)
def test_tokenize_checks_the_keys_models(proxy: ProxyProcess, source: str) -> None:
    key = virtual_key(source, "models")
    assert post(proxy, f"{BASE}/v1/tokenize", {"text": "hi", "model": "fake"}, key).status_code == 200
    assert_cohere_error(post(proxy, f"{BASE}/v1/tokenize", {"text": "hi", "model": "fake-b"}, key), 403,
                        "may not use model 'fake-b'")
    assert_cohere_error(post(proxy, f"{BASE}/v1/detokenize", {"tokens": [1], "model": "fake-b"}, key), 403)


# --- everything else under /litellm/cohere/ ------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("GET", f"{BASE}/v1/foo"), ("POST", f"{BASE}/v1/summarize"),
                                              ("GET", f"{BASE}/v2/chatter"), ("DELETE", f"{BASE}/v1/modelz"),
                                              ("PUT", f"{BASE}/")])
def test_any_other_path_is_a_cohere_404_naming_it(proxy: ProxyProcess, method: str, path: str) -> None:
    response = httpx.request(method, proxy.url + path, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30)
    error = assert_cohere_error(response, 404, f"no Cohere endpoint {method} {path} here; served: ")
    assert error["code"] == "endpoint_not_found"
    for served in ("POST /litellm/cohere/v2/chat", "GET /litellm/cohere/v1/models", "POST /litellm/cohere/v1/tokenize"):
        assert served in error["message"]


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("GET", f"{BASE}/v2/chat", "POST"), ("DELETE", f"{BASE}/v1/models", "GET"), ("HEAD", f"{BASE}/v1/models", "GET"),
    ("PUT", f"{BASE}/v1/models/fake", "GET"),  # a path template matches its values
    ("GET", f"{BASE}/v2/embed", "POST"), ("OPTIONS", f"{BASE}/v1/tokenize", "POST")])
def test_a_served_path_with_another_method_is_a_cohere_405(proxy: ProxyProcess, method: str, path: str,
                                                            allowed: str) -> None:
    response = httpx.request(method, proxy.url + path, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30)
    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    if method != "HEAD":  # a HEAD answer has no body
        error = assert_cohere_error(response, 405, f"{path} takes {allowed}, not {method}")
        assert error["code"] == "method_not_allowed"


def test_real_routes_still_answer_beside_the_404(proxy: ProxyProcess, fake: FakeUpstream) -> None:
    assert post(proxy, f"{BASE}/v2/chat", {"model": "fake", "messages": USER}).status_code == 200
    assert get(proxy, MODELS).status_code == 200
    assert get(proxy, "/mpilot/key/info", virtual_key("cfg", "open")).status_code == 200
    assert get(proxy, "/v1/models").status_code == 200  # LiteLLM's own, outside the prefix


def test_the_chat_routes_unknown_model_points_at_the_cohere_model_list(proxy: ProxyProcess) -> None:
    error = assert_cohere_error(post(proxy, f"{BASE}/v2/chat", {"model": "no-such-model", "messages": USER}), 404)
    assert "GET /litellm/cohere/v1/models lists the models your key can use" in error["message"]


# --- response_format: Cohere's older `schema` spelling ---------------------------------------------------

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.mark.parametrize("spelling", ["json_schema", "schema"])
def test_both_spellings_of_the_json_schema_reach_the_model_as_openai_json_schema(
        proxy: ProxyProcess, fake: FakeUpstream, spelling: str) -> None:
    response = post(proxy, f"{BASE}/v2/chat", {"model": "fake", "messages": USER,
                                               "response_format": {"type": "json_object", spelling: SCHEMA}})
    assert response.status_code == 200, response.text
    assert fake.requests[-1].body["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "response", "schema": SCHEMA}}


@pytest.mark.parametrize(("response_format", "fragment"), [
    ({"type": "json_object", "json_schema": SCHEMA, "schema": SCHEMA}, "give json_schema or its older spelling"),
    ({"type": "json_object", "jsonschema": SCHEMA}, "response_format.jsonschema is not a field of response_format"),
    ({"type": "text", "strict": True}, "response_format.strict is not a field"),
])
def test_a_response_format_key_that_is_not_cohere_s_is_a_400(proxy: ProxyProcess, fake: FakeUpstream,
                                                            response_format: dict[str, Any], fragment: str) -> None:
    response = post(proxy, f"{BASE}/v2/chat", {"model": "fake", "messages": USER, "response_format": response_format})
    assert_cohere_error(response, 400, fragment)
    assert fake.requests == []
