"""`/litellm/cohere/v2/embed`, `/v2/rerank` and `/v1/embed` through the real proxy: the cohere SDK and raw HTTP, what
reached the provider, statuses, limits and spend."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import time
from typing import Any

import cohere
import cohere.core
import cohere.errors
import httpx
import jwt
import pytest

from plugin.limits.ledger import to_nanos

from .fake_upstream import EMBEDDING_DIMENSIONS, FakeUpstream, Reply, embedding_for
from .harness import HS_SECRET, MASTER_KEY, ProxyProcess, virtual_key
from .jwt_issuer import claims
from .test_limits_under_concurrency import settled_spend
from .test_route_errors import assert_cohere_error

EMBED = "/litellm/cohere/v2/embed"
RERANK = "/litellm/cohere/v2/rerank"
EMBED_V1 = "/litellm/cohere/v1/embed"
TEXTS = ["The quick brown fox", "jumps"]  # 4 + 1 words: the fake bills 5 tokens
PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJ"
       "RU5ErkJggg==")  # one pixel
DOCUMENTS = ["Blue whales are the largest animals", "The sky is blue", "Carpets are soft"]


def post(http: httpx.Client, path: str, body: Any, token: str | None = None) -> httpx.Response:
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return http.post(path, content=content, headers=headers)


def embed_body(**fields: Any) -> dict[str, Any]:
    return {"model": "fake-embed", "input_type": "search_document", "texts": TEXTS, **fields}


def cost_nanos(response: httpx.Response) -> int:
    return to_nanos(float(response.headers["x-litellm-response-cost"]))


# --- embed ------------------------------------------------------------------------------------------------


def test_sdk_embeds_texts_as_floats(co: cohere.ClientV2, fake: FakeUpstream) -> None:
    answer = co.embed(model="fake-embed", texts=TEXTS, input_type="search_document", embedding_types=["float"])
    assert answer.embeddings.float_ == [embedding_for(text) for text in TEXTS]
    assert answer.embeddings.int8 is None and answer.embeddings.binary is None
    assert answer.texts == TEXTS
    assert answer.meta.billed_units.input_tokens == 5
    assert answer.id
    # An OpenAI-compatible provider gets OpenAI's embeddings request: no Cohere-only fields.
    assert fake.last == {"model": "text-embedding-3-fake", "input": TEXTS, "encoding_format": "float"}


def test_every_embedding_type_is_derived_from_the_floats(http: httpx.Client, fake: FakeUpstream) -> None:
    kinds = ["float", "int8", "uint8", "binary", "ubinary", "base64"]
    response = post(http, EMBED, embed_body(texts=["alpha"], embedding_types=kinds))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"id", "embeddings", "texts", "meta", "response_type"}
    assert list(body["embeddings"]) == kinds
    floats = embedding_for("alpha")
    got = {kind: vectors[0] for kind, vectors in body["embeddings"].items()}
    assert got["float"] == floats
    peak = max(abs(value) for value in floats)
    assert max(abs(code) for code in got["int8"]) == 127
    assert all(abs(code - value * 127 / peak) <= 0.5 for code, value in zip(got["int8"], floats, strict=True))
    assert got["uint8"] == [code + 128 for code in got["int8"]]
    bits = "".join("1" if value > 0 else "0" for value in floats)
    assert got["ubinary"] == [int(bits[i:i + 8], 2) for i in range(0, EMBEDDING_DIMENSIONS, 8)]
    assert got["binary"] == [byte - 128 for byte in got["ubinary"]]
    assert struct.unpack(f"<{EMBEDDING_DIMENSIONS}f", base64.b64decode(got["base64"])) \
        == pytest.approx(floats, abs=1e-7)
    assert fake.last["encoding_format"] == "float"  # the provider is asked for floats only


def test_output_dimension_a_model_cannot_honour_is_a_400_in_cohere_words(http: httpx.Client,
                                                                         fake: FakeUpstream) -> None:
    """LiteLLM refuses OpenAI's `dimensions` for a model that answers one size (an OpenAI-format model
    before text-embedding-3) and advises its own `drop_params`; Cohere's clients sent `output_dimension`."""
    model = "fake-embed-ada"
    response = post(http, EMBED, embed_body(model=model, output_dimension=256))
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert "output_dimension" in message and model in message and "omit output_dimension" in message, message
    assert "drop_params" not in message and "litellm" not in message.lower()
    assert fake.requests == []


def test_output_dimension_is_openai_dimensions(co: cohere.ClientV2, fake: FakeUpstream) -> None:
    answer = co.embed(model="fake-embed", texts=["alpha"], input_type="clustering", output_dimension=8,
                      embedding_types=["float", "ubinary"])
    assert fake.last["dimensions"] == 8
    assert len(answer.embeddings.float_[0]) == 8 and len(answer.embeddings.ubinary[0]) == 1


def test_images_and_inputs_are_embedded_one_string_each(http: httpx.Client, fake: FakeUpstream) -> None:
    response = post(http, EMBED, {"model": "fake-embed", "input_type": "image", "images": [PNG]})
    assert response.status_code == 200, response.text
    assert fake.last["input"] == [PNG]
    assert "texts" not in response.json()
    inputs = [{"content": [{"type": "text", "text": "a caption"}]},
              {"content": [{"type": "image_url", "image_url": {"url": PNG}}]}]
    response = post(http, EMBED, {"model": "fake-embed", "input_type": "search_document", "inputs": inputs})
    assert response.status_code == 200, response.text
    assert fake.last["input"] == ["a caption", PNG]
    assert response.json()["embeddings"]["float"] == [embedding_for("a caption"), embedding_for(PNG)]


def test_a_cohere_model_gets_input_type_truncate_and_max_tokens(co: cohere.ClientV2, fake: FakeUpstream) -> None:
    answer = co.embed(model="fake-cohere-embed", texts=TEXTS, input_type="search_query", truncate="END",
                      max_tokens=64, embedding_types=["int8", "float"])
    sent = fake.last
    assert (sent["texts"], sent["input_type"], sent["truncate"], sent["max_tokens"]) \
        == (TEXTS, "search_query", "END", 64)
    assert sent["embedding_types"] == ["float"]
    assert answer.embeddings.float_ == [embedding_for(text) for text in TEXTS]
    assert answer.meta.billed_units.input_tokens == 5


def test_embed_spend_is_the_price_times_the_tokens(http: httpx.Client, fake: FakeUpstream) -> None:
    response = post(http, EMBED, embed_body())
    assert response.status_code == 200, response.text
    assert cost_nanos(response) == 5 * 100  # 5 tokens at $0.10 per million: 100 nano-dollars each
    assert response.headers["x-litellm-call-id"] == response.json()["id"]


def test_the_router_falls_back_from_a_broken_embedder(co: cohere.ClientV2, http: httpx.Client,
                                                      fake: FakeUpstream) -> None:
    response = post(http, EMBED, embed_body(model="fake-embed-broken"))  # nothing listens at its address
    assert response.status_code == 200, response.text
    assert response.headers["x-litellm-attempted-fallbacks"] == "1"
    assert response.headers["x-litellm-model-group"] == "fake-embed"
    assert fake.last["model"] == "text-embedding-3-fake"
    answer = co.embed(model="fake-embed-broken", texts=TEXTS, input_type="search_query")
    assert answer.embeddings.float_ == [embedding_for(text) for text in TEXTS]


def test_a_dripping_embedder_is_cut_at_its_timeout(http: httpx.Client, fake: FakeUpstream) -> None:
    """No read waits more than 20 ms, but the whole answer would take seconds: the model allows a try 1.5 s."""
    fake.script(Reply(fault="drip", chunk_delay=0.02))
    started = time.monotonic()
    response = post(http, EMBED, embed_body(model="fake-embed-timeout"))
    assert_cohere_error(response, 504, "1.5s")
    assert time.monotonic() - started < 5, "the call was not cut at its timeout"
    assert post(http, EMBED, embed_body(model="fake-embed-timeout")).status_code == 200  # the next one is served


BAD_EMBED = [
    pytest.param(embed_body(texts=None), "one of texts, images or inputs is required", id="no-input"),
    pytest.param(embed_body(texts=[]), "texts", id="empty-texts"),
    pytest.param(embed_body(texts=["x"] * 97), "texts: List should have at most 96 items", id="97-texts"),
    pytest.param(embed_body(images=[PNG]), "not texts and images", id="texts-and-images"),
    pytest.param(embed_body(input_type=None), "input_type", id="no-input-type"),
    pytest.param(embed_body(input_type="query"), "input_type", id="unknown-input-type"),
    pytest.param(embed_body(embedding_types=["float", "int4"]), "embedding_types[1]", id="unknown-embedding-type"),
    pytest.param(embed_body(embedding_types=[]), "embedding_types", id="no-embedding-types"),
    pytest.param(embed_body(truncate="MIDDLE"), "truncate", id="bad-truncate"),
    pytest.param(embed_body(output_dimension=0), "output_dimension", id="output-dimension-0"),
    pytest.param(embed_body(max_tokens=0), "max_tokens", id="max-tokens-0"),
    pytest.param(embed_body(texts=None, images=["https://example.com/cat.png"]), "images[0]", id="image-not-data-uri"),
    pytest.param(embed_body(texts=None, inputs=[{"content": [{"type": "text", "text": "a"},
                                                             {"type": "text", "text": "b"}]}]),
                 "inputs[0].content", id="input-of-two-parts"),
    pytest.param(embed_body(texts=None, inputs=[{"content": [{"type": "video", "url": "x"}]}]),
                 "inputs[0].content[0].type", id="unknown-part"),
    pytest.param(b'{"model": "fake-embed", "texts": [', "JSON", id="malformed-json"),
]


@pytest.mark.parametrize(("body", "fragment"), BAD_EMBED)
def test_bad_embed_input_is_a_400_naming_the_field(http: httpx.Client, fake: FakeUpstream, body: Any,
                                                   fragment: str) -> None:
    if isinstance(body, dict):
        body = {key: value for key, value in body.items() if value is not None}
    assert_cohere_error(post(http, EMBED, body), 400, fragment)
    assert fake.requests == []


def test_unknown_embed_model_is_404(http: httpx.Client, co_no_retry: cohere.ClientV2) -> None:
    error = assert_cohere_error(post(http, EMBED, embed_body(model="no-such-embedder")), 404, "no-such-embedder")
    assert error["code"] == "model_not_found"
    with pytest.raises(cohere.errors.NotFoundError):
        co_no_retry.embed(model="no-such-embedder", texts=TEXTS, input_type="search_query")


@pytest.mark.parametrize("status", [429, 500, 503])
def test_embed_provider_errors_keep_their_status(http: httpx.Client, fake: FakeUpstream, status: int) -> None:
    # LiteLLM's OpenAI client retries a failed embedding call itself (its own /v1/embeddings too): every try fails.
    fake.script(*[Reply(status=status, error_message=f"embedder said {status}")] * 3)
    error = assert_cohere_error(post(http, EMBED, embed_body()), status, f"embedder said {status}")
    assert "fallback" not in error["message"].lower()  # the proxy's fallback settings are the operator's business


# --- embed v1 (LangChain's CohereEmbeddings, cohere.Client) ----------------------------------------------


def test_v1_embed_without_types_answers_embeddings_floats(http: httpx.Client, fake: FakeUpstream) -> None:
    response = post(http, EMBED_V1, {"model": "fake-embed", "texts": TEXTS})  # no input_type: optional in v1
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {"id": response.headers["x-litellm-call-id"], "response_type": "embeddings_floats",
                    "embeddings": [embedding_for(text) for text in TEXTS], "texts": TEXTS,
                    "meta": {"api_version": {"version": "1"}, "billed_units": {"input_tokens": 5}}}
    assert fake.last == {"model": "text-embedding-3-fake", "input": TEXTS, "encoding_format": "float"}
    assert cost_nanos(response) == 5 * 100


def test_v1_embed_with_types_answers_embeddings_by_type(http: httpx.Client, fake: FakeUpstream) -> None:
    response = post(http, EMBED_V1, {"model": "fake-embed", "texts": ["alpha"], "input_type": "search_query",
                                     "embedding_types": ["ubinary", "float"]})
    assert response.status_code == 200, response.text
    body = response.json()
    floats = embedding_for("alpha")
    bits = "".join("1" if value > 0 else "0" for value in floats)
    assert body["response_type"] == "embeddings_by_type"
    assert body["embeddings"] == {"ubinary": [[int(bits[i:i + 8], 2) for i in range(0, EMBEDDING_DIMENSIONS, 8)]],
                                  "float": [floats]}
    assert body["texts"] == ["alpha"] and body["meta"]["api_version"] == {"version": "1"}
    assert fake.last["input"] == ["alpha"]


def test_v1_embed_gives_a_cohere_model_its_input_type_and_truncate(http: httpx.Client, fake: FakeUpstream) -> None:
    response = post(http, EMBED_V1, {"model": "fake-cohere-embed", "texts": TEXTS, "input_type": "classification",
                                     "truncate": "START"})
    assert response.status_code == 200, response.text
    assert (fake.last["texts"], fake.last["input_type"], fake.last["truncate"]) == (TEXTS, "classification", "START")
    assert response.json()["embeddings"] == [embedding_for(text) for text in TEXTS]


def test_the_v1_sdk_client_embeds(proxy: ProxyProcess, fake: FakeUpstream) -> None:
    """`cohere.Client` (the SDK's v1 client, which LangChain's CohereEmbeddings uses) reads both shapes."""
    client = cohere.Client(api_key=MASTER_KEY, base_url=f"{proxy.url}/litellm/cohere", timeout=30)
    floats = client.embed(model="fake-embed", texts=TEXTS, input_type="search_document")
    assert floats.response_type == "embeddings_floats"
    assert floats.embeddings == [embedding_for(text) for text in TEXTS] and floats.texts == TEXTS
    assert floats.meta.billed_units.input_tokens == 5
    by_type = client.embed(model="fake-embed", texts=["alpha"], embedding_types=["float", "int8"])
    assert by_type.response_type == "embeddings_by_type"
    assert by_type.embeddings.float_ == [embedding_for("alpha")]
    assert max(abs(code) for code in by_type.embeddings.int8[0]) == 127
    assert [body["input"] for body in (seen.body for seen in fake.requests)] == [TEXTS, ["alpha"]]


@pytest.mark.parametrize(("body", "fragment"), [
    pytest.param({"model": "fake-embed"}, "one of texts or images is required", id="no-input"),
    pytest.param({"model": "fake-embed", "texts": TEXTS, "input_type": "query"}, "input_type", id="bad-input-type"),
    pytest.param({"texts": TEXTS}, "model is required", id="no-model"),
])
def test_bad_v1_embed_input_is_a_400_naming_the_field(http: httpx.Client, fake: FakeUpstream, body: Any,
                                                      fragment: str) -> None:
    assert_cohere_error(post(http, EMBED_V1, body), 400, fragment)
    assert fake.requests == []


def test_v1_embed_is_no_longer_the_404s(http: httpx.Client, fake: FakeUpstream) -> None:
    assert post(http, EMBED_V1, {"model": "fake-embed", "texts": ["a"]}).status_code == 200
    assert_cohere_error(http.get(EMBED_V1), 405, "/litellm/cohere/v1/embed takes POST, not GET")  # served, by POST
    error = assert_cohere_error(http.get("/litellm/cohere/v1/embedz"), 404, "no Cohere endpoint GET")
    assert "POST /litellm/cohere/v1/embed" in error["message"].split("served: ")[1]


@pytest.mark.parametrize("source", ["cfg", "store"])
def test_v1_embed_keeps_a_keys_models_and_budget(proxy: ProxyProcess, http: httpx.Client, fake: FakeUpstream,
                                                 source: str) -> None:
    forbidden = virtual_key(source, "models")  # models [fake]
    assert_cohere_error(post(http, EMBED_V1, {"model": "fake-embed", "texts": TEXTS}, forbidden), 403,
                        "may not use model 'fake-embed'")
    assert fake.requests == []
    token = virtual_key(source, "embed-v1-budget")  # $0.0000005: five tokens of fake-embed
    first = post(http, EMBED_V1, {"model": "fake-embed", "texts": ["alpha beta gamma"]}, token)
    assert first.status_code == 200, first.text
    assert spent_nanos(proxy, token, 300) == 300
    # 3 more tokens would pass the budget: refused before anything is sent (the estimate reads v1's texts).
    assert_cohere_error(post(http, EMBED_V1, {"model": "fake-embed", "texts": ["alpha beta gamma"]}, token), 402,
                        "budget")
    assert len(fake.requests) == 1
    assert spent_nanos(proxy, token) == 300


# --- rerank -----------------------------------------------------------------------------------------------


def test_sdk_reranks(co: cohere.ClientV2, fake: FakeUpstream) -> None:
    answer = co.rerank(model="fake-rerank", query="blue whales", documents=DOCUMENTS, top_n=2)
    assert [(result.index, result.relevance_score) for result in answer.results] == [(0, 1.0), (1, 0.5)]
    assert answer.meta.billed_units.search_units == 1
    assert answer.id
    assert fake.last == {"model": "rerank-v3.5", "query": "blue whales", "documents": DOCUMENTS, "top_n": 2,
                         "return_documents": False}


def test_rerank_shape_spend_and_max_tokens_per_doc(http: httpx.Client, fake: FakeUpstream) -> None:
    response = post(http, RERANK, {"model": "fake-rerank", "query": "soft carpets", "documents": DOCUMENTS,
                                   "max_tokens_per_doc": 100})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"id", "results", "meta"}
    assert body["results"] == [{"index": 2, "relevance_score": 1.0}, {"index": 0, "relevance_score": 0.0},
                               {"index": 1, "relevance_score": 0.0}]
    assert body["meta"] == {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}}
    assert fake.last["max_tokens_per_doc"] == 100
    assert cost_nanos(response) == 2_000_000  # one search unit at $2 per thousand


BAD_RERANK = [
    pytest.param({"query": "q", "documents": ["a"]}, "model is required", id="no-model"),
    pytest.param({"model": "fake-rerank", "documents": ["a"]}, "query is required", id="no-query"),
    pytest.param({"model": "fake-rerank", "query": "q"}, "documents is required", id="no-documents"),
    pytest.param({"model": "fake-rerank", "query": "q", "documents": []}, "documents", id="empty-documents"),
    pytest.param({"model": "fake-rerank", "query": "q", "documents": [{"text": "a"}]}, "documents[0]",
                 id="document-object"),
    pytest.param({"model": "fake-rerank", "query": "q", "documents": ["a"], "top_n": 0}, "top_n", id="top-n-0"),
    pytest.param({"model": "fake-rerank", "query": "q", "documents": ["a"], "return_documents": True},
                 "return_documents is not part of Cohere's v2 rerank API", id="v1-return-documents"),
    pytest.param({"model": "fake-rerank", "query": "q", "documents": ["a"], "rank_fields": ["text"]},
                 "rank_fields", id="v1-rank-fields"),
]


@pytest.mark.parametrize(("body", "fragment"), BAD_RERANK)
def test_bad_rerank_input_is_a_400_naming_the_field(http: httpx.Client, fake: FakeUpstream, body: Any,
                                                    fragment: str) -> None:
    assert_cohere_error(post(http, RERANK, body), 400, fragment)
    assert fake.requests == []


def test_unknown_rerank_model_is_404(http: httpx.Client) -> None:
    error = assert_cohere_error(post(http, RERANK, {"model": "no-such-ranker", "query": "q", "documents": ["a"]}),
                                404, "no-such-ranker")
    assert error["code"] == "model_not_found"


def test_rerank_provider_error_keeps_its_status(http: httpx.Client, fake: FakeUpstream,
                                                co_no_retry: cohere.ClientV2) -> None:
    fake.script(Reply(status=429, error_message="ranker is busy"))
    assert_cohere_error(post(http, RERANK, {"model": "fake-rerank", "query": "q", "documents": ["a"]}), 429,
                        "ranker is busy")
    fake.script(Reply(status=500, error_message="ranker broke"))
    with pytest.raises(cohere.errors.InternalServerError):
        co_no_retry.rerank(model="fake-rerank", query="q", documents=["a"])


# --- who may call: models, rate, budget -------------------------------------------------------------------


def spent_nanos(proxy: ProxyProcess, token: str, at_least: int = 0) -> int:
    """The key's spend in nano-dollars, once it has reached `at_least` (settled) or after 10 s."""
    return to_nanos(settled_spend(proxy.url, token, at_least / 1e9))


@pytest.mark.parametrize("source", ["cfg", "store"])
def test_a_key_may_use_only_its_models_and_rate(proxy: ProxyProcess, http: httpx.Client, fake: FakeUpstream,
                                                source: str) -> None:
    token = virtual_key(source, "embed-models")  # models [fake-embed], 2 requests a minute
    rerank = {"model": "fake-rerank", "query": "q", "documents": ["a"]}
    assert_cohere_error(post(http, RERANK, rerank, token), 403, "may not use model 'fake-rerank'")
    assert_cohere_error(post(http, EMBED, embed_body(model="fake-cohere-embed"), token), 403, "fake-cohere-embed")
    assert fake.requests == []
    assert post(http, EMBED, embed_body(), token).status_code == 200
    client = cohere.ClientV2(api_key=token, base_url=f"{proxy.url}/litellm/cohere", max_retries=0)
    client.embed(model="fake-embed", texts=TEXTS, input_type="search_query")
    refused = post(http, EMBED, embed_body(), token)
    assert_cohere_error(refused, 429, "2 requests per minute")
    assert int(refused.headers["retry-after"]) > 0
    assert token not in refused.text
    assert len(fake.requests) == 2


def test_a_virtual_key_jwt_acts_as_its_key(proxy: ProxyProcess, http: httpx.Client, fake: FakeUpstream) -> None:
    key = hashlib.sha256(virtual_key("cfg", "models").encode()).hexdigest()  # models: [fake]
    token = jwt.encode(claims(vk=key, ttl=300), HS_SECRET, algorithm="HS256")
    assert_cohere_error(post(http, EMBED, embed_body(), token), 403, "may not use model 'fake-embed'")
    assert_cohere_error(post(http, RERANK, {"model": "fake-rerank", "query": "q", "documents": ["a"]}, token), 403,
                        "may not use model 'fake-rerank'")
    assert fake.requests == []


@pytest.mark.parametrize("source", ["cfg", "store"])
def test_a_budgeted_key_cannot_overspend_through_embed(proxy: ProxyProcess, http: httpx.Client, fake: FakeUpstream,
                                                       source: str) -> None:
    token = virtual_key(source, "embed-budget")  # $0.0000005: five tokens of fake-embed
    first = post(http, EMBED, embed_body(texts=["alpha beta gamma"]), token)
    assert first.status_code == 200, first.text
    assert cost_nanos(first) == 300
    assert spent_nanos(proxy, token, 300) == 300  # exactly: 3 tokens at 100 nano-dollars
    # 3 more tokens would pass the budget: refused before anything is sent.
    assert_cohere_error(post(http, EMBED, embed_body(texts=["alpha beta gamma"]), token), 402, "budget")
    assert len(fake.requests) == 1
    client = cohere.ClientV2(api_key=token, base_url=f"{proxy.url}/litellm/cohere", max_retries=0)
    with pytest.raises(cohere.core.ApiError) as raised:
        client.embed(model="fake-embed", texts=["alpha beta gamma"], input_type="search_query")
    assert raised.value.status_code == 402
    assert spent_nanos(proxy, token) == 300


@pytest.mark.parametrize("source", ["cfg", "store"])
def test_a_budgeted_key_cannot_overspend_through_rerank(proxy: ProxyProcess, http: httpx.Client,
                                                        fake: FakeUpstream, source: str) -> None:
    token = virtual_key(source, "rerank-budget")  # $0.003: one search unit at $0.002, not two
    rerank = {"model": "fake-rerank", "query": "blue", "documents": DOCUMENTS}
    first = post(http, RERANK, rerank, token)
    assert first.status_code == 200, first.text
    assert spent_nanos(proxy, token, 2_000_000) == 2_000_000
    # The next search unit would pass the budget: its reservation is refused, nothing is sent.
    assert_cohere_error(post(http, RERANK, rerank, token), 402, "may cost up to $0.002")
    assert len(fake.requests) == 1
    assert spent_nanos(proxy, token) == 2_000_000


@pytest.mark.parametrize("source", ["cfg", "store"])
def test_a_failed_call_costs_nothing_and_holds_nothing(proxy: ProxyProcess, http: httpx.Client,
                                                       fake: FakeUpstream, source: str) -> None:
    token = virtual_key(source, "embed-fail")  # $0.0000005: the reservation of one 3-token call, not of two
    fake.script(*[Reply(status=500, error_message="embedder broke")] * 3)
    assert_cohere_error(post(http, EMBED, embed_body(texts=["alpha beta gamma"]), token), 500, "embedder broke")
    # Admitted only if the failed call's reservation was given back.
    assert post(http, EMBED, embed_body(texts=["alpha beta gamma"]), token).status_code == 200
    assert spent_nanos(proxy, token, 300) == 300
    rerank_refused = post(http, RERANK, {"model": "fake-rerank", "query": "q", "documents": ["a"]}, token)
    assert_cohere_error(rerank_refused, 402, "may cost up to $0.002")  # a search unit is dearer than what is left
