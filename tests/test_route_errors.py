"""Bad input, bad tokens and upstream failures: Cohere's error shape with the right status."""

from __future__ import annotations

import json
from typing import Any

import cohere
import cohere.errors
import httpx
import pytest

from .fake_upstream import FakeUpstream, Reply
from .harness import MAX_REQUEST_BYTES, ProxyProcess

PATH = "/litellm/cohere/v2/chat"
USER = [{"role": "user", "content": "hi"}]


def ask(http: httpx.Client, body: Any, **kwargs: Any) -> httpx.Response:
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return http.post(PATH, content=content, headers={"content-type": "application/json"}, **kwargs)


def assert_cohere_error(response: httpx.Response, status: int, *fragments: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"type", "message", "code", "id"}
    assert all(isinstance(body[key], str) and body[key] for key in body)
    for fragment in fragments:
        assert fragment in body["message"]
    return body


BAD_INPUT = [
    pytest.param(b'{"model": "fake", "messages": [', "JSON", id="malformed-json"),
    pytest.param(b"[1, 2]", "must be a JSON object", id="not-an-object"),
    pytest.param({"messages": USER}, "model is required", id="missing-model"),
    pytest.param({"model": "fake"}, "messages is required", id="missing-messages"),
    pytest.param({"model": "fake", "messages": []}, "messages", id="empty-messages"),
    pytest.param({"model": 3, "messages": USER}, "model", id="model-not-a-string"),
    pytest.param({"model": "fake", "messages": "hi"}, "messages", id="messages-not-a-list"),
    pytest.param({"model": "fake", "messages": USER, "temperature": 1.5}, "temperature", id="temperature-1.5"),
    pytest.param({"model": "fake", "messages": USER, "temperature": "hot"}, "temperature", id="temperature-str"),
    pytest.param({"model": "fake", "messages": USER, "p": 0}, "p:", id="p-0"),
    pytest.param({"model": "fake", "messages": USER, "k": 501}, "k:", id="k-501"),
    pytest.param({"model": "fake", "messages": USER, "max_tokens": 0}, "max_tokens", id="max-tokens-0"),
    pytest.param({"model": "fake", "messages": USER, "stop_sequences": list("abcdef")}, "stop_sequences",
                 id="six-stop-sequences"),
    pytest.param({"model": "fake", "messages": USER, "tool_choice": "SOMETIMES"}, "tool_choice",
                 id="tool-choice-unknown"),
    pytest.param({"model": "fake", "messages": USER, "safety_mode": "LAX"}, "safety_mode", id="safety-unknown"),
    pytest.param({"model": "fake", "messages": USER, "priority": 1000}, "priority", id="priority-1000"),
    pytest.param({"model": "fake", "messages": USER, "thinking": {"type": "enabled", "token_budget": 0}},
                 "thinking.token_budget", id="thinking-budget-0"),
    pytest.param({"model": "fake", "messages": USER, "response_format": {"type": "xml"}}, "response_format",
                 id="response-format-unknown"),
    pytest.param({"model": "fake", "messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role",
                 id="unknown-role"),
    pytest.param({"model": "fake", "messages": [{"role": "user", "content": [{"type": "video", "url": "x"}]}]},
                 "messages[0].content[0].type", id="unknown-content-type"),
    pytest.param({"model": "fake", "messages": [{"role": "tool", "content": "42"}]}, "messages[0].tool_call_id",
                 id="tool-without-tool-call-id"),
    pytest.param({"model": "fake", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]}, "image_url.url", id="image-url-scheme"),
    pytest.param({"model": "fake", "messages": USER, "tools": [{"type": "function", "function": {}}]},
                 "tools[0].function.name", id="tool-without-name"),
]


@pytest.mark.parametrize(("body", "fragment"), BAD_INPUT)
def test_bad_input_is_a_400_naming_the_field(http: httpx.Client, fake: FakeUpstream, body: Any,
                                             fragment: str) -> None:
    error = assert_cohere_error(ask(http, body), 400, fragment)
    assert error["type"] == "invalid_request_error"
    assert fake.requests == []  # nothing reached the provider


def test_unknown_model_is_404(http: httpx.Client) -> None:
    error = assert_cohere_error(ask(http, {"model": "no-such-model", "messages": USER}), 404, "no-such-model")
    assert error["code"] == "model_not_found"


@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer sk-not-a-key-0000", "Basic Zm9vOmJhcg=="])
def test_missing_or_bad_token_is_401(proxy: ProxyProcess, authorization: str | None) -> None:
    headers = {"content-type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = httpx.post(proxy.url + PATH, content=json.dumps({"model": "fake", "messages": USER}), headers=headers)
    error = assert_cohere_error(response, 401)
    assert error["type"] == "authentication_error"
    assert "sk-not-a-key-0000" not in response.text


def test_sdk_raises_its_own_exceptions(proxy: ProxyProcess, co_no_retry: cohere.ClientV2) -> None:
    with pytest.raises(cohere.errors.BadRequestError):
        co_no_retry.chat(model="fake", messages=USER, temperature=1.5)
    with pytest.raises(cohere.errors.NotFoundError):
        co_no_retry.chat(model="no-such-model", messages=USER)
    stranger = cohere.ClientV2(api_key="sk-unknown-1234", base_url=f"{proxy.url}/litellm/cohere", max_retries=0)
    with pytest.raises(cohere.errors.UnauthorizedError):
        stranger.chat(model="fake", messages=USER)


UPSTREAM_FAILURES = [
    pytest.param(429, cohere.errors.TooManyRequestsError, id="429"),
    pytest.param(500, cohere.errors.InternalServerError, id="500"),
    pytest.param(503, cohere.errors.ServiceUnavailableError, id="503"),
]


@pytest.mark.parametrize(("status", "sdk_error"), UPSTREAM_FAILURES)
def test_upstream_error_keeps_its_status(co_no_retry: cohere.ClientV2, http: httpx.Client, fake: FakeUpstream,
                                         status: int, sdk_error: type[Exception]) -> None:
    fake.script(Reply(status=status, error_message=f"provider said {status}"))
    with pytest.raises(sdk_error):
        co_no_retry.chat(model="fake", messages=USER)
    fake.script(Reply(status=status, error_message=f"provider said {status}"))
    body = assert_cohere_error(ask(http, {"model": "fake", "messages": USER}), status, f"provider said {status}")
    # The provider's words, without LiteLLM's exception names; a 429 says whose limit it was.
    assert "litellm." not in body["message"] and "Exception" not in body["message"]
    assert ("the provider of model 'fake' is rate limiting" in body["message"]) == (status == 429)
    fake.script(Reply(status=status))  # before the first byte of a stream: a JSON error, not an SSE stream
    assert_cohere_error(ask(http, {"model": "fake", "messages": USER, "stream": True}), status)


def test_slow_upstream_is_a_504(co_no_retry: cohere.ClientV2, http: httpx.Client, fake: FakeUpstream) -> None:
    fake.script(Reply(delay=4))  # the model `fake-timeout` allows 1.5 s
    with pytest.raises(cohere.errors.GatewayTimeoutError):
        co_no_retry.chat(model="fake-timeout", messages=USER)


def test_stream_broken_half_way_ends_with_error_event(co: cohere.ClientV2, fake: FakeUpstream) -> None:
    fake.script(Reply(text="This answer will not finish because the connection drops.", break_after=4))
    events = list(co.chat_stream(model="fake", messages=USER))
    assert events[0].type == "message-start"
    assert any(e.type == "content-delta" for e in events)
    end = events[-1]
    assert end.type == "message-end"
    assert end.delta.finish_reason == "ERROR"
    assert end.delta.error
    assert [e.type for e in events].count("message-end") == 1


def padded_chat(size: int) -> bytes:
    """A valid chat body of exactly `size` bytes (the padding is in the user's message)."""
    empty = json.dumps({"model": "fake", "messages": [{"role": "user", "content": ""}]}).encode()
    return json.dumps({"model": "fake", "messages": [{"role": "user", "content": "x" * (size - len(empty))}]}).encode()


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_a_413_before_it_is_read(http: httpx.Client, fake: FakeUpstream,
                                                          declared: bool) -> None:
    body = padded_chat(MAX_REQUEST_BYTES + 1)
    content: Any = body if declared else iter([body[i:i + 65536] for i in range(0, len(body), 65536)])
    response = http.post(PATH, content=content, headers={"content-type": "application/json"})
    assert_cohere_error(response, 413, f"request body is over {MAX_REQUEST_BYTES} bytes")
    assert response.json()["code"] == "request_too_large"
    assert fake.requests == []
    # The connection is still good for the next request.
    assert http.post(PATH, content=padded_chat(MAX_REQUEST_BYTES), headers={"content-type": "application/json"}
                     ).status_code == 200
