"""A key's limits hold at 20 requests at once, and across the workers of one proxy (`--num_workers 2`,
no Redis: the SQLite ledger beside the config). Two proxies sharing Redis: tests/test_shared_redis.py."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from .fake_upstream import FakeUpstream, Reply
from .harness import SOURCES, ProxyProcess, proxy_config_for, virtual_key
from .jwt_issuer import JwksServer

PATH = "/litellm/cohere/v2/chat"
USER = [{"role": "user", "content": "hi"}]


def ask(url: str, token: str, **body: Any) -> httpx.Response:
    return httpx.post(url + PATH, json={"model": "fake", "messages": USER, **body},
                      headers={"Authorization": f"Bearer {token}"}, timeout=60)


def all_at_once(url: str, token: str, count: int = 20, **body: Any) -> list[httpx.Response]:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: ask(url, token, **body), range(count)))


def spend(url: str, token: str) -> float:
    response = httpx.get(f"{url}/mpilot/key/info", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["spend"]


def settled_spend(url: str, token: str, expected: float) -> float:
    deadline = time.monotonic() + 10
    while (seen := spend(url, token)) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return seen


@pytest.mark.parametrize("source", SOURCES)
def test_twenty_at_once_get_only_what_the_budget_fits(proxy: ProxyProcess, fake: FakeUpstream, source: str) -> None:
    """$0.000075 fits three answers of $0.000025; with max_tokens set each is reserved as at most that."""
    fake.script(*[Reply(delay=0.5)] * 20)  # all twenty are in flight together
    token = virtual_key(source, "three")
    statuses = Counter(r.status_code for r in all_at_once(proxy.url, token, max_tokens=7))
    assert statuses == {200: 3, 402: 17}, statuses
    assert len(fake.requests) == 3
    assert settled_spend(proxy.url, token, 0.000075) == 0.000075  # not a nano-dollar over


DOCUMENTS = [{"id": f"doc-{i}", "data": {"text": "word " * 400}} for i in range(5)]  # 2,000 tokens, at least


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("source", SOURCES)
def test_documents_are_reserved_with_the_messages(proxy: ProxyProcess, fake: FakeUpstream, source: str,
                                                  stream: bool) -> None:
    """A RAG call's documents are input the provider bills: its reservation counts them, so twenty calls
    at once against a budget of three and a half answers (2,000 input tokens each) give three."""
    fake.script(*[Reply(delay=0.5, prompt_tokens=2000)] * 20)
    token = virtual_key(source, "documents-stream" if stream else "documents")
    responses = all_at_once(proxy.url, token, max_tokens=7, documents=DOCUMENTS, stream=stream)
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 3, 402: 17}, statuses
    assert len(fake.requests) == 3
    assert all("word word" in str(request.body["messages"]) for request in fake.requests)  # what was reserved for
    assert settled_spend(proxy.url, token, 3 * 0.002014) == pytest.approx(3 * 0.002014, abs=1e-12)


@pytest.mark.parametrize("source", SOURCES)
def test_batches_count_exactly_what_was_admitted(proxy: ProxyProcess, fake: FakeUpstream, source: str) -> None:
    """A key far from its limits is admitted in batches (plugin/limits/allowance.py): once the allowances end,
    the ledger counts exactly the twenty requests and their spend, and holds nothing."""
    fake.script(*[Reply(delay=0.2)] * 20)
    token = virtual_key(source, "busy")
    assert Counter(r.status_code for r in all_at_once(proxy.url, token)) == {200: 20}
    counter = f"mpilot:{{key:{hashlib.sha256(token.encode()).hexdigest()}}}:nanos"
    ledger = proxy.workdir / ".mpilot-ledger.sqlite3"

    def read(query: str, *more: object) -> Any:
        with sqlite3.connect(ledger, timeout=5) as db:
            return db.execute(query, (counter, *more)).fetchone()[0]

    deadline = time.monotonic() + 10
    while read("SELECT COUNT(*) FROM holds WHERE counter = ? AND expires_at > ?", time.time()):
        assert time.monotonic() < deadline, "the batches' holds were not given back"
        time.sleep(0.1)
    assert read("SELECT value FROM counters WHERE name = ?") == 20 * 25_000
    assert read("SELECT SUM(amount) FROM rate WHERE counter = replace(?, 'nanos', 'rpm')") == 20


@pytest.mark.parametrize("source", SOURCES)
def test_twenty_at_once_get_only_the_rpm_limit(proxy: ProxyProcess, fake: FakeUpstream, source: str) -> None:
    fake.script(*[Reply(delay=0.2)] * 20)
    responses = all_at_once(proxy.url, virtual_key(source, "burst"))  # 5 a minute
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 5, 429: 15}, statuses
    refused = next(r for r in responses if r.status_code == 429)
    assert "limit of 5 requests per minute" in refused.json()["message"]
    assert 0 < int(refused.headers["retry-after"]) <= 60


# --- one proxy, two workers, no Redis -------------------------------------------------------------------

WORKER_KEYS = {"budget": {"max_budget": 0.00015}, "rpm": {"rpm_limit": 4}}  # six answers; four a minute


def worker_key(name: str) -> str:
    return virtual_key("workers", name)


@pytest.fixture(scope="module")
def two_workers(upstream: FakeUpstream, jwks: JwksServer,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    config = proxy_config_for(upstream, jwks_url=jwks.url)
    config["mpilot"]["virtual_keys"] = [{"key": worker_key(name), **fields} for name, fields in WORKER_KEYS.items()]
    process = ProxyProcess(config, Path(tmp_path_factory.mktemp("workers")), args=("--num_workers", "2")).start()
    deadline = time.monotonic() + 90  # the first worker answers health checks before the second is up
    while process.log().count("Application startup complete") < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    yield process
    process.stop()


def descendants(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(child) for child in (task / "children").read_text().split()]
    return children + [grandchild for child in children for grandchild in descendants(child)]


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_two_workers_are_two_processes_sharing_one_ledger(two_workers: ProxyProcess) -> None:
    assert two_workers.log().count("Application startup complete") == 2, two_workers.log()[-3000:]
    assert (two_workers.workdir / ".mpilot-ledger.sqlite3").exists()


def test_a_budget_holds_across_workers(two_workers: ProxyProcess, fake: FakeUpstream) -> None:
    token = worker_key("budget")
    workers = descendants(two_workers.pid)
    before = {pid: cpu_ticks(pid) for pid in workers}
    fake.script(*[Reply(delay=0.5)] * 20)
    statuses = Counter(r.status_code for r in all_at_once(two_workers.url, token, max_tokens=7))
    assert statuses == {200: 6, 402: 14}, statuses
    busy = [pid for pid in workers if cpu_ticks(pid) - before[pid] >= 2]
    assert len(busy) >= 2, "the requests did not reach both workers"
    # Whichever worker answers, it reads the same spend.
    assert {settled_spend(two_workers.url, token, 0.00015) for _ in range(6)} == {0.00015}


def test_an_rpm_limit_holds_across_workers(two_workers: ProxyProcess, fake: FakeUpstream) -> None:
    fake.script(*[Reply(delay=0.2)] * 20)
    workers = descendants(two_workers.pid)
    before = {pid: cpu_ticks(pid) for pid in workers}
    statuses = Counter(r.status_code for r in all_at_once(two_workers.url, worker_key("rpm")))
    assert statuses == {200: 4, 429: 16}, statuses
    assert len([pid for pid in workers if cpu_ticks(pid) - before[pid] >= 2]) >= 2, "one worker took them all"
