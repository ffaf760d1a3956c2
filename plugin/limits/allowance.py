"""Allowances: batches of admissions a process took from the ledger in one step (`Limits.batch`) for a busy
key far from its limits, handed out one per request without a step of the store each: a Redis round trip,
or a SQLite transaction, is most of what a budgeted key's request costs over the master key's
(bench/auth_overhead).

The limits still hold. Every request an allowance hands out was counted, and its cost reserved, in the
ledger; the ledger grants a batch only where each limit has room for `BATCH_ROOM` of them, so near a limit
every request is its own step, as are requests of a key with a tokens-per-minute limit. An allowance lasts
`ALLOWANCE_SECONDS`: what it did not hand out by then, or once a request needs more than is left, goes back
to the ledger, so a key that goes quiet holds nothing for long (a proxy that dies holds its allowances'
reservations until they expire, and their requests for the rest of the minute). A batch is asked for only
for a busy key, one this process took a step for less than `ALLOWANCE_SECONDS` before: a quiet key's
request is a step of one, with nothing to give back after it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace

from .ledger import Admission, Ledger, Limits, StoreUnavailable, part_of

log = logging.getLogger("mpilot.auth")

BATCH = 16  # admissions asked for in one step
ALLOWANCE_SECONDS = 1.0  # what an allowance has not handed out by then goes back to the ledger
STEPS_KEPT = 10_000  # slots whose last step this process remembers

# The limits an allowance was granted under: the requests counter and limit, the budget counter and limit.
Slot = tuple[tuple[str, int] | None, str | None, int | None]


@dataclass
class Allowance:
    reservation: str | None  # the ledger's hold of the whole batch; each call settles its part of it
    requests: tuple[str, int] | None  # (counter, second) the batch's requests were counted in
    requests_left: int
    nanos_left: int
    ends: float  # event loop time
    handed: int = 1  # calls it was taken for, the one whose step granted it included


class Allowances:
    """This process's allowances, one per slot at most."""

    def __init__(self) -> None:
        self._kept: dict[Slot, Allowance] = {}
        self._stepped: dict[Slot, float] = {}  # when this process last took a step of the ledger for a slot
        self._giving_back: set[asyncio.Future[None]] = set()

    def sized(self, limits: Limits) -> Limits:
        """`limits` for a step of the ledger: a batch for a busy key (a step for it less than
        `ALLOWANCE_SECONDS` ago), else a step of one."""
        if limits.batch <= 1:
            return limits
        slot, now = _slot(limits), asyncio.get_running_loop().time()
        last = self._stepped.get(slot)
        if last is None and len(self._stepped) >= STEPS_KEPT:
            self._stepped.clear()
        self._stepped[slot] = now
        return limits if last is not None and now - last < ALLOWANCE_SECONDS else replace(limits, batch=1)

    def take(self, limits: Limits) -> Admission | None:
        """An admission of one request from the allowance for `limits`, or None: there is none, it has
        ended, or too little is left of it (the request then takes a step of the ledger)."""
        if limits.batch <= 1:
            return None
        allowance = self._kept.get(_slot(limits))
        amount = limits.budget.amount if limits.budget is not None else 0
        if (allowance is None or allowance.requests_left < 1 or allowance.nanos_left < amount
                or asyncio.get_running_loop().time() >= allowance.ends):
            return None
        allowance.requests_left -= 1
        allowance.nanos_left -= amount
        allowance.handed += 1
        reservation = part_of(allowance.reservation, amount, allowance.handed - 1) \
            if allowance.reservation and amount > 0 else None
        return Admission(None, reservation=reservation)

    def keep(self, limits: Limits, admission: Admission, ledger: Ledger) -> Admission:
        """`admission` from the ledger; where it granted a batch, the rest is kept as the slot's allowance
        (the one it replaces goes back) and this request's reservation is its part of the batch's hold."""
        if admission.granted <= 1 or not admission.admitted:
            return admission
        amount = limits.budget.amount if limits.budget is not None else 0
        slot = _slot(limits)
        loop = asyncio.get_running_loop()
        allowance = Allowance(admission.reservation,
                              (limits.requests[0], admission.counted_at) if limits.requests is not None else None,
                              requests_left=admission.granted - 1, nanos_left=(admission.granted - 1) * amount,
                              ends=loop.time() + ALLOWANCE_SECONDS)
        replaced = self._kept.get(slot)
        self._kept[slot] = allowance
        if replaced is not None:
            self._give_back(replaced, ledger)
        loop.call_later(ALLOWANCE_SECONDS, self._end, slot, allowance, ledger)
        own = part_of(admission.reservation, amount, 0) if admission.reservation and amount > 0 else None
        return replace(admission, reservation=own)

    async def end(self, limits: Limits, ledger: Ledger) -> None:
        """Give back now what is left of the allowance for `limits`, one that could not cover a request:
        its hold would count against the step the request is about to take."""
        allowance = self._kept.pop(_slot(limits), None)
        if allowance is not None:
            await _give_back(ledger, *self._rest_of(allowance))

    def _end(self, slot: Slot, allowance: Allowance, ledger: Ledger) -> None:
        if self._kept.get(slot) is allowance:
            del self._kept[slot]
        self._give_back(allowance, ledger)

    def _give_back(self, allowance: Allowance, ledger: Ledger) -> None:
        task = asyncio.ensure_future(_give_back(ledger, *self._rest_of(allowance)))
        self._giving_back.add(task)
        task.add_done_callback(self._giving_back.discard)

    @staticmethod
    def _rest_of(allowance: Allowance) -> tuple[str | None, int, tuple[str, int, int] | None]:
        """What `allowance` has not handed out, as `Ledger.give_back` takes it; it hands out nothing more."""
        nanos, requests = allowance.nanos_left, allowance.requests_left
        allowance.nanos_left = allowance.requests_left = 0
        return allowance.reservation, nanos, (*allowance.requests, requests) if allowance.requests else None


async def _give_back(ledger: Ledger, reservation: str | None, nanos: int,
                     requests: tuple[str, int, int] | None) -> None:
    if nanos <= 0 and (requests is None or requests[2] <= 0):
        return
    try:
        await ledger.give_back(reservation, nanos, requests)
    except StoreUnavailable:
        pass  # the store's outage is logged once (`guard`); the hold expires, the requests slide out of the minute
    except Exception as error:  # noqa: BLE001  # the hold expires, the requests slide out of the minute
        log.warning("MPilot allowance not given back: %s", type(error).__name__)


def _slot(limits: Limits) -> Slot:
    budget = limits.budget
    return limits.requests, budget.counter if budget is not None else None, budget.limit if budget is not None else None
