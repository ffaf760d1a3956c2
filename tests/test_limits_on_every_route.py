"""A virtual key's limits hold on every route of the proxy, not only the Cohere route: wherever a request
names its model (path, query, form content type), and on reads that reach a model (`/health`, realtime)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets

from .fake_upstream import FakeUpstream
from .harness import SOURCES, ProxyProcess, virtual_key
from .jwt_issuer import JwksServer, claims
from .test_auth import key_id

USER = [{"role": "user", "content": "hi"}]
CHAT = {"messages": USER}


def post(proxy: ProxyProcess, path: str, token: str, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
    return httpx.post(proxy.url + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30, **kwargs)


# (path, body) pairs that ask for model `fake-b` one way or another; the key may use only `fake`.
FORBIDDEN_SHAPES = [
    pytest.param("/engines/fake-b/chat/completions", {"model": "fake", **CHAT}, id="engines-path"),
    pytest.param("/openai/deployments/fake-b/chat/completions", {"model": "fake", **CHAT}, id="azure-path"),
    pytest.param("/openai/deployments/fake-b/chat/completions", CHAT, id="azure-path-no-body-model"),
    pytest.param("/v1/chat/completions?model=fake-b", {"model": "fake", **CHAT}, id="query"),
    pytest.param("/chat/completions?model=fake-b", CHAT, id="query-no-body-model"),
    pytest.param("/bedrock/model/fake-b/converse", {"messages": [{"role": "user", "content": [{"text": "hi"}]}]},
                 id="bedrock-path"),
    pytest.param("/v1/chat/completions", {"model": "fake", "fallbacks": ["fake-b"], **CHAT}, id="client-fallbacks"),
]


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize(("path", "body"), FORBIDDEN_SHAPES)
def test_a_model_named_anywhere_is_checked(proxy: ProxyProcess, fake: FakeUpstream, source: str, path: str,
                                           body: dict[str, Any]) -> None:
    response = post(proxy, path, virtual_key(source, "models"), body)
    assert response.status_code == 403, response.text
    assert "may not use model 'fake-b'" in response.text
    assert fake.requests == []


def test_the_same_shapes_with_an_allowed_model_answer(proxy: ProxyProcess, fake: FakeUpstream) -> None:
    """The control: those routes do serve the key's own model, so the refusals above are the model check."""
    token = virtual_key("cfg", "models")
    for path in ("/engines/fake/chat/completions", "/openai/deployments/fake/chat/completions",
                 "/v1/chat/completions?model=fake"):
        response = post(proxy, path, token, {"model": "fake", **CHAT})
        assert response.status_code == 200, (path, response.text)
    assert len(fake.requests) == 3


def test_a_virtual_key_jwt_is_checked_on_path_models(proxy: ProxyProcess, fake: FakeUpstream,
                                                     jwks: JwksServer) -> None:
    token = jwks.keys[0].sign(claims(vk=key_id(virtual_key("cfg", "jwt"))))  # may use only `fake`
    response = post(proxy, "/openai/deployments/fake-b/chat/completions", token, {"model": "fake", **CHAT})
    assert response.status_code == 403 and "may not use model 'fake-b'" in response.text
    assert fake.requests == []


@pytest.mark.parametrize("source", SOURCES)
def test_the_reservation_prices_every_model_named(proxy: ProxyProcess, fake: FakeUpstream, source: str) -> None:
    """The path's model wins over the body's on LiteLLM's chat routes: a cheap model in the body must not
    get a call to a dear one reserved at the cheap one's price."""
    token = virtual_key(source, "dear")  # $0.001; one answer of `fake-dear` costs $0.0025
    body = {"model": "fake", "max_tokens": 7, **CHAT}
    assert post(proxy, "/v1/chat/completions", token, body).status_code == 200  # `fake` fits
    refused = post(proxy, "/engines/fake-dear/chat/completions", token, body)
    assert refused.status_code == 402, refused.text
    assert "may cost up to" in refused.text
    assert len(fake.requests) == 1


@pytest.mark.parametrize("source", SOURCES)
def test_our_route_checks_the_model_it_calls_whatever_the_content_type(proxy: ProxyProcess, fake: FakeUpstream,
                                                                       source: str) -> None:
    """curl's `-d` sends `application/x-www-form-urlencoded`: LiteLLM would read a form without a model,
    while the route reads the JSON. Auth now reads it as the route does."""
    token = virtual_key(source, "models")
    for content_type in ("application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x"):
        refused = httpx.post(proxy.url + "/litellm/cohere/v2/chat", timeout=30,
                             content=json.dumps({"model": "fake-b", **CHAT}),
                             headers={"Authorization": f"Bearer {token}", "content-type": content_type})
        assert refused.status_code == 403, (content_type, refused.text)
        assert "may not use model 'fake-b'" in refused.json()["message"]
    assert fake.requests == []
    allowed = httpx.post(proxy.url + "/litellm/cohere/v2/chat", timeout=30,
                         content=json.dumps({"model": "fake", **CHAT}),
                         headers={"Authorization": f"Bearer {token}",
                                  "content-type": "application/x-www-form-urlencoded"})
    assert allowed.status_code == 200, allowed.text
    assert fake.requests[-1].body["model"] == "fake-upstream"


# --- reads that reach a model ---------------------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_health_with_a_spent_key_calls_no_model(proxy: ProxyProcess, fake: FakeUpstream, source: str) -> None:
    """`/health` calls every model the key may use: a key without budget gets 402 and nothing is called."""
    response = httpx.get(f"{proxy.url}/health", headers={"Authorization": f"Bearer {virtual_key(source, 'broke')}"},
                         timeout=60)
    assert response.status_code == 402, response.text
    assert "has exceeded its budget of $0.00" in response.text
    assert fake.requests == []


@pytest.mark.parametrize("source", SOURCES)
def test_reads_that_reach_no_model_stay_open_to_a_spent_key(proxy: ProxyProcess, source: str) -> None:
    headers = {"Authorization": f"Bearer {virtual_key(source, 'broke')}"}
    assert httpx.get(f"{proxy.url}/mpilot/key/info", headers=headers, timeout=10).json()["max_budget"] == 0
    assert httpx.get(f"{proxy.url}/v1/models", headers=headers, timeout=10).status_code == 200


async def _open_realtime(proxy: ProxyProcess, token: str, model: str = "fake") -> str:
    url = proxy.url.replace("http://", "ws://") + f"/v1/realtime?model={model}"
    try:
        async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                                      open_timeout=10, close_timeout=2) as socket:
            await asyncio.wait_for(socket.recv(), timeout=5)
            return "open"
    except websockets.exceptions.InvalidStatus as refused:
        return f"refused {refused.response.status_code}"
    except websockets.exceptions.ConnectionClosed as closed:
        return f"closed {closed.rcvd.code if closed.rcvd else None}"


@pytest.mark.parametrize("source", SOURCES)
def test_realtime_websocket_with_a_spent_key_is_refused(proxy: ProxyProcess, source: str) -> None:
    before = len(proxy.log())
    outcome = asyncio.run(_open_realtime(proxy, virtual_key(source, "broke")))
    assert outcome.startswith(("refused 403", "closed 1008")), outcome
    assert "has exceeded its budget" in proxy.log()[before:]


@pytest.mark.parametrize("source", SOURCES)
def test_realtime_websocket_checks_its_model(proxy: ProxyProcess, source: str) -> None:
    """A websocket names its model in the query (`?model=`); LiteLLM's auth sees it as a GET."""
    before = len(proxy.log())
    outcome = asyncio.run(_open_realtime(proxy, virtual_key(source, "models"), model="fake-b"))
    assert outcome.startswith(("refused 403", "closed 1008")), outcome
    assert "may not use model 'fake-b'" in proxy.log()[before:]


@pytest.mark.parametrize("source", SOURCES)
def test_counting_tokens_reserves_nothing_and_refuses_a_spent_key(proxy: ProxyProcess, fake: FakeUpstream,
                                                                 source: str) -> None:
    """LiteLLM's `/utils/token_counter` makes no billed call and no call's end would settle a reservation
    there: a budgeted key counts tokens (a reservation for `default_max_tokens` would not fit its budget),
    again and again, and can still chat; a spent key is refused, as LiteLLM's own auth refuses one there."""
    token = virtual_key(source, "counting")
    for _ in range(3):
        counted = post(proxy, "/utils/token_counter", token, {"model": "fake", **CHAT})
        assert counted.status_code == 200, counted.text
        assert counted.json()["total_tokens"] > 0
    assert post(proxy, "/v1/chat/completions", token, {"model": "fake", "max_tokens": 7, **CHAT}).status_code == 200
    refused = post(proxy, "/utils/token_counter", virtual_key(source, "broke"), {"model": "fake", **CHAT})
    assert refused.status_code == 402, refused.text
    assert len(fake.requests) == 1  # the chat only
