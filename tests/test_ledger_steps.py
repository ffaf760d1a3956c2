"""The ledger's steps at their edges, in both stores (SQLite, a real redis-server): what each admission and
refusal says, exactly; one nano-dollar, one request; settlements with nothing to count; give-backs of
nothing; the sweep and purge schedule; a file of an earlier release; a store that is locked or down; the
rename of earlier counters; where a name's hash tag is. The Redis Cluster runs of the same steps:
tests/test_ledger.py (the Python side is the same)."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot

from plugin.limits.ledger import (
    RENAMED_MARK,
    Admission,
    Budget,
    Ledger,
    Limits,
    RedisLedger,
    SqliteLedger,
    StoreUnavailable,
    hash_tag,
)

from .loopback import free_port
from .test_ledger import CENT, Clock, counter

T0 = 1_800_000_000.0  # Clock's start
HUGE = 10**6 * CENT


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """(kind, make) where make(clock) -> a ledger."""
    if request.param == "sqlite":
        yield "sqlite", lambda clock: SqliteLedger(tmp_path / "ledger.sqlite3", clock=clock)
    else:
        port = request.getfixturevalue("redis_port")
        yield "redis", lambda clock: RedisLedger(redis.asyncio.Redis(port=port), clock=clock)


async def held(ledger: Ledger, name: str) -> int:
    """What calls in flight hold of budget `name` (a refused admission reads it)."""
    admission = await ledger.admit(Limits(budget=Budget(name, HUGE, HUGE + 1, 60)))
    assert admission.refused_by == "budget"
    return admission.held


def rows(path: Path, table: str, column: str, name: str) -> int:
    with sqlite3.connect(path) as db:
        return db.execute(f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", (name,)).fetchone()[0]


# --- what an admission says ------------------------------------------------------------------------------

def test_each_refusal_and_admission_says_exactly_what_it_saw(store: tuple[str, Any]) -> None:
    clock = Clock()
    ledger: Ledger = store[1](clock)
    rpm, tpm, spend = counter(), counter(), counter()

    async def run() -> list[Admission]:
        seen = [await ledger.admit(Limits(requests=(rpm, 1)))]
        seen.append(await ledger.admit(Limits(requests=(rpm, 1))))
        await ledger.add_to_rate(tpm, 36)
        seen.append(await ledger.admit(Limits(tokens=(tpm, 36))))
        seen.append(await ledger.admit(Limits(requests=(counter(), 0))))  # nothing counted: retry in a second
        hold = await ledger.admit(Limits(budget=Budget(spend, 5 * CENT, 3 * CENT, 60)))
        assert hold.reservation is not None
        await ledger.settle(None, 2 * CENT, [(spend, 3600)])
        seen.append(await ledger.admit(Limits(budget=Budget(spend, 5 * CENT, 0, 60))))  # 2 + 3 of 5: no room
        clock.now = T0 + 59.5  # the second counted in leaves the minute in half a second
        seen.append(await ledger.admit(Limits(requests=(rpm, 1))))
        return seen

    assert asyncio.run(run()) == [
        Admission(None, granted=1, counted_at=int(T0)),
        Admission("requests", used=1, retry_after=60),
        Admission("tokens", used=36, retry_after=60),
        Admission("requests", used=0, retry_after=1),
        Admission("budget", spent=2 * CENT, held=3 * CENT),
        Admission("requests", used=1, retry_after=1),
    ]


def test_no_limits_admit_without_counting(store: tuple[str, Any]) -> None:
    ledger: Ledger = store[1](Clock())
    admission = asyncio.run(ledger.admit(Limits()))
    assert (admission.admitted, admission.granted, admission.reservation, admission.spent, admission.held) \
        == (True, 1, None, 0, 0)


def test_a_free_request_is_refused_once_spent_and_held_reach_the_budget(store: tuple[str, Any]) -> None:
    ledger: Ledger = store[1](Clock())
    spend = counter()

    async def run() -> tuple[Admission, Admission, Admission]:
        free = await ledger.admit(Limits(budget=Budget(spend, 5 * CENT, 0, 60)))  # room: reserves nothing
        one = await ledger.admit(Limits(budget=Budget(spend, 5 * CENT, 1, 60)))  # one nano-dollar is a hold
        await ledger.settle(one.reservation, 1, [(spend, 3600)])
        await ledger.admit(Limits(budget=Budget(spend, 5 * CENT, 3 * CENT, 60)))
        await ledger.settle(None, 2 * CENT - 1, [(spend, 3600)])
        return free, one, await ledger.admit(Limits(budget=Budget(spend, 5 * CENT, 0, 60)))

    free, one, full = asyncio.run(run())
    assert free == Admission(None, granted=1, counted_at=free.counted_at)
    assert one.admitted and one.reservation is not None and one.held == 0
    assert full == Admission("budget", spent=2 * CENT, held=3 * CENT)


def test_a_budget_counter_may_have_an_at_sign_in_its_name(store: tuple[str, Any]) -> None:
    """A reservation is `id@counter`: the counter is all that follows the first `@`."""
    ledger: Ledger = store[1](Clock())
    spend = f"test:{{{uuid.uuid4().hex}}}:a@b@c"

    async def run() -> list[int]:
        hold = await ledger.admit(Limits(budget=Budget(spend, HUGE, 3 * CENT, 60)))
        during = await held(ledger, spend)
        await ledger.settle(hold.reservation, CENT, [(spend, 3600)])
        return [during, await held(ledger, spend), await ledger.spent(spend)]

    assert asyncio.run(run()) == [3 * CENT, 0, CENT]


# --- batches ------------------------------------------------------------------------------------------------

def test_what_a_batch_is_granted_counts_what_is_used_spent_and_held(store: tuple[str, Any]) -> None:
    """Room for BATCH_ROOM (100) batches, after what the minute, the spend and the holds already took."""
    ledger: Ledger = store[1](Clock())

    async def granted_after_requests() -> int:
        rpm = counter()
        for _ in range(100):
            await ledger.admit(Limits(requests=(rpm, 10**6)))
        return (await ledger.admit(Limits(requests=(rpm, 1650), batch=16))).granted  # (1650 - 100) // 100

    async def granted_after_money(spent: int, holding: int) -> int:
        spend = counter()
        await ledger.settle(None, spent, [(spend, 3600)])
        await ledger.admit(Limits(budget=Budget(spend, HUGE, holding, 60)))
        return (await ledger.admit(Limits(budget=Budget(spend, 650 * CENT, CENT, 60), batch=16))).granted

    async def run() -> list[int]:
        return [
            (await ledger.admit(Limits(requests=(counter(), 10**6), batch=2))).granted,
            await granted_after_requests(),
            await granted_after_money(100 * CENT, 0),  # (650 - 100) // 100
            await granted_after_money(0, 100 * CENT),
            await granted_after_money(50 * CENT, 150 * CENT),  # (650 - 200) // 100
            (await ledger.admit(Limits(budget=Budget(counter(), 1599, 1, 60), batch=16))).granted,  # 1599 // 100
        ]

    assert asyncio.run(run()) == [2, 15, 5, 5, 4, 15]


def test_a_batch_of_free_requests_holds_nothing(store: tuple[str, Any]) -> None:
    ledger: Ledger = store[1](Clock())
    spend, rpm = counter(), counter()

    async def run() -> tuple[Admission, int, int]:
        admission = await ledger.admit(Limits(requests=(rpm, 10**6), budget=Budget(spend, CENT, 0, 60), batch=16))
        return admission, await held(ledger, spend), await ledger.rate_used(rpm)

    admission, holding, used = asyncio.run(run())
    assert (admission.granted, admission.reservation, holding, used) == (16, None, 0, 16)


# --- settling ---------------------------------------------------------------------------------------------

def test_a_settlement_with_nothing_to_count_leaves_its_name_unused(store: tuple[str, Any]) -> None:
    """No reservation and nothing to add: no step, so the same name settles a cost later."""
    ledger: Ledger = store[1](Clock())
    spend = counter()

    async def run() -> int:
        await ledger.settle(None, 0, [(spend, 3600)], call="x")
        await ledger.settle(None, 5, [(spend, 3600)], call="x")
        await ledger.settle(None, 7, [], call="y")
        await ledger.settle(None, 7, [(spend, 3600)], call="y")
        await ledger.settle(None, 1, [(spend, 3600)])  # one nano-dollar counts
        return await ledger.spent(spend)

    assert asyncio.run(run()) == 5 + 7 + 1


def test_a_release_gives_a_hold_back_and_a_cost_of_one_nano_counts(store: tuple[str, Any]) -> None:
    ledger: Ledger = store[1](Clock())
    spend, user = counter(), counter(uuid.uuid4().hex)  # the user's counter: an owner of its own

    async def run() -> list[int]:
        released = await ledger.admit(Limits(budget=Budget(spend, HUGE, 3 * CENT, 60)))
        settled = await ledger.admit(Limits(budget=Budget(spend, HUGE, 2 * CENT, 60)))
        seen = [await held(ledger, spend)]
        await ledger.settle(released.reservation, 0, [])
        seen.append(await held(ledger, spend))
        await ledger.settle(settled.reservation, 1, [(user, 3600), (spend, 3600)])  # another owner's first
        return [*seen, await held(ledger, spend), await ledger.spent(spend), await ledger.spent(user)]

    assert asyncio.run(run()) == [5 * CENT, 2 * CENT, 0, 1, 1]


def test_a_reservation_settled_again_under_another_name_counts_its_cost_only(store: tuple[str, Any]) -> None:
    """Its hold is gone after the first settlement: the second finds none to take back."""
    ledger: Ledger = store[1](Clock())
    spend = counter()

    async def run() -> list[int]:
        hold = await ledger.admit(Limits(budget=Budget(spend, HUGE, 3 * CENT, 60)))
        other = await ledger.admit(Limits(budget=Budget(spend, HUGE, 4 * CENT, 60)))
        await ledger.settle(hold.reservation, 2, [(spend, 3600)], call="a")
        await ledger.settle(hold.reservation, 3, [(spend, 3600)], call="b")
        assert other.reservation is not None
        return [await held(ledger, spend), await ledger.spent(spend)]

    assert asyncio.run(run()) == [4 * CENT, 5]


def test_sqlite_remembers_a_settlements_name_for_five_minutes(tmp_path: Path) -> None:
    clock = Clock()
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3", clock=clock)
    spend = counter()

    async def run() -> list[int]:
        seen = []
        for at in (0, 2, 299, 300.5):  # each step past a second after the last purges what expired
            clock.now = T0 + at
            await ledger.settle(None, 5, [(spend, 3600)], call="call-1")
            seen.append(await ledger.spent(spend))
        return seen

    assert asyncio.run(run()) == [5, 5, 5, 10]


def test_sqlite_a_call_that_cost_nothing_leaves_the_counters_as_they_were(tmp_path: Path) -> None:
    """Not even their expiry is moved: spend that expires in 10 s is gone in 20, after a free call."""
    clock = Clock()
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3", clock=clock)
    spend = counter()

    async def run() -> list[int]:
        await ledger.settle(None, 5, [(spend, 10)])
        hold = await ledger.admit(Limits(budget=Budget(spend, HUGE, CENT, 60)))
        await ledger.settle(hold.reservation, 0, [(spend, 3600)])
        seen = [await ledger.spent(spend)]
        clock.now += 20
        return [*seen, await ledger.spent(spend)]

    assert asyncio.run(run()) == [5, 0]


# --- giving back --------------------------------------------------------------------------------------------

def test_give_backs_take_exactly_what_they_name(store: tuple[str, Any]) -> None:
    ledger: Ledger = store[1](Clock())
    spend, rpm = counter(), counter()

    async def run() -> list[int]:
        hold = await ledger.admit(Limits(budget=Budget(spend, HUGE, 5, 60)))
        batch = await ledger.admit(Limits(requests=(rpm, 10**6), batch=4))
        assert batch.granted == 4
        await ledger.give_back(None, 0, None)  # nothing
        await ledger.give_back(hold.reservation, 0, None)
        await ledger.give_back(hold.reservation, 0, (rpm, batch.counted_at, 0))
        seen = [await held(ledger, spend), await ledger.rate_used(rpm)]
        await ledger.give_back(hold.reservation, 1, None)  # one nano-dollar
        await ledger.give_back(None, 0, (rpm, batch.counted_at, 1))  # one request, no hold
        seen += [await held(ledger, spend), await ledger.rate_used(rpm)]
        await ledger.give_back(None, 3, (rpm, batch.counted_at, 1))  # nanos of no hold: only the request
        return [*seen, await held(ledger, spend), await ledger.rate_used(rpm)]

    assert asyncio.run(run()) == [5, 4, 4, 3, 4, 2]


def test_a_second_given_back_whole_no_longer_dates_the_minute(store: tuple[str, Any]) -> None:
    """Retry-After counts from the oldest second that still has requests in it."""
    clock = Clock()
    ledger: Ledger = store[1](clock)
    rpm = counter()

    async def run() -> Admission:
        batch = await ledger.admit(Limits(requests=(rpm, 10**6), batch=8))
        await ledger.give_back(None, 0, (rpm, batch.counted_at, batch.granted))
        clock.now += 10
        await ledger.admit(Limits(requests=(rpm, 1)))
        clock.now += 10
        return await ledger.admit(Limits(requests=(rpm, 1)))

    assert asyncio.run(run()) == Admission("requests", used=1, retry_after=50)


# --- SQLite: the purge, the file, the connection, failures ---------------------------------------------------

def test_sqlite_purges_at_most_once_a_second(tmp_path: Path) -> None:
    """A step purges what has expired when the last purge is a second old or more (or in the future)."""
    path = tmp_path / "ledger.sqlite3"
    clock = Clock()
    ledger = SqliteLedger(path, clock=clock)
    now_gone, in_a_second = counter(), counter()

    async def run() -> list[tuple[int, int]]:
        seen = []
        await ledger.settle(None, 1, [(now_gone, 0), (in_a_second, 1)])  # its purge ran first, at T0
        for at in (0, 0.5, 1.0):
            clock.now = T0 + at
            await ledger.admit(Limits(requests=(counter(), 10)))
            seen.append((rows(path, "counters", "name", now_gone), rows(path, "counters", "name", in_a_second)))
        return seen

    assert asyncio.run(run()) == [(1, 1), (1, 1), (0, 0)]


def test_sqlite_keeps_no_total_for_a_budget_with_nothing_held(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path, clock=Clock())
    spend = counter()

    async def run() -> list[int]:
        hold = await ledger.admit(Limits(budget=Budget(spend, HUGE, CENT, 60)))
        seen = [rows(path, "held", "counter", spend)]
        await ledger.settle(hold.reservation, CENT, [(spend, 3600)])
        return [*seen, rows(path, "held", "counter", spend)]

    assert asyncio.run(run()) == [1, 0]


def test_sqlite_check_prepares_the_file_by_itself(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    SqliteLedger.check(path)
    with sqlite3.connect(path) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert (db.execute("PRAGMA page_size").fetchone()[0], db.execute("PRAGMA journal_mode").fetchone()[0],
                db.execute("PRAGMA user_version").fetchone()[0]) == (1024, "wal", 2)
    assert tables == {"counters", "holds", "held", "rate", "settled"}


def test_sqlite_steps_from_another_thread_and_write_with_normal_sync(tmp_path: Path) -> None:
    """LiteLLM calls hooks from threads of its own too; NORMAL: a step does not wait for its fsync."""
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3", clock=Clock())
    rpm = counter()
    asyncio.run(ledger.admit(Limits(requests=(rpm, 10))))
    errors: list[BaseException] = []

    def other_thread() -> None:
        try:
            asyncio.run(ledger.admit(Limits(requests=(rpm, 10))))
        except BaseException as error:  # noqa: BLE001  # reported below
            errors.append(error)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(timeout=10)
    assert errors == [] and asyncio.run(ledger.rate_used(rpm)) == 2
    assert ledger._connection().execute("PRAGMA synchronous").fetchone()[0] == 1  # noqa: SLF001  # NORMAL


EARLIER_SCHEMA = """
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE holds (id TEXT PRIMARY KEY, counter TEXT NOT NULL, nanos INTEGER NOT NULL, expires_at REAL NOT NULL);
CREATE INDEX holds_by_counter ON holds (counter, expires_at);
CREATE TABLE rate (counter TEXT NOT NULL, second INTEGER NOT NULL, amount INTEGER NOT NULL,
                   PRIMARY KEY (counter, second));
"""  # the file of releases up to 0.2 (user_version 0): holds, but no running totals of them


def test_a_file_of_an_earlier_release_has_its_holds_totalled_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    spend = counter()
    with sqlite3.connect(path) as db:
        db.executescript(EARLIER_SCHEMA)
        db.executemany("INSERT INTO holds VALUES (?, ?, ?, ?)",
                       [(f"a@{spend}", spend, 3 * CENT, T0 + 60), (f"b@{spend}", spend, 4 * CENT, T0 + 60)])
    ledger = SqliteLedger(path, clock=Clock())
    assert asyncio.run(held(ledger, spend)) == 7 * CENT
    second = SqliteLedger(path, clock=Clock())  # opened again: totalled once, not twice
    assert asyncio.run(held(second, spend)) == 7 * CENT
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2


def test_a_file_that_cannot_be_brought_up_to_date_is_left_as_it_was(tmp_path: Path) -> None:
    """The error names what is wrong; nothing of the new layout is left, and the file is not kept locked."""
    path = tmp_path / "ledger.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE holds (id TEXT PRIMARY KEY, counter TEXT NOT NULL, expires_at REAL NOT NULL)")
    ledger = SqliteLedger(path, clock=Clock())
    with pytest.raises(sqlite3.OperationalError, match="nanos") as failure:
        asyncio.run(ledger.admit(Limits(requests=(counter(), 10))))
    probe = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")  # the failed open holds no write lock (its error is still alive)
        probe.execute("ROLLBACK")
        tables = {row[0] for row in probe.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert (tables, probe.execute("PRAGMA user_version").fetchone()[0]) == ({"holds"}, 0)
    finally:
        probe.close()
    del failure  # alive until here: its traceback holds the connection that failed


def test_sqlite_locked_by_another_process_refuses_the_step(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path, clock=Clock())
    rpm = counter()
    asyncio.run(ledger.admit(Limits(requests=(rpm, 10))))
    ledger._connection().execute("PRAGMA busy_timeout = 0")  # noqa: SLF001  # not the 5 s it waits
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable, match="ledger.sqlite3"):
            asyncio.run(ledger.admit(Limits(requests=(rpm, 10))))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert asyncio.run(ledger.rate_used(rpm)) == 1


def test_a_step_that_fails_half_way_counts_nothing_and_the_next_one_runs(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3", clock=Clock())
    prefix = f"old:{uuid.uuid4().hex}:"

    def renamed(name: str) -> str:
        if name.endswith("b"):
            raise ValueError(name)
        return "new:" + name

    async def run() -> list[int]:
        await ledger.settle(None, 5, [(prefix + "a", 3600), (prefix + "b", 3600)])
        with pytest.raises(ValueError, match="b"):
            await ledger.rename(renamed, prefix)
        return [await ledger.spent(prefix + "a"), await ledger.spent("new:" + prefix + "a")]

    assert asyncio.run(run()) == [5, 0]


# --- renaming earlier counters -----------------------------------------------------------------------------

def test_a_rename_moves_only_what_gets_a_new_name(store: tuple[str, Any]) -> None:
    """A name `renamed` does not know (None), or maps to itself, stays where it is; a prefix is literal."""
    ledger: Ledger = store[1](Clock())
    prefix = f"old[{uuid.uuid4().hex}]:"
    new = counter()
    names = {prefix + "a": None, prefix + "b": prefix + "b", prefix + "c": new}

    async def run() -> list[int]:
        if store[0] == "redis":
            await ledger._client.delete(RENAMED_MARK)  # noqa: SLF001  # as on a Redis never renamed
        for name in names:
            await ledger.settle(None, 5, [(name, 3600)])
        moved = await ledger.rename(names.get, prefix)
        if store[0] == "redis":
            await ledger._client.delete(RENAMED_MARK)  # noqa: SLF001  # other tests' Redis as it was
        return [moved, *[await ledger.spent(name) for name in names], await ledger.spent(new)]

    assert asyncio.run(run()) == [1, 5, 5, 0, 5]


def test_redis_renames_once_and_never_on_a_cluster(redis_port: int) -> None:
    """Once a process has moved the earlier counters, later starts skip the scan; a cluster's ledger has
    none to move (its steps could not span slots)."""
    client = redis.asyncio.Redis(port=redis_port)
    ledger, cluster = RedisLedger(client), RedisLedger(client, cluster=True)
    prefix = f"old:{uuid.uuid4().hex}:"
    new = counter()

    async def run() -> list[int]:
        await client.delete(RENAMED_MARK)
        await client.set(prefix + "a", 5)
        seen = [await cluster.rename(lambda name: new, prefix), await ledger.spent(prefix + "a")]
        seen.append(await ledger.rename(lambda name: new, prefix))
        await client.set(prefix + "b", 7)  # appears after the rename
        seen += [await ledger.rename(lambda name: new, prefix), await ledger.spent(prefix + "b"),
                 await ledger.spent(new)]
        await client.delete(RENAMED_MARK)
        return seen

    assert asyncio.run(run()) == [0, 5, 1, 0, 7, 5]


def test_redis_that_cannot_be_reached_refuses_every_step() -> None:
    ledger = RedisLedger(redis.asyncio.Redis(port=free_port(), retry=Retry(NoBackoff(), 0)))  # refused at once

    async def run() -> list[str]:
        refused = []
        for step in (ledger.admit(Limits(requests=(counter(), 10))), ledger.rename(lambda name: None, "old:"),
                     ledger.settle(f"x@{counter()}", 0, [])):
            try:
                await step
            except StoreUnavailable as error:
                refused.append(str(error))
        return refused

    assert asyncio.run(run()) == ["Redis ledger: ConnectionError"] * 3


# --- a name's hash tag ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "tag"), [
    ("{key:1}:rpm", "key:1"), ("mpilot:{key:1}:nanos", "key:1"), ("a{b}c{d}", "b"), ("plain", "plain"),
    ("a{}b{c}", "a{}b{c}"), ("a{b", "a{b"), ("}{x}", "x"), ("{}", "{}"), ("{{a}}", "{a"), ("a}b{cd}e", "cd"),
])
def test_a_hash_tag_is_what_redis_cluster_hashes(name: str, tag: str) -> None:
    assert hash_tag(name) == tag
    assert key_slot(name.encode()) == key_slot(tag.encode())


@given(st.text(alphabet="ab{}", max_size=8))
def test_a_name_and_its_hash_tag_share_a_slot(name: str) -> None:
    assert key_slot(name.encode()) == key_slot(hash_tag(name).encode())


# --- what a step is handed and answers; where Redis keeps it ----------------------------------------------

def test_what_a_step_is_handed_and_answers_cannot_change(tmp_path: Path) -> None:
    """An allowance hands one `Limits` and its `Admission`s to many requests: none may alter them."""
    budget = Budget(counter(), HUGE, CENT, 60)
    limits = Limits(requests=(counter(), 10), budget=budget)
    admission = asyncio.run(SqliteLedger(tmp_path / "ledger.sqlite3", clock=Clock()).admit(limits))
    for made, field in ((budget, "amount"), (limits, "batch"), (admission, "granted")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(made, field, 2)
    assert hash(limits) == hash(Limits(requests=limits.requests, budget=budget))


def test_a_refusal_reserves_and_counts_nothing(store: tuple[str, Any]) -> None:
    ledger: Ledger = store[1](Clock())
    rpm, spend = counter(), counter()

    async def run() -> tuple[Admission, Admission]:
        await ledger.admit(Limits(requests=(rpm, 1)))
        return (await ledger.admit(Limits(requests=(rpm, 1))),
                await ledger.admit(Limits(budget=Budget(spend, CENT, 2 * CENT, 60))))

    by_rate, by_budget = asyncio.run(run())
    assert (by_rate.spent, by_rate.held, by_rate.reservation, by_rate.counted_at) == (0, 0, None, 0)
    assert (by_budget.used, by_budget.retry_after, by_budget.reservation, by_budget.counted_at) == (0, 0, None, 0)


def test_only_the_sqlite_ledger_steps_in_the_callers_thread(tmp_path: Path) -> None:
    """What the spend callback reads to settle before the answer (SQLite) or beside it (Redis)."""
    assert SqliteLedger(tmp_path / "ledger.sqlite3").local is True
    assert RedisLedger(redis.asyncio.Redis(port=free_port())).local is False


def test_redis_keeps_a_budgets_holds_beside_its_counter(redis_port: int) -> None:
    """The names an operator finds in Redis: the counter, and `:holds`, `:held`, `:due` after it, and a
    settlement's mark (one slot); once renamed, the mark `mpilot:{ledger}:renamed`."""
    client = redis.asyncio.Redis(port=redis_port, decode_responses=True)
    ledger = RedisLedger(client, clock=Clock())
    spend = counter(f"names-{uuid.uuid4().hex}")

    async def run() -> tuple[list[str], dict[str, str], str | None]:
        await ledger.admit(Limits(budget=Budget(spend, HUGE, CENT, 60)))
        await ledger.settle(None, CENT, [(spend, 3600)], call="call-1")
        names = sorted(await client.keys(spend.split("}")[0] + "}*"))
        holds = await client.hgetall(f"{spend}:holds")
        await client.delete(RENAMED_MARK)
        await ledger.rename(lambda name: None, f"old:{uuid.uuid4().hex}:")
        return names, holds, await client.get("mpilot:{ledger}:renamed")

    names, holds, mark = asyncio.run(run())
    assert names == sorted([spend, f"{spend}:holds", f"{spend}:held", f"{spend}:due",
                            f"{spend}:settled:call-1"])
    assert list(holds.values()) == [str(CENT)] and mark is not None
