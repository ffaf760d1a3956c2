"""Keys from the proxy's own key store keep every restriction LiteLLM gives them: the plugin hands LiteLLM
the key's own object, and LiteLLM enforces what only its keys have, on the Cohere route and its own.

LiteLLM's own auth cannot serve these keys here (without its database it refuses every key but the
master key), so the comparison is with LiteLLM's documented behaviour: its refusal, status and words."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from .fake_upstream import FakeUpstream, Reply
from .harness import ProxyProcess, virtual_key

USER = [{"role": "user", "content": "hi"}]
ROUTES = {"cohere": "/litellm/cohere/v2/chat", "openai": "/v1/chat/completions"}


def call(proxy: ProxyProcess, route: str, token: str) -> httpx.Response:
    return httpx.post(proxy.url + ROUTES[route], json={"model": "fake", "messages": USER},
                      headers={"Authorization": f"Bearer {token}"}, timeout=60)


@pytest.mark.parametrize("route", list(ROUTES))
def test_max_parallel_requests(proxy: ProxyProcess, fake: FakeUpstream, route: str) -> None:
    fake.script(*[Reply(delay=1.0)] * 3)
    token = virtual_key("store", "parallel")  # one call at a time
    with ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(lambda _: call(proxy, route, token), range(3)))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 429: 2}, [r.text for r in responses]
    assert len(fake.requests) == 1
    assert call(proxy, route, token).status_code == 200  # the slot is free again


def test_allowed_routes(proxy: ProxyProcess, fake: FakeUpstream) -> None:
    token = virtual_key("store", "routes")  # only /v1/chat/completions
    assert call(proxy, "openai", token).status_code == 200
    refused = call(proxy, "cohere", token)
    assert refused.status_code in (401, 403), refused.text
    assert "not allowed to call this route" in refused.json()["message"]
    assert len(fake.requests) == 1


def test_model_max_budget(proxy: ProxyProcess, fake: FakeUpstream) -> None:
    token = virtual_key("store", "model-budget")  # $0.00003 a day on model `fake`; an answer costs $0.000025
    statuses = []
    for route in ("cohere", "openai", "cohere", "openai"):
        statuses.append(call(proxy, route, token).status_code)
        time.sleep(0.5)  # LiteLLM counts a model's spend from its success callback
    # The plugin's route answers as LiteLLM's own: a model budget spent is 422 (429 on 1.100).
    assert statuses[:2] == [200, 200] and statuses[2] == statuses[3] in (422, 429), statuses
    for route in ROUTES:
        assert "exceeded budget for model=fake" in call(proxy, route, token).text
    assert len(fake.requests) == 2
