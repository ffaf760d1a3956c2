"""A proxy whose Redis is a master and a replica behind Redis Sentinel (LiteLLM's `coordination_redis`
`sentinel_nodes` + `service_name`): the ledger follows the master. Stopped mid-traffic, limited keys get a
Cohere-shaped 503 with Retry-After (never a 500) until the sentinel promotes the replica, then 200 again
without a restart; what was settled is counted once."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .fake_upstream import FakeUpstream
from .harness import ProxyProcess, proxy_config_for, virtual_key
from .jwt_issuer import JwksServer
from .redis_servers import RedisSentinel, cli

PATH = "/litellm/cohere/v2/chat"
USER = [{"role": "user", "content": "hi"}]
ANSWER_NANOS = 25_000  # what the fake upstream's answer costs
OUTAGE_SECONDS = 40  # the longest the test waits for the failover


@pytest.fixture(scope="module")
def proxy_on_sentinel(upstream: FakeUpstream, jwks: JwksServer, redis_sentinel: RedisSentinel,
                      tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    config = proxy_config_for(upstream, jwks_url=jwks.url)
    config["general_settings"]["coordination_redis"] = {"sentinel_nodes": redis_sentinel.sentinel_nodes,
                                                        "service_name": redis_sentinel.service_name}
    proxy = ProxyProcess(config, Path(tmp_path_factory.mktemp("sentinel-proxy"))).start()
    yield proxy
    proxy.stop()


def ask(proxy: ProxyProcess, token: str) -> httpx.Response:
    return httpx.post(proxy.url + PATH, json={"model": "fake", "messages": USER},
                      headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_the_ledger_follows_the_master_through_a_failover(proxy_on_sentinel: ProxyProcess, fake: FakeUpstream,
                                                          redis_sentinel: RedisSentinel) -> None:
    token = virtual_key("cfg", "failover")
    spend_key = f"mpilot:{{key:{hashlib.sha256(token.encode()).hexdigest()}}}:nanos"
    master, replica = redis_sentinel.master_port(), redis_sentinel.replica
    assert master == redis_sentinel.initial_master

    assert [ask(proxy_on_sentinel, token).status_code for _ in range(5)] == [200] * 5
    deadline = time.monotonic() + 10
    while cli(replica, "GET", spend_key) != str(5 * ANSWER_NANOS):  # settled, and replicated
        assert time.monotonic() < deadline, (cli(master, "GET", spend_key), cli(replica, "GET", spend_key))
        time.sleep(0.05)

    redis_sentinel.stop_master()
    statuses: list[int] = []
    refusals: list[httpx.Response] = []
    deadline = time.monotonic() + OUTAGE_SECONDS
    while not (refusals and statuses[-5:] == [200] * 5):  # refused at least once, then answered again
        assert time.monotonic() < deadline, statuses
        response = ask(proxy_on_sentinel, token)
        statuses.append(response.status_code)
        if response.status_code != 200:
            refusals.append(response)
        time.sleep(0.05)

    assert set(statuses) <= {200, 503}, statuses
    for refusal in refusals:
        body = refusal.json()
        assert int(refusal.headers["retry-after"]) >= 1
        assert "limits store" in body["message"] and token not in refusal.text, body
    assert cli(replica, "ROLE").startswith("master")
    # Every answer settled after the promotion is counted once; none twice: what the new master has is
    # the five from before, plus at most one settlement for each answer since.
    answered_after = len(statuses) - 1 - max(n for n, status in enumerate(statuses) if status != 200)
    deadline = time.monotonic() + 10
    while int(cli(replica, "GET", spend_key) or 0) < (5 + answered_after) * ANSWER_NANOS:
        assert time.monotonic() < deadline, (cli(replica, "GET", spend_key), statuses)
        time.sleep(0.05)
    time.sleep(1.5)  # allowances given back, late settlements landed
    assert int(cli(replica, "GET", spend_key)) <= (5 + statuses.count(200)) * ANSWER_NANOS, statuses
