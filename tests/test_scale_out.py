"""Two proxies, one Redis, nginx in front, on loopback: limits hold in total, spend survives a kill,
and a rolling restart under load fails no request silently. Load is bounded in count and time."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from .cluster import LocalCluster, virtual_key_jwt

PATH = "/litellm/cohere/v2/chat"
BODY = {"model": "demo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}
COST = 10 * 0.000001 + 20 * 0.000002  # the demo model's answer: 10 tokens in, 20 out (config.yaml prices)
RPM_KEY, BUDGET_KEY, LOAD_KEY, ROLL_KEY = (f"sk-bf-lb-{name}-0123456789abcdef0123456789abcdef"
                                          for name in ("rpm", "budget", "load", "roll"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    keys = [{"key": RPM_KEY, "rpm_limit": 6}, {"key": BUDGET_KEY, "max_budget": COST * 2.4},
            {"key": LOAD_KEY}, {"key": ROLL_KEY}]
    running = LocalCluster(Path(tmp_path_factory.mktemp("cluster")), keys).start()
    yield running
    running.stop()


def ask(cluster: LocalCluster, token: str, client: httpx.Client | None = None) -> httpx.Response:
    return (client or httpx).post(f"{cluster.url}{PATH}", json=BODY, headers={"Authorization": f"Bearer {token}"},
                                  timeout=30)


def spend(cluster: LocalCluster, token: str) -> float:
    response = httpx.get(f"{cluster.url}/mpilot/key/info", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["spend"]


def test_rpm_limit_holds_in_total_across_both(cluster: LocalCluster) -> None:
    tokens = [RPM_KEY, virtual_key_jwt(RPM_KEY)]  # the raw key and its JWT share the limit too
    responses = [ask(cluster, tokens[n % 2]) for n in range(10)]
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 6 and statuses.count(429) == 4, statuses
    served = {r.headers.get("x-served-by") for r in responses if r.status_code == 200}
    assert len(served) == 2  # both proxies answered


def test_budget_spent_on_one_is_refused_on_the_other(cluster: LocalCluster) -> None:
    answered = 0
    for _ in range(3):
        response = ask(cluster, BUDGET_KEY)
        if response.status_code == 402:
            break
        assert response.status_code == 200
        answered += 1
        deadline = time.monotonic() + 10
        while spend(cluster, BUDGET_KEY) < answered * COST * 0.999:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    # Each call is reserved as at most $0.00005 (max_tokens 20): $0 -> $0.00005 -> $0.0001, and a third
    # would not fit the $0.00012 budget.
    assert answered == 2
    assert spend(cluster, BUDGET_KEY) <= COST * 2.4
    refusals = [ask(cluster, BUDGET_KEY) for _ in range(4)]
    assert [r.status_code for r in refusals] == [402] * 4
    assert len({r.headers.get("x-served-by") for r in refusals}) == 2  # refused by both


@dataclass
class Load:
    """Worker threads sending requests through nginx until stopped (at most `limit` requests, 90 s)."""

    cluster: LocalCluster
    token: str
    workers: int = 4
    limit: int = 20_000
    outcomes: Counter = field(default_factory=Counter)
    served_by: Counter = field(default_factory=Counter)
    silent_failures: list[str] = field(default_factory=list)
    keep_alive: bool = True  # reuse connections to nginx between requests

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run) for _ in range(self.workers)]
        self._deadline = time.monotonic() + 90

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _run(self) -> None:
        limits = httpx.Limits() if self.keep_alive else httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(timeout=30, limits=limits) as client:
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                with self._lock:
                    if sum(self.outcomes.values()) + len(self.silent_failures) >= self.limit:
                        return
                try:
                    response = ask(self.cluster, self.token, client)
                    clean = response.status_code == 200 or (
                        response.headers.get("content-type", "").startswith("application/json")
                        and "message" in response.json())
                    with self._lock:
                        self.outcomes[response.status_code if clean else "unclean"] += 1
                        self.served_by[response.headers.get("x-served-by")] += 1
                except httpx.HTTPError as error:
                    with self._lock:
                        self.silent_failures.append(type(error).__name__)

    def forget_served_by(self) -> None:
        with self._lock:
            self.served_by.clear()

    def answered(self) -> int:
        with self._lock:
            return self.outcomes[200]


def wait_until(predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_killing_one_proxy_under_load(cluster: LocalCluster) -> None:
    with Load(cluster, LOAD_KEY) as load:
        wait_until(lambda: load.answered() >= 20, 30)
        cluster.kill(0)  # SIGKILL, mid-run
        killed_at = load.answered()
        wait_until(lambda: load.answered() >= killed_at + 30, 30)  # the other keeps answering
        cluster.proxies[0].start()  # restarts...
        rejoined_at = load.answered()
        wait_until(lambda: load.answered() >= rejoined_at + 30, 30)
    # Only requests in flight on the killed proxy can fail, some cut mid-answer (the client sees the
    # connection drop); every other answer is a 200 or nginx's clean JSON 503.
    assert len(load.silent_failures) <= load.workers, load.silent_failures
    assert set(load.silent_failures) <= {"RemoteProtocolError", "ReadError"}, load.silent_failures
    assert load.outcomes["unclean"] == 0
    assert set(load.outcomes) <= {200, 503}, load.outcomes
    # Every answered request has its spend, but for answers the killed proxy had sent in the millisecond
    # before SIGKILL (on Redis a settlement lands as the answer goes out: at most one per client worker);
    # nothing unanswered is charged beyond the cut-off ones.
    answered, cut = load.outcomes[200], load.outcomes[503] + len(load.silent_failures)
    wait_until(lambda: spend(cluster, LOAD_KEY) >= (answered - load.workers) * COST * 0.999, 10)
    assert spend(cluster, LOAD_KEY) <= (answered + cut + load.workers) * COST * 1.001
    print(f"kill: {dict(load.outcomes)} answered/refused, {load.silent_failures} cut, spend {spend(cluster, LOAD_KEY)}")
    # ...and rejoins: nginx sends it requests again once its fail_timeout has passed.
    restarted = f"127.0.0.1:{cluster.proxies[0].port}"
    wait_until(lambda: ask(cluster, LOAD_KEY).headers.get("x-served-by") == restarted, 20)


def test_rolling_restart_under_load(cluster: LocalCluster) -> None:
    # A connection per request: draining is an nginx reload here, and a reloading nginx closes its old
    # workers' idle keep-alive connections, which a client may be sending on at that very moment (seen
    # as RemoteProtocolError in 2 of ~12 runs). That race is between the client and nginx's reload,
    # which real deployments do not use to drain (compose and Kubernetes route around a stopping
    # replica); what is tested is that the proxies' restart loses nothing.
    with Load(cluster, virtual_key_jwt(ROLL_KEY), keep_alive=False) as load:
        wait_until(lambda: load.answered() >= 20, 30)
        for n in range(len(cluster.proxies)):
            cluster.rolling_restart(n)  # out of nginx, SIGTERM, start, healthy, back into nginx
            back = f"127.0.0.1:{cluster.proxies[n].port}"
            wait_until(lambda back=back: load.served_by[back] > 0 and load.answered() > 0, 30)
            load.forget_served_by()
    assert load.silent_failures == [], load.silent_failures
    assert load.outcomes["unclean"] == 0
    assert load.outcomes[200] >= 40
    # Drained before it stops, a proxy is sent nothing while it restarts: no request is refused.
    assert set(load.outcomes) == {200}, load.outcomes
    print(f"rolling restart: {dict(load.outcomes)} answered/refused")
