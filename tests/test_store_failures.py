"""The limits store failing under real proxies: a redis-server stopped, frozen (SIGSTOP) and started
again on the same port; a proxy restarted during the outage; the SQLite ledger file write-locked by
another process. Limited keys get a 503 with Retry-After within the deadline (Cohere's shape on the
plugin's routes, LiteLLM's on LiteLLM's), the master key and keys without limits go on, the outage is
logged once, `/mpilot/health/readiness` says so, and every answered call's spend is counted once the
store is back (`mpilot.limits.on_store_down: refuse`, the default, and `local`)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from plugin.limits.allowance import ALLOWANCE_SECONDS

from .fake_upstream import FakeUpstream
from .harness import MASTER_KEY, ProxyProcess, proxy_config_for, virtual_key
from .jwt_issuer import JwksServer
from .redis_servers import FaultyRedis
from .test_store_guard import hold_write_lock

PATH = "/litellm/cohere/v2/chat"
ANSWER = Decimal("0.000025")  # what the fake upstream's answer costs
LIMITED, OPEN, ALONE = virtual_key("cfg", "outage"), virtual_key("cfg", "open"), virtual_key("cfg", "alone")
DOWN_LINE = "MPilot limits store unavailable"
BOUND = 5.0  # seconds: the bound on an answer while the store has failed (deadline: 1 s)


def outlive_allowances() -> None:
    """A busy key far from its limits is admitted from a batch its proxy took before the fault, for a
    second at most (`allowance.ALLOWANCE_SECONDS`): those requests were counted then."""
    time.sleep(ALLOWANCE_SECONDS + 0.1)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultyRedis]:
    server = FaultyRedis(tmp_path_factory.mktemp("faulty-redis")).start()
    yield server
    server.stop()


def start_proxy(upstream: FakeUpstream, jwks: JwksServer, workdir: Path, redis: FaultyRedis | None,
                **limits: Any) -> ProxyProcess:
    config = proxy_config_for(upstream, jwks_url=jwks.url)
    if redis is not None:
        config["general_settings"]["coordination_redis"] = {"host": "127.0.0.1", "port": redis.port}
    config["mpilot"]["limits"].update(limits)
    return ProxyProcess(config, workdir).start()


@pytest.fixture(scope="module")
def refusing(upstream: FakeUpstream, jwks: JwksServer, store: FaultyRedis,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    proxy = start_proxy(upstream, jwks, tmp_path_factory.mktemp("refusing"), store)
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def alone(upstream: FakeUpstream, jwks: JwksServer, store: FaultyRedis,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    proxy = start_proxy(upstream, jwks, tmp_path_factory.mktemp("alone"), store, on_store_down="local")
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def on_sqlite(upstream: FakeUpstream, jwks: JwksServer, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[ProxyProcess]:
    proxy = start_proxy(upstream, jwks, tmp_path_factory.mktemp("sqlite"), None)
    yield proxy
    proxy.stop()


def chat(proxy: ProxyProcess, token: str, route: str = PATH) -> tuple[httpx.Response, float]:
    body: dict[str, Any] = {"model": "fake", "messages": [{"role": "user", "content": "hi"}]}
    started = time.monotonic()
    response = httpx.post(proxy.url + route, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return response, time.monotonic() - started


def spend(proxy: ProxyProcess, token: str) -> httpx.Response:
    return httpx.get(f"{proxy.url}/mpilot/key/info", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def readiness(proxy: ProxyProcess) -> httpx.Response:
    return httpx.get(f"{proxy.url}/mpilot/health/readiness", timeout=10)


def wait_until(what: str, check: Any, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.1)


def spent(proxy: ProxyProcess, token: str) -> Decimal:
    response = spend(proxy, token)
    assert response.status_code == 200, response.text
    return Decimal(str(response.json()["spend"]))


def settled(proxy: ProxyProcess, token: str, expected: Decimal) -> bool:
    response = spend(proxy, token)
    return response.status_code == 200 and Decimal(str(response.json()["spend"])) == expected


def assert_store_refusal(response: httpx.Response, token: str) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert "limits store" in response.text and token not in response.text


def test_redis_stopped_refuses_limited_keys_in_time_and_counts_every_answer_once_it_is_back(
        refusing: ProxyProcess, store: FaultyRedis, fake: FakeUpstream) -> None:
    assert chat(refusing, LIMITED)[0].status_code == 200
    open_before = spent(refusing, OPEN)
    assert readiness(refusing).json()["limits_store"] == {"kind": "redis", "state": "up", "reason": None}
    logged = len(refusing.log())
    store.down()
    outlive_allowances()
    try:
        for _ in range(5):
            response, took = chat(refusing, LIMITED)
            assert_store_refusal(response, LIMITED)
            assert set(response.json()) >= {"id", "message"} and took < BOUND, (took, response.text)
        response, took = chat(refusing, LIMITED, "/v1/chat/completions")  # LiteLLM's own route: its shape
        assert_store_refusal(response, LIMITED)
        assert "error" in response.json() and took < BOUND
        answered = [chat(refusing, OPEN)[0].status_code for _ in range(3)]  # no limit: never waits on it
        assert answered == [200] * 3
        master, took = chat(refusing, MASTER_KEY)
        assert master.status_code == 200 and took < BOUND
        info = spend(refusing, OPEN)
        assert_store_refusal(info, OPEN)
        assert "message" in info.json()
        ready = readiness(refusing)
        assert ready.status_code == 503 and ready.json()["limits_store"]["state"] == "down"
        assert ready.json()["journal"]["pending"] == 3
        assert "ConnectionError" in ready.json()["limits_store"]["reason"]
    finally:
        store.up()
    wait_until("ready again", lambda: readiness(refusing).status_code == 200)
    wait_until("the outage's answers counted", lambda: settled(refusing, OPEN, open_before + 3 * ANSWER))
    assert chat(refusing, LIMITED)[0].status_code == 200
    log = refusing.log()[logged:]
    assert log.count(DOWN_LINE) == 1, log[-3000:]  # once per outage, not once per request
    assert "3 journalled settlements counted" in log and LIMITED not in log and OPEN not in log
    assert readiness(refusing).json()["journal"]["pending"] == 0


def test_redis_frozen_answers_within_the_deadline_and_recovers_on_sigcont(
        refusing: ProxyProcess, store: FaultyRedis, fake: FakeUpstream) -> None:
    assert chat(refusing, LIMITED)[0].status_code == 200
    store.freeze()
    outlive_allowances()
    try:
        times = []
        for _ in range(3):
            response, took = chat(refusing, LIMITED)
            assert_store_refusal(response, LIMITED)
            times.append(took)
        assert max(times) < BOUND, times
        master, took = chat(refusing, MASTER_KEY)
        assert master.status_code == 200 and took < BOUND, took
        assert "Redis ledger: no answer within 1 s" in readiness(refusing).json()["limits_store"]["reason"]
    finally:
        store.thaw()
    wait_until("limited keys answered again", lambda: chat(refusing, LIMITED)[0].status_code == 200)


def test_a_proxy_restarted_during_an_outage_counts_what_it_journalled(
        refusing: ProxyProcess, store: FaultyRedis, fake: FakeUpstream) -> None:
    before = spent(refusing, OPEN)
    store.down()
    try:
        assert [chat(refusing, OPEN)[0].status_code for _ in range(2)] == [200, 200]
        wait_until("journalled", lambda: readiness(refusing).json()["journal"]["pending"] == 2)
        refusing.stop()
        refusing.start()  # the same folder and config: a new process, which finds its predecessor's journal
        assert readiness(refusing).status_code == 503
    finally:
        store.up()
    wait_until("ready again", lambda: readiness(refusing).status_code == 200)
    wait_until("the dead process's journal counted", lambda: settled(refusing, OPEN, before + 2 * ANSWER))
    assert not [path for path in (refusing.workdir / ".mpilot-journal").glob("journal-*.jsonl")
                if path.stat().st_size], "a journal still holds settlements"


def test_on_store_down_local_enforces_a_budget_alone_and_counts_its_spend_afterwards(
        alone: ProxyProcess, store: FaultyRedis, fake: FakeUpstream) -> None:
    assert chat(alone, ALONE)[0].status_code == 200  # the proxy now knows what is left of the budget
    wait_until("settled", lambda: settled(alone, ALONE, ANSWER))
    logged = len(alone.log())
    store.down()
    try:
        statuses = [chat(alone, ALONE)[0].status_code for _ in range(6)]
        # Three more answers fit the budget of four; at least one was reserved as the bound, never more.
        assert statuses[0] == 200 and set(statuses) == {200, 402} and statuses.count(200) <= 3, statuses
        assert statuses == sorted(statuses), statuses  # refused once full, and from then on
        unseen, _ = chat(alone, LIMITED)  # a budget this proxy never saw: nothing to count from
        assert_store_refusal(unseen, LIMITED)
        assert readiness(alone).json()["on_store_down"] == "local"
    finally:
        store.up()
    answered = 1 + statuses.count(200)
    wait_until("the outage's answers counted", lambda: settled(alone, ALONE, answered * ANSWER))
    assert "admitted by this proxy alone" in alone.log()[logged:]
    assert chat(alone, ALONE)[0].status_code == (200 if answered < 4 else 402)


def test_a_write_locked_sqlite_ledger_never_freezes_the_proxy(on_sqlite: ProxyProcess, fake: FakeUpstream) -> None:
    assert chat(on_sqlite, LIMITED)[0].status_code == 200
    open_before = spent(on_sqlite, OPEN)
    locker = hold_write_lock(on_sqlite.workdir / ".mpilot-ledger.sqlite3", 8.0)
    lively, master, limited, answered = [], [], [], 0
    try:
        while locker.poll() is None:
            started = time.monotonic()
            assert httpx.get(f"{on_sqlite.url}/health/liveliness", timeout=10).status_code == 200
            lively.append(time.monotonic() - started)
            response, took = chat(on_sqlite, MASTER_KEY)
            assert response.status_code == 200
            master.append(took)
            response, took = chat(on_sqlite, LIMITED)
            assert response.status_code in (200, 503), response.text
            if response.status_code == 503:
                assert_store_refusal(response, LIMITED)
            limited.append((response.status_code, took))
            answered += chat(on_sqlite, OPEN)[0].status_code == 200
    finally:
        locker.wait(15)
    # Before: every request waited ~5 s inside sqlite3 on the event loop's thread.
    assert statistics.median(lively) < 0.1 and max(lively) < 1.0, lively
    assert statistics.median(master) < 0.1 and max(master) < 1.5, master
    assert 503 in [status for status, _ in limited] and max(took for _, took in limited) < BOUND, limited
    wait_until("limited keys answered again", lambda: chat(on_sqlite, LIMITED)[0].status_code == 200)
    wait_until("every answer counted", lambda: settled(on_sqlite, OPEN, open_before + answered * ANSWER))
    assert on_sqlite.log().count(DOWN_LINE) == 1
