"""The ledger's store as a state: every step has a deadline, and an outage is noticed once.

A step that does not answer within `deadline` seconds (connect and command: a hung Redis, a SQLite file
another process keeps write-locked) or cannot reach the store fails with `StoreUnavailable`, and the store
is *down*: from then on every step fails at once, without waiting, and one probe a `probe_every` seconds
(a task of the guard's own, not a client's request) asks the store again; the first that answers brings it
*up*. `changed(up, reason)` is told of each change (and of the first answer), so that the log says it
once per outage and what was kept meanwhile is settled as soon as the store is back.

Pure asyncio; knows nothing of LiteLLM.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from .ledger import Admission, Ledger, Limits, StoreBusy, StoreUnavailable

PROBE_COUNTER = "mpilot:{ledger}:probe"  # what a probe counts: a write, as every step of the ledger is
STORE_NAMES = {"redis": "Redis", "sqlite": "SQLite"}
RENAME_DEADLINE_SECONDS = 30.0  # the one-off move of an earlier layout's counters scans the store


class StoreGuard:
    """A `Ledger` that fails within `deadline` seconds, and at once while its store is down."""

    def __init__(self, ledger: Ledger, deadline: float, changed: Callable[[bool, str | None], None] | None = None,
                 probe_every: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ledger = ledger
        self.local = ledger.local
        self.kind = ledger.kind
        self.deadline = deadline
        self.probe_every = probe_every
        self._changed = changed
        self._clock = clock
        self.down_since: float | None = None  # by `clock`, while down
        self.reason: str | None = None  # why it went down, naming the store, never a key
        self._answered_at: float | None = None  # the last answer, by `clock`; None before the first
        self._recovering: asyncio.Task[None] | None = None

    @property
    def up(self) -> bool:
        return self.down_since is None

    async def _step(self, name: str, *args: Any, deadline: float | None = None) -> Any:
        if self.down_since is not None:
            raise StoreUnavailable(self.reason or f"{STORE_NAMES.get(self.kind, self.kind)} ledger is down")
        return await self._ask(getattr(self.ledger, name), *args, deadline=deadline)

    async def _ask(self, step: Any, *args: Any, deadline: float | None = None) -> Any:
        seconds = self.deadline if deadline is None else deadline
        try:
            async with asyncio.timeout(seconds):
                result = await step(*args)
        except TimeoutError:
            self._went_down(f"{STORE_NAMES.get(self.kind, self.kind)} ledger: no answer within {seconds:g} s")
            raise StoreUnavailable(self.reason) from None
        except StoreBusy:
            raise  # a step that chose not to wait: the store may well be up
        except StoreUnavailable as error:
            self._went_down(str(error))
            raise
        self._came_up()
        return result

    def _went_down(self, reason: str) -> None:
        if self.down_since is not None:
            return
        self.down_since, self.reason = self._clock(), reason
        if self._changed is not None:
            self._changed(False, reason)
        if self._recovering is None or self._recovering.done():
            self._recovering = asyncio.get_running_loop().create_task(self._recover())

    def _came_up(self) -> None:
        first = self._answered_at is None
        self._answered_at = self._clock()
        if self.down_since is None and not first:
            return
        self.down_since, self.reason = None, None
        if self._changed is not None:
            self._changed(True, None)

    async def _recover(self) -> None:
        """Probes the store once every `probe_every` seconds until it answers."""
        while self.down_since is not None:
            await asyncio.sleep(self.probe_every)
            try:
                await self._probe()
            except StoreUnavailable:
                continue

    async def _probe(self) -> None:
        await self._ask(self.ledger.add_to_rate, PROBE_COUNTER, 1)

    async def ready(self) -> bool:
        """Whether the store answers: down, no; answered within `probe_every` seconds, yes; else asked now."""
        if self.down_since is not None:
            return False
        if self._answered_at is not None and self._clock() - self._answered_at < self.probe_every:
            return True
        try:
            await self._probe()
        except StoreUnavailable:
            return False
        return True

    async def admit(self, limits: Limits) -> Admission:
        return await self._step("admit", limits)

    async def settle(self, reservation: str | None, amount: int, counters: Sequence[tuple[str, int]],
                     call: str | None = None) -> None:
        await self._step("settle", reservation, amount, counters, call)

    async def give_back(self, reservation: str | None, nanos: int, requests: tuple[str, int, int] | None) -> None:
        await self._step("give_back", reservation, nanos, requests)

    async def spent(self, counter: str) -> int:
        return await self._step("spent", counter)

    async def rate_used(self, counter: str) -> int:
        return await self._step("rate_used", counter)

    async def add_to_rate(self, counter: str, amount: int) -> None:
        await self._step("add_to_rate", counter, amount)

    async def rename(self, renamed: Callable[[str], str | None], prefix: str) -> int:
        return await self._step("rename", renamed, prefix, deadline=max(self.deadline, RENAME_DEADLINE_SECONDS))
