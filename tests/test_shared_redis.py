"""Two proxy processes sharing one real Redis, a single server or a 3-master Redis Cluster (LiteLLM's own
`coordination_redis.startup_nodes`): a key's rpm limit and budget hold across both, exactly."""

from __future__ import annotations

import hashlib
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from .fake_upstream import FakeUpstream, Reply
from .harness import ProxyProcess, proxy_config_for, virtual_key
from .jwt_issuer import JwksServer

PATH = "/litellm/cohere/v2/chat"
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module", params=["single", "cluster"])
def topology(request: pytest.FixtureRequest) -> tuple[dict[str, Any], list[str]]:
    """(LiteLLM's `coordination_redis` for it, redis-cli's arguments to read it)."""
    if request.param == "single":
        port = request.getfixturevalue("redis_port")
        return {"host": "127.0.0.1", "port": port}, ["-p", str(port)]
    cluster = request.getfixturevalue("redis_cluster")
    return {"startup_nodes": cluster.startup_nodes}, ["-c", "-p", str(cluster.ports[0])]


@pytest.fixture(scope="module")
def pair(upstream: FakeUpstream, jwks: JwksServer, topology: tuple[dict[str, Any], list[str]],
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProxyProcess, ProxyProcess]]:
    config = proxy_config_for(upstream, jwks_url=jwks.url)
    config["general_settings"]["coordination_redis"] = topology[0]
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
                                                     topology: tuple[dict[str, Any], list[str]], source: str) -> None:
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
    stored = subprocess.run(["redis-cli", *topology[1], "GET", f"mpilot:{{key:{key_id}}}:nanos"],
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
                                                 topology: tuple[dict[str, Any], list[str]], source: str) -> None:
    """A key far from its limits is admitted in batches on each proxy: once their allowances end, Redis
    counts exactly the twenty requests, their spend, and holds nothing."""
    fake.script(*[Reply(delay=0.2)] * 20)
    token = virtual_key(source, "busy")
    assert Counter(r.status_code for r in on_both(pair, token)) == {200: 20}
    key_id = hashlib.sha256(token.encode()).hexdigest()

    def redis(*command: str) -> str:
        return subprocess.run(["redis-cli", *topology[1], *command], capture_output=True, text=True,
                              check=True).stdout.strip()

    deadline = time.monotonic() + 10
    while redis("HLEN", f"mpilot:{{key:{key_id}}}:nanos:holds") != "0":  # a second after the last batch
        assert time.monotonic() < deadline, redis("HGETALL", f"mpilot:{{key:{key_id}}}:nanos:holds")
        time.sleep(0.1)
    assert int(redis("GET", f"mpilot:{{key:{key_id}}}:nanos")) == 20 * 25_000
    assert redis("GET", f"mpilot:{{key:{key_id}}}:nanos:held") in ("0", "")  # the running total of holds
    counted = redis("HVALS", f"mpilot:{{key:{key_id}}}:rpm").split()
    assert sum(int(n) for n in counted) == 20, counted


def on_both(pair: tuple[ProxyProcess, ProxyProcess], token: str, **body: object) -> list[httpx.Response]:
    urls = [pair[n % 2].url for n in range(20)]
    with ThreadPoolExecutor(20) as pool:
        return list(pool.map(lambda url: httpx.post(url + PATH, json={"model": "fake", "messages": USER, **body},
                                                    headers={"Authorization": f"Bearer {token}"}, timeout=60), urls))


def info_on(proxy: ProxyProcess, token: str) -> dict[str, Any]:
    response = httpx.get(f"{proxy.url}/mpilot/key/info", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_every_kind_of_caller_is_served_by_both(pair: tuple[ProxyProcess, ProxyProcess], fake: FakeUpstream,
                                                jwks: JwksServer) -> None:
    """Config and store keys, a virtual-key JWT and an admin JWT, on each proxy; a vk JWT's key's rpm
    limit is one across both proxies: 20 at once spread over them, 5 through."""
    from .jwt_issuer import claims

    vk_token = jwks.keys[0].sign(claims(vk=hashlib.sha256(virtual_key("cfg", "fleet-rpm").encode()).hexdigest()))
    callers = [virtual_key("cfg", "open"), virtual_key("store", "open"),
               jwks.keys[0].sign(claims(vk=hashlib.sha256(virtual_key("cfg", "jwt").encode()).hexdigest())),
               jwks.keys[1].sign(claims(role="admin"))]
    statuses = [ask(proxy, token).status_code for token in callers for proxy in pair]
    assert statuses == [200] * 8, statuses
    assert Counter(r.status_code for r in on_both(pair, vk_token)) == {200: 5, 429: 15}


def test_a_keys_user_and_team_spend_are_counted_once_each(pair: tuple[ProxyProcess, ProxyProcess],
                                                          fake: FakeUpstream) -> None:
    """On a cluster the key's, its user's and its team's counters are three slots, each settled in a step of
    its own: every answer reaches all three, exactly once, and the budget (two answers) holds."""
    token = virtual_key("cfg", "fleet-budget")
    before = info_on(pair[0], token)
    statuses = Counter(ask(pair[n % 2], token).status_code for n in range(4))
    assert statuses == {200: 2, 402: 2}, statuses
    deadline = time.monotonic() + 10
    while (after := info_on(pair[1], token))["team_spend"] < before["team_spend"] + 2 * 0.000025 - 1e-12:
        assert time.monotonic() < deadline, after
        time.sleep(0.05)
    assert [round(after[field] - before[field], 9) for field in ("spend", "user_spend", "team_spend")] \
        == [0.00005] * 3


def test_a_client_chosen_call_id_does_not_skip_settlement(pair: tuple[ProxyProcess, ProxyProcess],
                                                          fake: FakeUpstream) -> None:
    """A client may send `x-litellm-call-id`, and LiteLLM takes it as the call's id: the same id on every
    request must not have the later calls taken for settled ones (their spend would go uncounted)."""
    token = virtual_key("store", "fleet-budget")
    headers = {"Authorization": f"Bearer {token}", "x-litellm-call-id": "same-call-id-every-time"}
    statuses = [httpx.post(pair[n % 2].url + PATH, json={"model": "fake", "messages": USER}, headers=headers,
                           timeout=30).status_code for n in range(4)]
    assert statuses == [200, 200, 402, 402], statuses
    deadline = time.monotonic() + 10
    while spend_on(pair[0], token) < 0.00005 - 1e-12:
        assert time.monotonic() < deadline, spend_on(pair[0], token)
        time.sleep(0.05)
    assert spend_on(pair[1], token) == pytest.approx(0.00005, abs=1e-12)


def test_a_store_keys_parallel_limit_holds_across_both(pair: tuple[ProxyProcess, ProxyProcess],
                                                       fake: FakeUpstream) -> None:
    """`max_parallel_requests` of a store key is LiteLLM's own limiter, handed the key whole: it counts in
    the same Redis (one hash tag per key there too), so one call at a time across the fleet."""
    fake.script(*[Reply(delay=1.5)] * 4)
    token = virtual_key("store", "parallel")
    with ThreadPoolExecutor(4) as pool:
        statuses = Counter(pool.map(lambda n: ask(pair[n % 2], token).status_code, range(4)))
    assert statuses[200] == 1 and statuses[429] == 3, statuses
