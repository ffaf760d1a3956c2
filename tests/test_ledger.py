"""The ledger, in both its stores (SQLite on this machine, a real Redis): exact money, reservations that
hold under concurrency (20 at once, and across processes), expiry of abandoned reservations, and the
sliding minute of rpm/tpm limits."""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from plugin.auth.ledger import (
    Admission,
    Budget,
    Ledger,
    Limits,
    RedisLedger,
    SqliteLedger,
    part_of,
    to_dollars,
    to_nanos,
)

CENT = 10_000_000  # nano-dollars


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """(kind, make) where make(clock) -> a ledger; Redis keys are unique per test."""
    if request.param == "sqlite":
        yield "sqlite", lambda clock: SqliteLedger(tmp_path / "ledger.sqlite3", clock=clock)
    else:
        port = request.getfixturevalue("redis_port")
        yield "redis", lambda clock: RedisLedger(redis.asyncio.Redis(port=port), clock=clock)


def counter() -> str:
    return f"test:{uuid.uuid4().hex}"


async def reserve(ledger: Ledger, name: str, limit: int, amount: int, ttl: int = 60,
                  spent_elsewhere: int = 0) -> Admission:
    return await ledger.admit(Limits(budget=Budget(name, limit, amount, ttl, spent_elsewhere)))


async def count(ledger: Ledger, name: str, limit: int) -> Admission:
    return await ledger.admit(Limits(requests=(name, limit)))


def test_money_is_exact() -> None:
    assert to_nanos(0.025) * 10 == to_nanos(0.25) == 250_000_000
    assert sum(to_nanos(0.1) for _ in range(3)) == to_nanos(0.3)  # 0.1 + 0.1 + 0.1 != 0.3 in floats
    assert to_nanos(2.5e-05) == 25_000
    assert to_nanos("5.00") == 5 * 1_000_000_000
    assert to_nanos(0.0000000004) == 0 and to_nanos(0.0000000005) == 1  # half up
    assert to_dollars(25_000) == Decimal("0.000025")


def test_a_budget_that_fits_ten_answers_gives_ten(store: tuple[str, Any]) -> None:
    """$0.25 and $0.025 answers: floats read 0.24999999999999997 after ten and let an eleventh in."""
    ledger: Ledger = store[1](Clock())
    name, budget, cost = counter(), to_nanos(0.25), to_nanos(0.025)

    async def run() -> int:
        answered = 0
        for _ in range(12):
            hold = await reserve(ledger, name, budget, cost, ttl=60)
            if not hold.admitted:
                break
            answered += 1
            await ledger.settle(hold.reservation, cost, [(name, 3600)])
        return answered

    assert asyncio.run(run()) == 10


def test_twenty_at_once_get_only_what_fits(store: tuple[str, Any]) -> None:
    ledger: Ledger = store[1](Clock())
    name = counter()

    async def run() -> list[bool]:
        holds = await asyncio.gather(*(reserve(ledger, name, 3 * CENT, CENT, ttl=60) for _ in range(20)))
        return [hold.admitted for hold in holds]

    assert asyncio.run(run()).count(True) == 3


def _reserve_in_process(kind: str, where: str, name: str, results: Any) -> None:
    async def run() -> int:
        ledger: Ledger = (SqliteLedger(Path(where)) if kind == "sqlite"
                          else RedisLedger(redis.asyncio.Redis(port=int(where))))
        holds = await asyncio.gather(*(reserve(ledger, name, 7 * CENT, CENT, ttl=60) for _ in range(10)))
        return sum(hold.admitted for hold in holds)

    results.put(asyncio.run(run()))


def test_workers_in_other_processes_share_one_budget(store: tuple[str, Any], tmp_path: Path,
                                                     request: pytest.FixtureRequest) -> None:
    """What `litellm --num_workers N` needs: 4 processes x 10 reservations against a budget of 7."""
    kind = store[0]
    where = str(tmp_path / "shared.sqlite3") if kind == "sqlite" else str(request.getfixturevalue("redis_port"))
    if kind == "sqlite":
        SqliteLedger.check(Path(where))
    name = counter()
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=_reserve_in_process, args=(kind, where, name, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert sum(results.get(timeout=5) for _ in workers) == 7


def test_settle_moves_a_reservation_to_spend(store: tuple[str, Any]) -> None:
    ledger: Ledger = store[1](Clock())
    key, user = counter(), counter()

    async def run() -> tuple[int, int, bool, bool]:
        hold = await reserve(ledger, key, 10 * CENT, 6 * CENT, ttl=60)
        blocked = (await reserve(ledger, key, 10 * CENT, 6 * CENT, ttl=60)).admitted  # 6 held + 6 > 10
        await ledger.settle(hold.reservation, 2 * CENT, [(key, 3600), (user, 3600)])  # cheaper than reserved
        after = (await reserve(ledger, key, 10 * CENT, 6 * CENT, ttl=60)).admitted  # 2 spent + 6 <= 10
        return await ledger.spent(key), await ledger.spent(user), blocked, after

    assert asyncio.run(run()) == (2 * CENT, 2 * CENT, False, True)


def test_a_spent_budget_refuses_even_a_free_request(store: tuple[str, Any]) -> None:
    ledger: Ledger = store[1](Clock())
    name = counter()

    async def run() -> tuple[bool, bool, bool]:
        zero_budget = (await reserve(ledger, name, 0, 0, ttl=60)).admitted
        await ledger.settle(None, CENT, [(name, 3600)])
        at_budget = (await reserve(ledger, name, CENT, 0, ttl=60)).admitted
        elsewhere = (await reserve(ledger, counter(), CENT, 0, ttl=60, spent_elsewhere=CENT)).admitted
        return zero_budget, at_budget, elsewhere

    assert asyncio.run(run()) == (False, False, False)


def test_an_abandoned_reservation_expires(store: tuple[str, Any]) -> None:
    """A proxy that died mid-call does not hold the budget forever."""
    clock = Clock()
    ledger: Ledger = store[1](clock)
    name = counter()

    async def run() -> tuple[bool, bool]:
        await reserve(ledger, name, CENT, CENT, ttl=30)
        held = (await reserve(ledger, name, CENT, CENT, ttl=30)).admitted
        clock.now += 31
        return held, (await reserve(ledger, name, CENT, CENT, ttl=30)).admitted

    assert asyncio.run(run()) == (False, True)


def test_requests_per_minute_slide(store: tuple[str, Any]) -> None:
    clock = Clock()
    ledger: Ledger = store[1](clock)
    name = counter()

    async def run() -> list[tuple[bool, int]]:
        seen = []
        for step in (0, 10, 20, 55, 71):
            clock.now += step - (clock.now - 1_800_000_000.0)
            check = await count(ledger, name, 2)
            seen.append((check.admitted, check.retry_after))
        return seen

    # t=0 and t=10 admitted; t=20 and t=55 refused until t=0 leaves the minute (retry after 40 s, 5 s);
    # t=71: only t=10 is within the last minute.
    assert asyncio.run(run()) == [(True, 0), (True, 0), (False, 40), (False, 5), (True, 0)]


def test_tokens_per_minute_add_up(store: tuple[str, Any]) -> None:
    clock = Clock()
    ledger: Ledger = store[1](clock)
    name = counter()

    async def run() -> tuple[int, int, bool, bool]:
        await ledger.add_to_rate(name, 18)
        clock.now += 30
        await ledger.add_to_rate(name, 18)
        both = await ledger.rate_used(name)
        over = (await ledger.admit(Limits(tokens=(name, 36)))).admitted  # 36 used of 36: no room
        clock.now += 31
        return both, await ledger.rate_used(name), over, (await ledger.admit(Limits(tokens=(name, 36)))).admitted

    assert asyncio.run(run()) == (36, 18, False, True)


def test_one_step_counts_a_request_only_when_every_limit_admits_it(store: tuple[str, Any]) -> None:
    """A request refused by its budget does not use up its rpm, and one refused by rpm reserves nothing."""
    ledger: Ledger = store[1](Clock())
    requests, spend = counter(), counter()

    async def run() -> list[str | None]:
        seen = []
        for amount in (CENT, 5 * CENT, CENT, CENT):  # the 5-cent one does not fit the 3-cent budget
            admission = await ledger.admit(Limits(requests=(requests, 2), budget=Budget(spend, 3 * CENT, amount, 60)))
            seen.append(admission.refused_by)
        seen.append(str(await ledger.rate_used(requests)))
        return seen

    # Admitted, refused by the budget (not counted), admitted (2 requests now), refused by the rate.
    assert asyncio.run(run()) == [None, "budget", None, "requests", "2"]


def test_sqlite_forgets_what_expired_of_every_counter(tmp_path: Path) -> None:
    """Expired spend, holds and rate seconds leave the file, also of counters nobody asks about again;
    a spend counter that expired a moment ago (not yet purged) starts again from the new amount."""
    import sqlite3

    clock = Clock()
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3", clock=clock)
    gone, window = counter(), counter()

    async def run() -> int:
        await ledger.settle(None, 5, [(gone, 10)])
        await reserve(ledger, gone, CENT, 1, ttl=30)
        await count(ledger, gone, 10)
        await ledger.settle(None, 5, [(window, 10)])
        clock.now += 9.8
        await count(ledger, counter(), 10)  # purges: nothing has expired yet
        clock.now += 0.4  # both spend counters expired 0.2 s ago; the last purge was 0.4 s ago
        await ledger.settle(None, 3, [(window, 10)])
        spent_in_new_window = await ledger.spent(window)
        clock.now += 100
        await count(ledger, counter(), 10)  # another counter's step purges everything expired
        return spent_in_new_window

    assert asyncio.run(run()) == 3
    with sqlite3.connect(tmp_path / "ledger.sqlite3") as db:
        left = {table: db.execute(f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", (gone,)).fetchone()[0]
                for table, column in (("counters", "name"), ("holds", "counter"), ("rate", "counter"))}
    assert left == {"counters": 0, "holds": 0, "rate": 0}


def test_a_new_sqlite_ledger_uses_small_pages_in_wal_mode(tmp_path: Path) -> None:
    """Each step writes the pages it changed to the write-ahead log: 1 KiB pages, not SQLite's 4 KiB."""
    import sqlite3

    from plugin.auth.ledger import PAGE_BYTES

    path = tmp_path / "ledger.sqlite3"
    SqliteLedger.check(path)
    asyncio.run(SqliteLedger(path).admit(Limits(requests=(counter(), 5))))
    with sqlite3.connect(path) as db:
        assert (db.execute("PRAGMA page_size").fetchone()[0], db.execute("PRAGMA journal_mode").fetchone()[0]) \
            == (PAGE_BYTES, "wal") == (1024, "wal")


# --- batches: admissions a process hands out itself ------------------------------------------------------

def batch(requests: tuple[str, int] | None, budget: Budget | None, size: int = 16,
          tokens: tuple[str, int] | None = None) -> Limits:
    return Limits(requests=requests, tokens=tokens, budget=budget, batch=size)


def test_a_batch_is_granted_only_where_every_limit_has_room_for_a_hundred(store: tuple[str, Any]) -> None:
    """Room for 100 batches of 16: all 16 counted and reserved as one hold; less room, fewer; none, one."""
    ledger: Ledger = store[1](Clock())

    async def granted(requests_limit: int, budget_limit: int, tokens: bool = False) -> tuple[int, int, int]:
        rpm, spend = counter(), counter()
        admission = await ledger.admit(batch((rpm, requests_limit), Budget(spend, budget_limit, CENT, 60),
                                             tokens=(counter(), 10**9) if tokens else None))
        held = (await reserve(ledger, spend, budget_limit, budget_limit)).held  # refused: reads what is held
        return admission.granted, await ledger.rate_used(rpm), held // CENT

    async def run() -> list[tuple[int, int, int]]:
        return [await granted(1600, 1600 * CENT), await granted(1600 + 50, 10**6 * CENT),
                await granted(10**6, 550 * CENT), await granted(150, 10**6 * CENT),
                await granted(10**6, 10**6 * CENT, tokens=True)]

    assert asyncio.run(run()) == [(16, 16, 16), (16, 16, 16), (5, 5, 5), (1, 1, 1), (1, 1, 1)]


def test_a_batchs_calls_settle_their_parts_and_the_rest_is_given_back(store: tuple[str, Any]) -> None:
    ledger: Ledger = store[1](Clock())
    rpm, spend = counter(), counter()
    limit = 10**6 * CENT

    async def held() -> int:
        return (await reserve(ledger, spend, limit, limit)).held

    async def run() -> list[int]:
        admission = await ledger.admit(batch((rpm, 10**6), Budget(spend, limit, 3 * CENT, 60), size=4))
        assert admission.granted == 4 and admission.reservation is not None
        seen = [await held()]
        for serial, cost in enumerate((CENT, 2 * CENT)):  # two calls of the batch end: each frees its 3 cents
            await ledger.settle(part_of(admission.reservation, 3 * CENT, serial), cost, [(spend, 3600)])
            seen.append(await held())
        await ledger.give_back(admission.reservation, 2 * 3 * CENT, (rpm, admission.counted_at, 2))
        return [*seen, await held(), await ledger.spent(spend), await ledger.rate_used(rpm)]

    assert asyncio.run(run()) == [12 * CENT, 9 * CENT, 6 * CENT, 0, 3 * CENT, 2]


def test_giving_back_requests_of_a_second_gone_by_changes_nothing(store: tuple[str, Any]) -> None:
    clock = Clock()
    ledger: Ledger = store[1](clock)
    rpm = counter()

    async def run() -> list[int]:
        admission = await ledger.admit(batch((rpm, 10**6), None, size=8))
        clock.now += 61  # the minute slid past the second they were counted in
        await ledger.admit(Limits(requests=(rpm, 10**6)))
        await ledger.give_back(None, 0, (rpm, admission.counted_at, 7))  # not from this second's count
        return [admission.granted, await ledger.rate_used(rpm)]

    assert asyncio.run(run()) == [8, 1]
