"""Two proxy processes sharing one real Redis: a key's rpm limit and budget hold across both."""

from __future__ import annotations

import hashlib
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from .fake_upstream import FakeUpstream, Reply
from .harness import ProxyProcess, proxy_config_for, virtual_key
from .jwt_issuer import JwksServer

PATH = "/litellm/cohere/v2/chat"
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def pair(upstream: FakeUpstream, jwks: JwksServer, redis_port: int,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProxyProcess, ProxyProcess]]:
    config = proxy_config_for(upstream, jwks_url=jwks.url)
    config["general_settings"]["coordination_redis"] = {"host": "127.0.0.1", "port": redis_port}
    proxies = [ProxyProcess(config, Path(tmp_path_factory.mktemp(f"shared{n}"))) for n in range(2)]
    errors: list[BaseException] = []

    def start(proxy: ProxyProcess) -> None:
        try:
            proxy.start()
        except BaseException as error:  # noqa: BLE001  # reported below
            errors.append(error)

    threads = [threading.Thread(target=start, args=(p,)) for p in proxies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert not errors, errors
        yield proxies[0], proxies[1]
    finally:
        for proxy in proxies:
            proxy.stop()


def ask(proxy: ProxyProcess, token: str) -> httpx.Response:
    return httpx.post(proxy.url + PATH, json={"model": "fake", "messages": USER},
                      headers={"Authorization": f"Bearer {token}"}, timeout=30)


def spend_on(proxy: ProxyProcess, token: str) -> float:
    response = httpx.get(f"{proxy.url}/mpilot/key/info", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["spend"]


@pytest.mark.parametrize("source", ["cfg", "store"])
def test_rpm_limit_is_shared(pair: tuple[ProxyProcess, ProxyProcess], fake: FakeUpstream, source: str) -> None:
    first, second = pair
    token = virtual_key(source, "rpm")  # 2 a minute in total, not 2 on each
    assert ask(first, token).status_code == 200
    assert ask(second, token).status_code == 200
    refused = [ask(first, token), ask(second, token)]
    assert [r.status_code for r in refused] == [429, 429]
    assert all(int(r.headers["retry-after"]) > 0 for r in refused)


@pytest.mark.parametrize("source", ["cfg", "store"])
def test_budget_spent_on_one_is_refused_on_the_other(pair: tuple[ProxyProcess, ProxyProcess], fake: FakeUpstream,
                                                     redis_port: int, source: str) -> None:
    first, second = pair
    token = virtual_key(source, "budget")  # $0.00004; each answer $0.000025, reserved as at most ~$0.000024
    assert ask(first, token).status_code == 200
    deadline = time.monotonic() + 10
    while spend_on(second, token) < 0.000025:  # the other proxy sees the spend
        assert time.monotonic() < deadline, "spend did not reach the other proxy"
        time.sleep(0.05)
    assert ask(second, token).status_code == 402  # $0.000015 left: less than a call may cost
    assert ask(first, token).status_code == 402
    # The spend is in Redis, in the ledger's counter for this key: exactly 25,000 nano-dollars.
    key_id = hashlib.sha256(token.encode()).hexdigest()
    stored = subprocess.run(["redis-cli", "-p", str(redis_port), "GET", f"mpilot:nanos:key:{key_id}"],
                            capture_output=True, text=True).stdout.strip()
    assert int(stored) == 25_000


@pytest.mark.parametrize("source", ["cfg", "store"])
def test_twenty_at_once_across_two_proxies(pair: tuple[ProxyProcess, ProxyProcess], fake: FakeUpstream,
                                           source: str) -> None:
    """Ten requests at once on each proxy, one budget that fits three answers and one rpm limit of five."""
    fake.script(*[Reply(delay=0.5)] * 40)
    budget = Counter(r.status_code for r in on_both(pair, virtual_key(source, "three"), max_tokens=7))
    assert budget == {200: 3, 402: 17}, budget
    rpm = Counter(r.status_code for r in on_both(pair, virtual_key(source, "burst")))
    assert rpm == {200: 5, 429: 15}, rpm


@pytest.mark.parametrize("source", ["cfg", "store"])
def test_batches_count_exactly_what_was_admitted(pair: tuple[ProxyProcess, ProxyProcess], fake: FakeUpstream,
                                                 redis_port: int, source: str) -> None:
    """A key far from its limits is admitted in batches on each proxy: once their allowances end, Redis
    counts exactly the twenty requests, their spend, and holds nothing."""
    fake.script(*[Reply(delay=0.2)] * 20)
    token = virtual_key(source, "busy")
    assert Counter(r.status_code for r in on_both(pair, token)) == {200: 20}
    key_id = hashlib.sha256(token.encode()).hexdigest()

    def redis(*command: str) -> str:
        return subprocess.run(["redis-cli", "-p", str(redis_port), *command], capture_output=True, text=True,
                              check=True).stdout.strip()

    deadline = time.monotonic() + 10
    while redis("HLEN", f"mpilot:nanos:key:{key_id}:holds") != "0":  # a second after the last batch
        assert time.monotonic() < deadline, redis("HGETALL", f"mpilot:nanos:key:{key_id}:holds")
        time.sleep(0.1)
    assert int(redis("GET", f"mpilot:nanos:key:{key_id}")) == 20 * 25_000
    counted = redis("HVALS", f"mpilot:rpm:key:{key_id}").split()
    assert sum(int(n) for n in counted) == 20, counted


def on_both(pair: tuple[ProxyProcess, ProxyProcess], token: str, **body: object) -> list[httpx.Response]:
    urls = [pair[n % 2].url for n in range(20)]
    with ThreadPoolExecutor(20) as pool:
        return list(pool.map(lambda url: httpx.post(url + PATH, json={"model": "fake", "messages": USER, **body},
                                                    headers={"Authorization": f"Bearer {token}"}, timeout=60), urls))
