"""Allowances: the auth hook takes a batch of admissions from the ledger in one step for a busy key far
from its limits, hands them out itself, and gives back what it did not hand out. Against the hook on the
SQLite ledger, the proxy's lookups stubbed (tests/test_reservation_bound.py); the ledger's side in both
stores: tests/test_ledger.py; through real proxies: test_limits_under_concurrency, test_shared_redis."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from plugin import host
from plugin.auth.hook import MPilotAuth
from plugin.limits import allowance
from plugin.limits.ledger import BATCH_ROOM

from .test_reservation_bound import BOUND, ESTIMATE, Lookups, held, hook

BATCH = 4


class Steps:
    """Counts the ledger's admission steps."""

    def __init__(self, auth: MPilotAuth) -> None:
        self.count = 0
        ledger = auth.ledger()
        admit = ledger.admit

        async def counted(limits: Any) -> Any:
            self.count += 1
            return await admit(limits)

        ledger.admit = counted  # type: ignore[method-assign]


def rate(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "ledger.sqlite3") as db:
        return int(db.execute("SELECT COALESCE(SUM(amount), 0) FROM rate").fetchone()[0])


async def admit(auth: MPilotAuth, times: int) -> list[str | None]:
    """The reservations of `times` admissions in a row."""
    key = auth.keys[next(iter(auth.keys))]
    callers = [await auth.admit(key, request=None) for _ in range(times)]  # type: ignore[arg-type]
    return [host.reservation_of(caller) for caller in callers]


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(allowance, "ALLOWANCE_SECONDS", 0.2)
    return 0.2


def test_a_busy_key_far_from_every_limit_takes_a_step_per_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                quick: float) -> None:
    """The first request is a step of one (the key may be quiet); the next, within a second, a step for a
    batch of 4: one hold of 4 x its reservation, 4 requests counted, and the two after it are handed out
    by the process, each call holding its own part of the batch's hold."""
    Lookups(monkeypatch, bound=None)
    auth = hook(tmp_path, budget_nanos=10 * BATCH_ROOM * BATCH * BOUND, rpm=10 * BATCH_ROOM * BATCH, batch=BATCH)
    steps = Steps(auth)
    first, *batched = asyncio.run(admit(auth, 4))
    assert steps.count == 2
    assert held(tmp_path) == [ESTIMATE, BATCH * ESTIMATE] and rate(tmp_path) == 1 + BATCH
    assert first is not None and "#" not in first
    assert [r.rpartition("#")[2] for r in batched] == [f"{n}:{ESTIMATE}" for n in range(3)]  # type: ignore[union-attr]
    assert len({r.rpartition("#")[0] for r in batched}) == 1  # type: ignore[union-attr]


def test_a_quiet_key_takes_a_step_of_one_per_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     quick: float) -> None:
    """Requests further apart than an allowance lasts: a batch would only go back, so none is asked for."""
    Lookups(monkeypatch, bound=None)
    auth = hook(tmp_path, budget_nanos=10 * BATCH_ROOM * BATCH * BOUND, rpm=10 * BATCH_ROOM * BATCH, batch=BATCH)
    steps = Steps(auth)

    async def run() -> list[str | None]:
        reservations = await admit(auth, 1)
        await asyncio.sleep(quick + 0.05)
        return reservations + await admit(auth, 1)

    reservations = asyncio.run(run())
    assert steps.count == 2
    assert held(tmp_path) == [ESTIMATE, ESTIMATE] and rate(tmp_path) == 2
    assert not any("#" in str(reservation) for reservation in reservations)


def test_what_a_batch_did_not_hand_out_goes_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 quick: float) -> None:
    """Two of a batch of four handed out and settled: once the allowance ends, nothing is held and three
    requests count (the first, a step of one, and the batch's two)."""
    Lookups(monkeypatch, bound=None)
    auth = hook(tmp_path, budget_nanos=10 * BATCH_ROOM * BATCH * BOUND, rpm=10 * BATCH_ROOM * BATCH, batch=BATCH)

    async def run() -> tuple[list[int], int, list[int], int]:
        reservations = await admit(auth, 3)
        for reservation in reservations:
            await auth.settle(None, reservation, 0.0, 0)
        during = held(tmp_path), rate(tmp_path)
        await asyncio.sleep(quick + 0.1)
        await asyncio.sleep(0.05)  # the give-back's task
        return during[0], during[1], held(tmp_path), rate(tmp_path)

    assert asyncio.run(run()) == ([2 * ESTIMATE], 1 + BATCH, [], 3)


def test_a_request_the_allowance_cannot_cover_takes_a_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           quick: float) -> None:
    """A batch of LiteLLM's estimates (1,000 each) has 3,000 left after its first call; a bound (4,000) does
    not fit in it: the 3,000 (and 3 requests) go back first, then a step for a batch of 4 bounds."""
    lookups = Lookups(monkeypatch, bound=None)
    auth = hook(tmp_path, budget_nanos=10 * BATCH_ROOM * BATCH * BOUND, rpm=10 * BATCH_ROOM * BATCH, batch=BATCH)
    steps = Steps(auth)

    async def run() -> None:
        await admit(auth, 2)  # a step of one, then the batch of estimates
        lookups.bound = BOUND
        await admit(auth, 1)

    asyncio.run(run())
    assert steps.count == 3
    assert held(tmp_path) == [ESTIMATE, ESTIMATE, BATCH * BOUND]  # the step of one, the first batch's call
    assert rate(tmp_path) == 1 + 1 + BATCH


@pytest.mark.parametrize("room_for", [2 * BATCH_ROOM - 1, None])
def test_near_a_limit_or_with_a_tokens_limit_every_request_is_a_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     quick: float, room_for: int | None) -> None:
    """Room for fewer than BATCH_ROOM batches of two requests, or a tpm limit (tokens are known only after
    a call): each admission is its own step, and counts one request."""
    Lookups(monkeypatch, bound=None)
    auth = hook(tmp_path, budget_nanos=10 * BATCH_ROOM * BATCH * BOUND, rpm=room_for or 10**6, batch=BATCH)
    if room_for is None:
        key_id = next(iter(auth.keys))
        auth.keys[key_id] = replace(auth.keys[key_id], tpm_limit=10**9)
    steps = Steps(auth)
    asyncio.run(admit(auth, 3))
    assert steps.count == 3
    assert held(tmp_path) == [ESTIMATE] * 3 and rate(tmp_path) == 3


def test_a_calls_end_seen_twice_frees_its_part_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    quick: float) -> None:
    """A failed call's end reaches LiteLLM's failure hook and its failure log, and the route may release it
    too: its part of the batch's hold is taken back once, or the other calls in flight would lose theirs.
    A cost seen after a release still counts."""
    Lookups(monkeypatch, bound=None)
    auth = hook(tmp_path, budget_nanos=10 * BATCH_ROOM * BATCH * BOUND, rpm=10 * BATCH_ROOM * BATCH, batch=BATCH)
    key_id = next(iter(auth.keys))

    async def run() -> tuple[list[int], int]:
        part = (await admit(auth, 3))[1]  # the first of a batch (after a step of one)
        await auth.release(part)
        await auth.release(part)
        await auth.settle(key_id, part, 0.000003, 0)  # a late success log of the same call: its cost only
        spent = await auth.ledger().spent(auth.keys[key_id].spend_counter(datetime.now(UTC)))
        return held(tmp_path), spent

    assert asyncio.run(run()) == ([ESTIMATE, (BATCH - 1) * ESTIMATE], 3_000)


def test_spend_kept_under_an_earlier_releases_names_still_counts(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """An upgrade does not hand a key its budget again: the process's first step moves the counters of the
    layout releases up to 0.1 used (`mpilot:nanos:key:<id>`) to today's names, before it admits anything."""
    from plugin.auth.hook import Refused
    from plugin.limits.ledger import to_nanos

    Lookups(monkeypatch)
    auth = hook(tmp_path, budget_nanos=to_nanos(1.0))
    key = auth.keys[next(iter(auth.keys))]

    async def run() -> int:
        earlier = f"mpilot:nanos:key:{key.key_id}"
        await auth.ledger().settle(None, to_nanos(1.0), [(earlier, 3600)])  # spent all of it, as 0.1 named it
        try:
            await auth.admit(key, request=None)  # type: ignore[arg-type]
        except Refused as refusal:
            return refusal.status
        return 200

    assert asyncio.run(run()) == 402
