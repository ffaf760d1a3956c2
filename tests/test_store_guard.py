"""The ledger's store failing for real, driven directly: a redis-server stopped, frozen (SIGSTOP) and
started again; a SQLite file another process keeps write-locked. Every step answers within its deadline,
a store that is down is told at once, the event loop never stops, and the store is seen again when it is
back, without a step of a client's."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio

from plugin.limits.guard import PROBE_COUNTER, StoreGuard
from plugin.limits.ledger import Budget, Limits, RedisLedger, SqliteLedger, StoreUnavailable

from .redis_servers import FaultyRedis
from .test_ledger import CENT

LIMITS = Limits(requests=("mpilot:{key:guard}:rpm", 1000),
                budget=Budget("mpilot:{key:guard}:nanos", 100 * CENT, CENT, 60))


@pytest.fixture
def faulty_redis(tmp_path: Path) -> Iterator[FaultyRedis]:
    server = FaultyRedis(tmp_path / "redis").start()
    yield server
    server.stop()


class Changes:
    def __init__(self) -> None:
        self.seen: list[tuple[bool, str | None]] = []

    def __call__(self, up: bool, reason: str | None) -> None:
        self.seen.append((up, reason))


def redis_guard(server: FaultyRedis, changes: Changes, deadline: float = 0.5) -> StoreGuard:
    client = redis.asyncio.Redis(host="127.0.0.1", port=server.port, socket_connect_timeout=5)
    return StoreGuard(RedisLedger(client), deadline, changes, probe_every=0.2)


async def timed(step: object) -> tuple[float, BaseException | object]:
    started = time.monotonic()
    try:
        result: object = await step  # type: ignore[misc]
    except StoreUnavailable as error:
        result = error
    return time.monotonic() - started, result


async def until(check: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not within {seconds} s"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("fault", ["stopped", "frozen"])
def test_a_failed_redis_answers_within_the_deadline_then_at_once_and_is_seen_again(
        faulty_redis: FaultyRedis, fault: str) -> None:
    changes = Changes()

    async def scenario() -> None:
        guard = redis_guard(faulty_redis, changes)
        assert (await guard.admit(LIMITS)).admitted
        assert changes.seen == [(True, None)]  # the first answer
        faulty_redis.down() if fault == "stopped" else faulty_redis.freeze()
        took, failed = await timed(guard.admit(LIMITS))
        assert isinstance(failed, StoreUnavailable) and took < 0.5 + 0.3, (took, failed)
        assert "redis ledger" in str(failed).lower()
        assert not guard.up and changes.seen[-1][0] is False
        # Down: every step fails at once, for every caller, and the outage is told once.
        results = await asyncio.gather(*(timed(guard.admit(LIMITS)) for _ in range(20)))
        assert all(isinstance(result, StoreUnavailable) and took < 0.05 for took, result in results), results
        assert [up for up, _ in changes.seen] == [True, False]
        assert not await guard.ready()
        faulty_redis.up() if fault == "stopped" else faulty_redis.thaw()
        await until(lambda: guard.up, 5)  # the guard's own probe, no step of a client's
        assert [up for up, _ in changes.seen] == [True, False, True]
        assert (await guard.admit(LIMITS)).admitted and await guard.ready()
        assert int(await guard.ledger.rate_used(PROBE_COUNTER)) >= 1

    asyncio.run(scenario())


def test_a_step_that_does_not_answer_counts_nothing_it_did_not_do(faulty_redis: FaultyRedis) -> None:
    """A refused step counts nothing: the spend after the outage is what the steps that answered added."""
    async def scenario() -> None:
        guard = redis_guard(faulty_redis, Changes())
        await guard.settle(None, 7, [("mpilot:{key:guard}:nanos", 60)], "before")
        faulty_redis.down()
        with pytest.raises(StoreUnavailable):
            await guard.settle(None, 5, [("mpilot:{key:guard}:nanos", 60)], "during")
        faulty_redis.up()
        await until(lambda: guard.up, 5)
        assert await guard.spent("mpilot:{key:guard}:nanos") == 7  # kept over the restart, nothing added

    asyncio.run(scenario())


LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
"""


def hold_write_lock(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process (a backup, an admin's sqlite3 shell) holding the file's write lock."""
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(path), str(seconds)], stdout=subprocess.PIPE,
                              text=True)
    assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
    return locker


def test_a_write_locked_sqlite_file_never_stops_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    SqliteLedger.check(path)
    changes = Changes()

    async def scenario() -> None:
        guard = StoreGuard(SqliteLedger(path), 0.5, changes, probe_every=0.2)
        assert (await guard.admit(LIMITS)).admitted
        gaps: list[float] = []
        ticking = True

        async def tick() -> None:  # what every other request of the proxy needs: the loop's turns
            last = time.monotonic()
            while ticking:
                await asyncio.sleep(0.005)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        ticker = asyncio.create_task(tick())
        locker = hold_write_lock(path, 2.0)
        took, failed = await timed(guard.admit(LIMITS))
        assert isinstance(failed, StoreUnavailable) and 0.4 < took < 0.8, (took, failed)
        took, failed = await timed(guard.settle(None, 5, [("mpilot:{key:guard}:nanos", 60)], "during"))
        assert isinstance(failed, StoreUnavailable) and took < 0.05
        await asyncio.to_thread(locker.wait, 10)
        await until(lambda: guard.up, 3)
        ticking = False
        await ticker
        assert max(gaps) < 0.1, max(gaps)  # the loop went on while the file was locked
        assert (await guard.admit(LIMITS)).admitted
        assert await guard.spent("mpilot:{key:guard}:nanos") == 0
        assert [up for up, _ in changes.seen] == [True, False, True]
        assert "sqlite ledger" in (changes.seen[1][1] or "").lower()

    asyncio.run(scenario())


def test_without_a_guard_a_locked_file_is_waited_for_then_refused(tmp_path: Path) -> None:
    """The ledger's own bound (`busy_seconds`), and a step that gets the lock once it is free."""
    path = tmp_path / "ledger.sqlite3"
    SqliteLedger.check(path)

    async def scenario() -> None:
        ledger = SqliteLedger(path, busy_seconds=0.3)
        locker = hold_write_lock(path, 0.8)
        took, failed = await timed(ledger.admit(LIMITS))
        assert isinstance(failed, StoreUnavailable) and 0.25 < took < 0.6, (took, failed)
        assert "locked" in str(failed)
        patient = SqliteLedger(path, busy_seconds=5)
        took, admitted = await timed(patient.admit(LIMITS))
        assert not isinstance(admitted, BaseException) and admitted.admitted and took < 1.5, (took, admitted)  # type: ignore[union-attr]
        locker.wait(5)

    asyncio.run(scenario())


def test_a_file_that_cannot_be_opened_is_not_waited_for(tmp_path: Path) -> None:
    async def scenario() -> None:
        ledger = SqliteLedger(tmp_path / "no" / "such" / "folder" / "ledger.sqlite3", busy_seconds=5)
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError):
            await ledger.admit(LIMITS)
        assert time.monotonic() - started < 0.5

    asyncio.run(scenario())


def test_a_settlement_before_its_answer_never_waits_for_a_lock_and_is_counted_once_it_is_free(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key without limits, answered while another process holds the SQLite file: its settlement (made
    before the answer goes out) neither waits for the lock nor calls the store down; it is journalled and
    counted a moment after the lock is released."""
    from datetime import UTC, datetime

    from plugin import host
    from plugin.auth.hook import MPilotAuth
    from plugin.limits.ledger import patience, to_nanos

    path = tmp_path / "ledger.sqlite3"
    SqliteLedger.check(path)
    monkeypatch.setattr(host, "ledger_file", lambda name: tmp_path / name)
    token = "sk-bf-" + "a" * 40
    auth = MPilotAuth({"virtual_keys": [{"key": token, "user_id": "u"}]})
    auth._ledger = StoreGuard(SqliteLedger(path), 1.0, auth._store_changed, probe_every=0.2)
    (key_id, key), = auth.keys.items()

    async def scenario() -> None:
        locker = hold_write_lock(path, 1.0)
        started = time.monotonic()
        with patience(False):
            await auth.settle(key_id, None, 0.25, 7, "call-1")
        assert time.monotonic() - started < 0.1  # the answer was not held
        assert auth.ledger().up and auth.journal().pending == 1
        await asyncio.to_thread(locker.wait, 10)
        await until(lambda: auth.journal().pending == 0, 5)
        counter = key.spend_counter(datetime.now(UTC))
        assert await auth.ledger().spent(counter) == to_nanos(0.25)
        # Patient, as a stream's settlement after its end is: it waits for the lock instead.
        locker = hold_write_lock(path, 0.3)
        started = time.monotonic()
        await auth.settle(key_id, None, 0.25, 7, "call-2")
        assert 0.2 < time.monotonic() - started < 1.0 and auth.journal().pending == 0
        assert await auth.ledger().spent(counter) == 2 * to_nanos(0.25)
        await asyncio.to_thread(locker.wait, 10)

    asyncio.run(scenario())
