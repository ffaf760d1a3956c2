"""Allowances at their edges, on an event loop whose clock moves only when the test moves it, against the
SQLite ledger: when a key counts as busy, how many slots are remembered, exactly what an allowance hands
out and until when, what goes back (once) when it ends or is replaced, and which limits share one. The
hook's side: tests/test_allowance.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from plugin.auth.hook import MPilotAuth
from plugin.limits.allowance import Allowances
from plugin.limits.ledger import Admission, Budget, Limits, RedisLedger, SqliteLedger, StoreUnavailable, part_of

from .loopback import free_port
from .test_ledger import CENT, Clock, counter
from .test_reservation_bound import ESTIMATE, KEY, Lookups, held

HUGE = 10**6 * CENT
AMOUNT = 3 * CENT
Result = TypeVar("Result")


class Loop(asyncio.SelectorEventLoop):
    """An event loop whose clock (`now`) moves only when a test sets it: timers fire once it reaches them."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0

    def time(self) -> float:
        return self.now


def on_loop(test: Callable[[Loop], Awaitable[Result]]) -> Result:
    loop = Loop()
    try:
        result = loop.run_until_complete(test(loop))
        loop.run_until_complete(due())  # what the test's last step started (an allowance's end) runs too
        return result
    finally:
        loop.close()


async def due() -> None:
    """Let what the loop has due run: timers the clock reached, and the give-backs they start."""
    for _ in range(10):
        await asyncio.sleep(0)


@pytest.fixture
def ledger(tmp_path: Path) -> SqliteLedger:
    return SqliteLedger(tmp_path / "ledger.sqlite3", clock=Clock())


async def holding(ledger: SqliteLedger, spend: str) -> int:
    return (await ledger.admit(Limits(budget=Budget(spend, HUGE, HUGE + 1, 60)))).held


def batch_of(size: int, rpm: str | None, spend: str | None, amount: int = AMOUNT) -> Limits:
    return Limits(requests=(rpm, 10**6) if rpm else None,
                  budget=Budget(spend, HUGE, amount, 60) if spend else None, batch=size)


# --- when a key is busy ------------------------------------------------------------------------------------

def test_a_key_is_busy_for_less_than_a_second_after_its_last_step() -> None:
    async def test(loop: Loop) -> list[int]:
        allowances = Allowances()
        limits = batch_of(16, counter(), None)
        seen = [allowances.sized(limits).batch]  # first seen: maybe quiet
        loop.now += 0.5
        seen.append(allowances.sized(limits).batch)
        loop.now += 1.0  # exactly a second after the last step: quiet again
        seen.append(allowances.sized(limits).batch)
        loop.now += 0.999
        seen.append(allowances.sized(limits).batch)
        seen.append(allowances.sized(batch_of(2, counter(), None)).batch)  # a batch of two, first seen
        return seen

    assert on_loop(test) == [1, 16, 1, 16, 1]


def test_ten_thousand_slots_steps_are_remembered_and_steps_of_one_are_not() -> None:
    async def test(loop: Loop) -> list[int]:
        allowances = Allowances()
        busy = batch_of(16, "busy", None)
        allowances.sized(busy)
        for n in range(10_000 - 1):
            allowances.sized(batch_of(16, f"other-{n}", None))
        loop.now += 0.1
        seen = [allowances.sized(busy).batch]  # 10,000 slots remembered, this one among them
        for n in range(10_000):
            allowances.sized(batch_of(1, f"one-{n}", None))  # never batched: nothing to remember
        loop.now += 0.1
        seen.append(allowances.sized(busy).batch)
        allowances.sized(batch_of(16, "one more", None))  # the 10,001st: the memory starts again
        loop.now += 0.1
        return [*seen, allowances.sized(busy).batch]

    assert on_loop(test) == [16, 16, 1]


# --- what an allowance hands out -------------------------------------------------------------------------

def test_an_allowance_hands_out_what_was_granted_then_nothing(ledger: SqliteLedger) -> None:
    limits = batch_of(4, counter(), counter())

    async def test(loop: Loop) -> tuple[Admission, Admission, list[Admission | None]]:
        allowances = Allowances()
        admission = await ledger.admit(limits)
        own = allowances.keep(limits, admission, ledger)
        return admission, own, [allowances.take(limits) for _ in range(4)]

    admission, own, taken = on_loop(test)
    assert admission.granted == 4 and admission.reservation is not None
    assert own.reservation == part_of(admission.reservation, AMOUNT, 0)
    assert taken == [Admission(None, reservation=part_of(admission.reservation, AMOUNT, n)) for n in (1, 2, 3)] \
        + [None]


def test_a_batch_of_two_is_kept_and_requests_without_a_budget_hold_nothing(ledger: SqliteLedger) -> None:
    async def test(loop: Loop) -> list[Any]:
        allowances = Allowances()
        limits = Limits(requests=(counter(), 200), batch=16)  # room for 100 batches of 2
        admission = await ledger.admit(limits)
        allowances.keep(limits, admission, ledger)
        return [admission.granted, allowances.take(limits), allowances.take(limits)]

    assert on_loop(test) == [2, Admission(None), None]


def test_limits_that_ask_for_a_batch_of_two_take_from_its_allowance(ledger: SqliteLedger) -> None:
    limits = batch_of(2, counter(), counter())

    async def test(loop: Loop) -> list[Any]:
        allowances = Allowances()
        admission = await ledger.admit(limits)
        allowances.keep(limits, admission, ledger)
        taken = allowances.take(limits)
        assert admission.reservation is not None
        return [admission.granted, taken.reservation if taken else None, allowances.take(limits),
                part_of(admission.reservation, AMOUNT, 1)]

    granted, taken, then, expected = on_loop(test)
    assert (granted, taken, then) == (2, expected, None)


class Refusing:
    """A ledger whose every give-back fails (and is logged): shows whether one was asked for at all."""

    async def give_back(self, *arguments: Any) -> None:
        raise StoreUnavailable("asked")


def test_an_allowance_handed_out_whole_gives_nothing_back(caplog: pytest.LogCaptureFixture,
                                                            ledger: SqliteLedger) -> None:
    """Nothing left: no step of the store at all."""

    async def test(loop: Loop) -> None:
        allowances = Allowances()
        for limits in (batch_of(2, counter(), counter()), batch_of(2, counter(), None),
                       batch_of(2, None, counter())):
            allowances.keep(limits, await ledger.admit(limits), ledger)
            allowances.take(limits)
            await allowances.end(limits, Refusing())  # type: ignore[arg-type]

    with caplog.at_level(logging.WARNING, logger="mpilot.auth"):
        on_loop(test)
    assert caplog.records == []


def test_limits_that_ask_for_no_batch_and_free_requests_take_no_part_of_a_hold(ledger: SqliteLedger) -> None:
    limits = batch_of(4, counter(), counter())

    async def test(loop: Loop) -> list[Admission | None]:
        allowances = Allowances()
        allowances.keep(limits, await ledger.admit(limits), ledger)
        free = replace(limits, budget=replace(limits.budget, amount=0))  # type: ignore[type-var]
        return [allowances.take(replace(limits, batch=1)), allowances.take(free)]

    assert on_loop(test) == [None, Admission(None)]


def test_an_allowance_ends_a_second_after_it_was_granted(ledger: SqliteLedger) -> None:
    limits = batch_of(4, counter(), counter())

    async def test(loop: Loop) -> list[bool]:
        allowances = Allowances()
        allowances.keep(limits, await ledger.admit(limits), ledger)
        loop.now = 1000.999
        seen = [allowances.take(limits) is not None]
        loop.now = 1001.0
        return [*seen, allowances.take(limits) is not None]

    assert on_loop(test) == [True, False]


# --- what goes back ---------------------------------------------------------------------------------------

def test_calls_in_flight_keep_their_parts_when_their_allowance_ends(ledger: SqliteLedger) -> None:
    """A batch of 4: the granting call and two handed out are in flight; the fourth goes back, nothing more,
    and nothing of an ended allowance stays in the process."""
    rpm, spend = counter(), counter()
    limits = batch_of(4, rpm, spend)

    async def test(loop: Loop) -> list[Any]:
        allowances = Allowances()
        allowances.keep(limits, await ledger.admit(limits), ledger)
        allowances.take(limits)
        allowances.take(limits)
        loop.now += 1.0
        await due()
        return [await holding(ledger, spend), await ledger.rate_used(rpm), allowances.take(limits),
                len(allowances._kept)]  # noqa: SLF001  # what the process keeps

    assert on_loop(test) == [3 * AMOUNT, 3, None, 0]


def test_a_replaced_allowance_goes_back_at_once_and_only_once(ledger: SqliteLedger) -> None:
    """Two steps for one slot (concurrent requests): the second's batch replaces the first's allowance,
    whose rest goes back then, not again when its second is up; the second's allowance lives on."""
    rpm, spend = counter(), counter()
    limits = batch_of(4, rpm, spend)

    async def test(loop: Loop) -> list[Any]:
        allowances = Allowances()
        allowances.keep(limits, await ledger.admit(limits), ledger)
        loop.now = 1000.5
        second = await ledger.admit(limits)
        allowances.keep(limits, second, ledger)
        await due()
        seen = [await holding(ledger, spend), await ledger.rate_used(rpm)]  # the first's call, the second's 4
        loop.now = 1001.0  # the first allowance's end
        await due()
        taken = allowances.take(limits)
        seen += [taken.reservation if taken else None, await holding(ledger, spend), await ledger.rate_used(rpm)]
        loop.now = 1001.5  # the second's end: the two it did not hand out go back
        await due()
        assert second.reservation is not None
        return [*seen, await holding(ledger, spend), await ledger.rate_used(rpm), second.reservation]

    first_seen, first_rate, taken, *rest, reservation = on_loop(test)
    assert [first_seen, first_rate, *rest] == [5 * AMOUNT, 5, 5 * AMOUNT, 5, 3 * AMOUNT, 3]
    assert taken == part_of(reservation, AMOUNT, 1)


def test_requests_alone_go_back_to_the_minute(ledger: SqliteLedger) -> None:
    rpm = counter()
    limits = batch_of(4, rpm, None)

    async def test(loop: Loop) -> list[int]:
        allowances = Allowances()
        allowances.keep(limits, await ledger.admit(limits), ledger)
        allowances.take(limits)
        allowances.take(limits)  # one left
        await allowances.end(limits, ledger)
        return [await ledger.rate_used(rpm), int(allowances.take(limits) is None)]

    assert on_loop(test) == [3, 1]


def test_one_nano_dollar_parts_and_give_backs(ledger: SqliteLedger) -> None:
    spend = counter()
    limits = batch_of(4, None, spend, amount=1)

    async def test(loop: Loop) -> list[Any]:
        allowances = Allowances()
        admission = await ledger.admit(limits)
        own = allowances.keep(limits, admission, ledger)
        taken = [allowances.take(limits), allowances.take(limits)]
        await allowances.end(limits, ledger)  # the one left: one nano-dollar
        assert admission.reservation is not None
        return [own.reservation == part_of(admission.reservation, 1, 0),
                [t.reservation if t else None for t in taken] == [part_of(admission.reservation, 1, n) for n in (1, 2)],
                await holding(ledger, spend)]

    assert on_loop(test) == [True, True, 3]


def test_an_allowance_of_free_requests_has_nothing_to_give_back(ledger: SqliteLedger) -> None:
    spend = counter()
    limits = batch_of(4, None, spend, amount=0)

    async def test(loop: Loop) -> list[Any]:
        allowances = Allowances()
        admission = await ledger.admit(limits)
        own = allowances.keep(limits, admission, ledger)
        await allowances.end(limits, ledger)
        return [admission.granted, own.reservation, await holding(ledger, spend)]

    assert on_loop(test) == [4, None, 0]


def test_a_give_back_the_store_refuses_is_not_logged_again_and_anything_else_is(
        ledger: SqliteLedger, caplog: pytest.LogCaptureFixture) -> None:
    """The hold expires and the requests slide out of the minute by themselves: the request goes on. A store
    that is down is logged once per outage by the guard, not once per allowance; another failure is logged."""
    limits = batch_of(4, counter(), counter())
    down = RedisLedger(redis.asyncio.Redis(port=free_port(), retry=Retry(NoBackoff(), 0)))

    class Broken:
        async def give_back(self, *args: object) -> None:
            raise RuntimeError("a bug")

    async def test(loop: Loop) -> None:
        for store in (down, Broken()):
            allowances = Allowances()
            allowances.keep(limits, await ledger.admit(limits), ledger)
            await allowances.end(limits, store)  # type: ignore[arg-type]

    with caplog.at_level(logging.WARNING, logger="mpilot.auth"):
        on_loop(test)
    assert [(r.name, r.getMessage()) for r in caplog.records] \
        == [("mpilot.auth", "MPilot allowance not given back: RuntimeError")]


# --- which limits share one -------------------------------------------------------------------------------

def test_an_allowance_serves_only_the_limits_it_was_granted_under(ledger: SqliteLedger) -> None:
    """Another budget of the same size, or the same budget at another size (its key's limit changed)."""
    spend = counter()
    limits = batch_of(4, None, spend)

    async def test(loop: Loop) -> list[bool]:
        allowances = Allowances()
        allowances.keep(limits, await ledger.admit(limits), ledger)
        other = batch_of(4, None, counter())
        resized = replace(limits, budget=replace(limits.budget, limit=HUGE - 1))  # type: ignore[type-var]
        return [allowances.take(other) is None, allowances.take(resized) is None, allowances.take(limits) is None]

    assert on_loop(test) == [True, True, False]


def test_the_hook_asks_a_busy_key_for_batches_of_sixteen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Lookups(monkeypatch, bound=None)
    auth = MPilotAuth({"virtual_keys": [{"key": KEY, "max_budget": 1.0, "rpm_limit": 10**6}]})
    auth._ledger = SqliteLedger(tmp_path / "ledger.sqlite3")  # noqa: SLF001
    key = auth.keys[next(iter(auth.keys))]

    async def run() -> None:
        for _ in range(2):
            await auth.admit(key, request=None)  # type: ignore[arg-type]  # the stubs do not read it

    asyncio.run(run())
    assert held(tmp_path) == [ESTIMATE, 16 * ESTIMATE]
