"""Error texts: credentials redacted, the plugin's own words kept, provider errors in plain words."""

from __future__ import annotations

import json

import pytest

from plugin.cohere.errors import CohereError, call_failure_message, cohere_status, field_path, redact
from plugin.cohere.schema import parse_chat_request


@pytest.mark.parametrize("secret", [
    "sk-bf-live-0123456789abcdef0123",
    "sk-test-master-0123456789",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
    "Bearer abcdefghijklmnop0123456789",
])
def test_credentials_are_redacted(secret: str) -> None:
    out = redact(f"refused: {secret}, then more")
    assert secret not in out and "[redacted]" in out and out.endswith(", then more")


@pytest.mark.parametrize("words", [
    "malformed bearer token",
    "the Authorization header needs a Bearer token",
    "virtual key 3f2a9c01b2e4 has exceeded its budget of $5.00",
])
def test_the_plugins_own_words_stay(words: str) -> None:
    assert redact(words) == words


def test_key_ids_are_shortened() -> None:
    key_id = "3f2a9c01b2e4" + "0" * 52
    assert redact(f"key {key_id} refused") == "key 3f2a9c01b2e4 refused"


def test_a_providers_429_says_which_limit_without_litellm_internals() -> None:
    text = "litellm.RateLimitError: RateLimitError: OpenAIException - quota of the org exhausted"
    message = call_failure_message(429, text, "gpt-4o")
    assert message == ("the provider of model 'gpt-4o' is rate limiting requests; retry later "
                       "(it said: quota of the org exhausted)")
    assert "litellm" not in message.lower() and "Exception" not in message


def test_other_provider_errors_keep_the_providers_words() -> None:
    text = "litellm.InternalServerError: InternalServerError: OpenAIException - upstream failure"
    assert call_failure_message(500, text, "gpt-4o") == "upstream failure"
    assert call_failure_message(500, "plain words", "gpt-4o") == "plain words"


def test_the_routers_fallback_notes_stay_with_the_operator() -> None:
    # LiteLLM 1.100's router appends the proxy's fallback settings and the whole message again.
    text = ("litellm.RateLimitError: RateLimitError: OpenAIException - provider said 429No fallback model group "
            "found for original model_group=fake. Fallbacks=[{'fake-broken': ['fake-b']}]. Received Model "
            "Group=fake\nAvailable Model Group Fallbacks=None\nError doing the fallback: litellm.RateLimitError: "
            "RateLimitError: OpenAIException - provider said 429")
    assert call_failure_message(500, text, "fake") == "provider said 429"
    assert call_failure_message(500, "provider said 500. Received Model Group=fake", "fake") == "provider said 500."
    # From 1.106 (1.110.2's words): a paragraph naming every model group that has fallbacks.
    text = ("Error code: 500 - provider said 500\n\nLiteLLM: model group 'fake' failed with the error above and no "
            "fallback model group was found for it, so the request was not retried on another model. Fallbacks are "
            "configured for: fake-broken, secret-group. Add a fallbacks entry for that model group (Router fallbacks "
            "or proxy router_settings.fallbacks) to retry on another model.")
    assert call_failure_message(500, text, "fake") == "Error code: 500 - provider said 500"
    assert call_failure_message(500, "provider said 500\n\nLiteLLM: model group 'fake' failed with the error "
                                     "above. No fallback was attempted.", "fake") == "provider said 500"


# The error body, as docs/errors-and-failures.md "Errors" documents it: status -> (type, code).
ERROR_TABLE = [
    (400, "invalid_request_error", "invalid_request"),
    (401, "authentication_error", "unauthorized"),
    (402, "budget_exceeded_error", "budget_exceeded"),
    (403, "permission_error", "forbidden"),
    (404, "not_found_error", "not_found"),
    (422, "invalid_request_error", "unprocessable_entity"),
    (429, "rate_limit_error", "too_many_requests"),
    (499, "client_closed_request", "client_closed_request"),
    (501, "not_implemented_error", "not_implemented"),
    (503, "service_unavailable_error", "service_unavailable"),
    (504, "timeout_error", "gateway_timeout"),
    (409, "invalid_request_error", "invalid_request"),  # any other 4xx
    (500, "api_error", "internal_error"),
    (502, "api_error", "internal_error"),  # any other 5xx
]


@pytest.mark.parametrize(("status", "kind", "code"), ERROR_TABLE)
def test_error_body_by_status(status: int, kind: str, code: str) -> None:
    error = CohereError(status, "what went wrong")
    assert error.body("req-1") == {"type": kind, "message": "what went wrong", "code": code, "id": "req-1"}
    assert (error.status, str(error)) == (status, "what went wrong")


def test_a_precise_code_and_headers_are_kept() -> None:
    headers = {"retry-after": "3"}
    error = CohereError(429, "slow down", code="key_rate_limited", headers=headers)
    assert error.body("r")["code"] == "key_rate_limited"
    assert error.body("r")["type"] == "rate_limit_error"
    assert error.headers == {"retry-after": "3"}
    headers["retry-after"] = "9"  # a copy: the caller's mapping may change later
    assert error.headers == {"retry-after": "3"}
    assert CohereError(400, "x").headers == {}


# Statuses the cohere SDK raises its own exception for (the spec, `cohere-v2.md` "Errors"); 402 is ours.
SDK_STATUSES = [400, 401, 403, 404, 422, 429, 498, 499, 500, 501, 503, 504]


@pytest.mark.parametrize(("upstream", "expected"), [
    *((status, status) for status in [*SDK_STATUSES, 402]),
    (408, 504), (502, 503),
    (405, 400), (409, 400), (413, 400), (451, 400), (497, 400),
    (505, 500), (507, 500), (599, 500), (200, 500), (302, 500), (399, 500),
])
def test_cohere_status(upstream: int, expected: int) -> None:
    assert cohere_status(upstream) == expected


def test_every_status_we_answer_with_is_one_the_sdk_raises_its_own_exception_for() -> None:
    """The real cohere client, reading our error bodies (an in-process transport, no server)."""
    import cohere
    import httpx

    answered = sorted({cohere_status(status) for status in range(100, 600)} - {402})
    assert answered == SDK_STATUSES
    for status in answered:
        body = CohereError(status, f"failed with {status}").body("req-9")
        transport = httpx.MockTransport(lambda request, status=status, body=body: httpx.Response(status, json=body))
        client = cohere.ClientV2(api_key="k", base_url="http://cohere.invalid", max_retries=0,
                                 httpx_client=httpx.Client(transport=transport))
        with pytest.raises(cohere.core.ApiError) as raised:
            client.chat(model="m", messages=[{"role": "user", "content": "hi"}])
        assert type(raised.value) is not cohere.core.ApiError, status  # a status-specific exception class
        assert raised.value.status_code == status
        assert raised.value.body["message"] == f"failed with {status}"


def parse_error(body: bytes) -> CohereError:
    with pytest.raises(CohereError) as raised:
        parse_chat_request(body)
    assert raised.value.status == 400
    return raised.value


def test_a_body_that_is_not_json() -> None:
    error = parse_error(b'{"model": "m", "messages": [')
    assert error.code == "invalid_json"
    assert error.message.startswith("request body is not valid JSON: ")


@pytest.mark.parametrize("body", [b"[]", b"3", b'"text"', b"null"])
def test_a_body_that_is_not_an_object(body: bytes) -> None:
    error = parse_error(body)
    assert (error.code, error.message) == ("invalid_json", "request body must be a JSON object")


@pytest.mark.parametrize(("body", "code", "message"), [
    ({"messages": [{"role": "user", "content": "hi"}]}, "missing_field", "model is required"),
    ({"model": "m", "messages": [{"role": "robot", "content": "hi"}]}, "invalid_field",
     "messages[0].role: unknown value 'robot', expected one of 'system', 'user', 'assistant', 'tool'"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 2}, "invalid_field",
     "temperature: Input should be less than or equal to 1, got 2"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "citation_options": "FAST"}, "invalid_field",
     "citation_options: Input should be an object, got 'FAST'"),  # an object expected inside the body
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "documents": [{"data": {"n": float("nan")}}]},
     "invalid_field", "documents[0].data.n: NaN is not a JSON number; numbers must be finite, within ±1.8e308"),
])
def test_validation_errors_have_a_code_and_name_the_field(body: dict, code: str, message: str) -> None:
    error = parse_error(json.dumps(body).encode())
    assert (error.code, error.message) == (code, message)


def test_only_short_scalar_values_are_echoed() -> None:
    def message(value: object) -> str:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tool_choice": value}
        return parse_error(json.dumps(body).encode()).message

    assert message("A" * 78).endswith(f", got {'A' * 78!r}")  # its repr: 80 characters
    assert ", got" not in message("A" * 79)
    assert ", got" not in message(["AUTO"])  # not a scalar


def test_field_path_walks_the_clients_own_json() -> None:
    body = {"messages": [{"role": "tool", "content": "x"}]}
    assert field_path(("messages", 0, "tool", "tool_call_id"), body) == "messages[0].tool_call_id"
    assert field_path(("messages", 1, "role"), body) == "messages[1]"  # past the end: named, not followed
    assert field_path(("model",), None) == "body"
    assert field_path((), body) == "body"


def test_decoding_a_body_refuses_what_is_not_json_without_recursing() -> None:
    from plugin.cohere.schema import decode_json_body

    assert decode_json_body(b'{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}
    for body in [b'{"a": ', b"[" * 5000 + b"]" * 5000]:  # cut off; nested past the parser's limit
        with pytest.raises(CohereError) as raised:
            decode_json_body(body)
        assert (raised.value.status, raised.value.code) == (400, "invalid_json")
        assert raised.value.message.startswith("request body is not valid JSON: ")
