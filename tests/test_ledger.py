"""The ledger, in both its stores (SQLite on this machine, a real Redis): exact money, reservations that
hold under concurrency (20 at once, and across processes), expiry of abandoned reservations, and the
sliding minute of rpm/tpm limits."""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
import redis.cluster

from plugin.limits.ledger import (
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


def cluster_client(cluster: Any) -> redis.asyncio.RedisCluster:
    return redis.asyncio.RedisCluster(startup_nodes=[redis.cluster.ClusterNode(node["host"], node["port"])
                                                     for node in cluster.startup_nodes])


@pytest.fixture(params=["sqlite", "redis", "cluster"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """(kind, make) where make(clock) -> a ledger; Redis keys are unique per test. On the cluster, a test's
    counters are one owner's (see `counter`): each step is one script on one slot."""
    if request.param == "sqlite":
        yield "sqlite", lambda clock: SqliteLedger(tmp_path / "ledger.sqlite3", clock=clock)
    elif request.param == "redis":
        port = request.getfixturevalue("redis_port")
        yield "redis", lambda clock: RedisLedger(redis.asyncio.Redis(port=port), clock=clock)
    else:
        cluster = request.getfixturevalue("redis_cluster")
        yield "cluster", lambda clock: RedisLedger(cluster_client(cluster), clock=clock, cluster=True)


OWNER = uuid.uuid4().hex  # one hash tag for the counters of a test, as a key's counters share one


def counter(owner: str = OWNER) -> str:
    return f"test:{{{owner}}}:{uuid.uuid4().hex}"


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
        ledger: Ledger = (
            SqliteLedger(Path(where)) if kind == "sqlite"
            else RedisLedger(redis.asyncio.Redis(port=int(where))) if kind == "redis"
            else RedisLedger(redis.asyncio.RedisCluster(host="127.0.0.1", port=int(where)), cluster=True))
        holds = await asyncio.gather(*(reserve(ledger, name, 7 * CENT, CENT, ttl=60) for _ in range(10)))
        return sum(hold.admitted for hold in holds)

    results.put(asyncio.run(run()))


def test_workers_in_other_processes_share_one_budget(store: tuple[str, Any], tmp_path: Path,
                                                     request: pytest.FixtureRequest) -> None:
    """What `litellm --num_workers N` needs: 4 processes x 10 reservations against a budget of 7."""
    kind = store[0]
    where = (str(tmp_path / "shared.sqlite3") if kind == "sqlite" else str(request.getfixturevalue("redis_port"))
             if kind == "redis" else str(request.getfixturevalue("redis_cluster").ports[0]))
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

    from plugin.limits.ledger import PAGE_BYTES

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


# --- a fleet: owners in slots of their own, steps done once, work bounded by what is due ------------------

def test_a_key_users_and_teams_spend_settle_in_their_own_steps(store: tuple[str, Any]) -> None:
    """A call's cost reaches the key's, its user's and its team's counters, which on a cluster live in
    three slots (keys.py names them under three hash tags): one step each, and a settlement made again
    under the same name (a client's retry after a timeout or a redirect) counts once."""
    from plugin.limits.keys import config_keys, team_spend_counter, user_spend_counter

    ledger: Ledger = store[1](Clock())
    secret = uuid.uuid4().hex
    (key,) = config_keys([{"key": f"sk-bf-{secret}", "max_budget": 1.0, "rpm_limit": 10,
                           "user_id": f"u-{secret}", "team_id": f"t-{secret}"}]).values()
    limit = to_nanos(key.max_budget)
    spend = key.spend_counter(datetime.now(UTC))
    counters = key.spend_counters(datetime.now(UTC))

    async def run() -> list[int]:
        admission = await ledger.admit(Limits(requests=(key.requests_counter, 10),
                                              budget=Budget(spend, limit, 5 * CENT, 60)))
        assert admission.admitted and admission.reservation is not None
        for _ in range(2):
            await ledger.settle(admission.reservation, 3 * CENT, counters, call="call-1")
        await ledger.settle(None, CENT, counters, call="call-2")  # no reservation: e.g. a key with no budget
        await ledger.settle(None, CENT, counters, call="call-2")
        held = (await ledger.admit(Limits(budget=Budget(spend, limit, limit, 60)))).held
        return [await ledger.spent(spend), await ledger.spent(user_spend_counter(key.user_id)),
                await ledger.spent(team_spend_counter(key.team_id)), held, await ledger.rate_used(key.requests_counter)]

    assert asyncio.run(run()) == [4 * CENT] * 3 + [0, 1]


def test_every_owner_is_one_slot_on_a_cluster() -> None:
    """What a step touches is named in its owner's slot: a key's counters and the holds of its budget share
    one hash tag; a user's and a team's counters have their own."""
    from redis.crc import key_slot

    from plugin.limits.keys import config_keys, team_spend_counter, user_spend_counter
    from plugin.limits.ledger import near

    (key,) = config_keys([{"key": "sk-bf-" + "s" * 32, "max_budget": 1.0, "budget_duration": "1d",
                           "user_id": "alice", "team_id": "research"}]).values()
    spend = key.spend_counter(datetime.now(UTC))
    owned = [key.requests_counter, key.tokens_counter, spend, *(near(spend, part) for part in
                                                                 ("holds", "held", "due", "settled:x", "unused"))]
    assert len({key_slot(name.encode()) for name in owned}) == 1
    assert key_slot(user_spend_counter("alice").encode()) == key_slot(near(user_spend_counter("alice"), "x").encode())
    assert key_slot(b"plain") == key_slot(near("plain", "holds").encode())  # a name without a tag: its own slot
    assert len({key_slot(spend.encode()), key_slot(user_spend_counter("alice").encode()),
                key_slot(team_spend_counter("research").encode())}) == 3


def test_what_a_step_sweeps_is_bounded_and_only_what_is_due(store: tuple[str, Any]) -> None:
    """Holds left by a proxy that died expire on time, and a step drops a bounded number of them, counting
    the rest as held until then (the budget errs on the side of refusing); holds not yet due are never
    touched. Redis: `SWEEP_MOST` of the budget's per step (150 are gone after three steps). SQLite: its
    purge (once a second) takes `PURGE_MOST` of every budget's, and runs again at the next step when it hit
    that; the step's own sweep takes `SWEEP_MOST` of the budget's."""
    from plugin.limits.ledger import PURGE_MOST, SWEEP_MOST

    clock = Clock()
    ledger: Ledger = store[1](clock)
    name = counter()
    limit = 10**6 * CENT
    expired = 1_500 if store[0] == "sqlite" else 150

    async def run() -> list[int]:
        for _ in range(0, expired, 50):  # 50 at once: redis-py's default pool takes 100
            await asyncio.gather(*(reserve(ledger, name, limit, CENT, ttl=30) for _ in range(50)))
        await reserve(ledger, name, limit, 2 * CENT, ttl=300)  # not due
        clock.now += 31
        seen = []
        for _ in range(4):
            admission = await reserve(ledger, name, limit, limit)  # refused: reads what is held
            seen.append(admission.held // CENT)
        return seen

    assert (SWEEP_MOST, PURGE_MOST) == (64, 1_000)
    expected = [1_500 - 1_000 - 64 + 2, 2, 2, 2] if store[0] == "sqlite" else [150 - 64 + 2, 150 - 128 + 2, 2, 2]
    assert asyncio.run(run()) == expected


def test_parts_and_give_backs_keep_the_running_total_exact(store: tuple[str, Any]) -> None:
    """The held total is the sum of what the holds still reserve: a part settled twice is taken once, a
    give-back larger than what is left takes what is left, an expired hold is swept out of the total."""
    clock = Clock()
    ledger: Ledger = store[1](clock)
    spend = counter()
    limit = 10**6 * CENT

    async def held() -> int:
        return (await reserve(ledger, spend, limit, limit)).held

    async def run() -> list[int]:
        first = await ledger.admit(Limits(budget=Budget(spend, limit, 3 * CENT, 60), batch=4))
        second = await reserve(ledger, spend, limit, 5 * CENT, ttl=10)
        assert first.granted == 4 and first.reservation and second.reservation
        seen = [await held()]
        await ledger.settle(part_of(first.reservation, 3 * CENT, 1), CENT, [(spend, 3600)])
        await ledger.settle(part_of(first.reservation, 3 * CENT, 1), CENT, [(spend, 3600)])  # again
        seen.append(await held())
        await ledger.give_back(first.reservation, 100 * CENT, None)  # more than is left of it
        seen.append(await held())
        clock.now += 11
        seen.append(await held())
        return [*seen, await ledger.spent(spend)]

    assert asyncio.run(run()) == [17 * CENT, 14 * CENT, 5 * CENT, 0, CENT]


def test_spend_of_an_earlier_release_moves_to_todays_names(store: tuple[str, Any]) -> None:
    """Counters under the names releases up to 0.1 used (`mpilot:nanos:key:<id>`) are added to today's
    once, their expiry kept, so an upgrade does not hand a key its budget again; done twice, nothing moves."""
    from plugin.limits.keys import EARLIER_SPEND_PREFIX, renamed_spend_counter

    if store[0] == "cluster":
        pytest.skip("the earlier names' steps spanned slots: no release kept them on a cluster")
    clock = Clock()
    ledger: Ledger = store[1](clock)
    key_id = uuid.uuid4().hex * 2
    user = f"user-{uuid.uuid4().hex}"
    old_key, old_user = f"mpilot:nanos:key:{key_id}:1795824000", f"mpilot:nanos:user:{user}"
    new_key = f"mpilot:{{key:{key_id}}}:nanos:1795824000"

    async def run() -> list[Any]:
        if store[0] == "sqlite":
            await ledger.settle(None, 7 * CENT, [(old_key, 3600), (old_user, 3600)])
        else:
            from plugin.limits.ledger import RENAMED_MARK

            client = ledger._client  # noqa: SLF001  # the earlier release's writes, as it made them
            await client.delete(RENAMED_MARK)  # as on a Redis no release of today's layout has used
            await client.set(old_key, 7 * CENT, ex=3600)
            await client.set(old_user, 7 * CENT, ex=3600)
        await ledger.settle(None, CENT, [(new_key, 60)])  # today's counter already has spend
        moved = [await ledger.rename(renamed_spend_counter, EARLIER_SPEND_PREFIX),
                 await ledger.rename(renamed_spend_counter, EARLIER_SPEND_PREFIX)]
        expires_later = await ledger.spent(new_key)
        clock.now += 120  # past the new counter's own 60 s: it lives as long as the old one did
        return [*moved, expires_later, await ledger.spent(new_key), await ledger.spent(f"mpilot:{{user:{user}}}:nanos"),
                await ledger.spent(old_key)]

    if store[0] != "sqlite":  # Redis expires by its own clock, not the test's
        async def redis_run() -> list[Any]:
            result = await run()
            return result[:3] + result[4:]
        assert asyncio.run(redis_run()) == [2, 0, 8 * CENT, 7 * CENT, 0]
    else:
        assert asyncio.run(run()) == [2, 0, 8 * CENT, 8 * CENT, 7 * CENT, 0]
