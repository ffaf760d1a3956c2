"""Spend that could not be settled when its call was answered (the ledger's store was down), kept on local disk
until the store is back, then settled exactly once, in the order it was answered.

Each process appends to a file of its own (`journal-<pid>-<random>.jsonl` in `folder`), which it holds an
exclusive `flock` on while it lives: one JSON line per settlement (`{"settle": {...}}`), one per settlement
done (`{"done": call}`), each written with a single `write` to a file opened `O_APPEND`, so a line is whole
or absent (a torn last line, from a machine that lost power mid-write, is skipped). The settlements a
process journalled are settled by it when the store is back; a file whose process died (its lock is free) is
settled by the next process that replays, then deleted. A replayed settlement carries its call's name, which
the ledger counts once (`ledger.SETTLED_MEMORY_SECONDS`), and is marked done before the next, so a replay
cut short and run again counts each once.

Bounded: past `max_bytes` written since its file was last emptied a process journals no more (and says so);
its file is emptied whenever all it holds is settled. Written to the page cache, not synced: a proxy killed
by a signal loses nothing; a machine that loses power may lose the last second or so. Knows nothing of
LiteLLM.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .ledger import Ledger

PATTERN = "journal-*.jsonl"


@dataclass(frozen=True)
class Settlement:
    """What `Ledger.settle` was to take: `call` names it, so that it counts once."""

    call: str
    reservation: str | None
    amount: int
    counters: tuple[tuple[str, int], ...]

    def line(self) -> bytes:
        return _line({"settle": {"call": self.call, "reservation": self.reservation, "amount": self.amount,
                                 "counters": [list(counter) for counter in self.counters]}})

    @classmethod
    def of(cls, entry: Any) -> Settlement | None:
        """The settlement a journal line holds, or None for one that is not whole."""
        try:
            call, reservation, amount = entry["call"], entry["reservation"], entry["amount"]
            counters = tuple((str(name), int(ttl)) for name, ttl in entry["counters"])
        except (KeyError, TypeError, ValueError):
            return None
        if not isinstance(call, str) or not isinstance(amount, int) or not isinstance(reservation, str | None):
            return None
        return cls(call, reservation, amount, counters)


class Journal:
    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self._fd: int | None = None
        self._path: Path | None = None
        self._bytes = 0  # bytes of settlements written to this process's file since it was last emptied
        self._pending: OrderedDict[str, Settlement] = OrderedDict()
        self._replaying = False

    @property
    def pending(self) -> int:
        """Settlements this process journalled and has not settled yet."""
        return len(self._pending)

    def left_behind(self) -> bool:
        """Whether the folder holds journals of other processes (one look, no lock taken)."""
        try:
            return any(path != self._path for path in self.folder.glob(PATTERN))
        except OSError:
            return False

    def record(self, settlement: Settlement) -> bool:
        """Kept until `replay`; False when it could not be (the journal is full, or its folder not writable)."""
        line = settlement.line()
        if settlement.call in self._pending:
            return True
        if self._bytes + len(line) > self.max_bytes:
            return False
        try:
            fd = self._own()
            os.write(fd, line)
        except OSError:
            return False
        self._bytes += len(line)
        self._pending[settlement.call] = settlement
        return True

    def _own(self) -> int:
        if self._fd is None:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = self.folder / f"journal-{os.getpid()}-{secrets.token_hex(4)}.jsonl"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new name: no one else holds it
            self._fd, self._path = fd, path
        return self._fd

    async def replay(self, ledger: Ledger) -> int:
        """Settles what this process journalled, then what processes that died left; returns how many.
        Stops at the first step that fails (`StoreUnavailable`), the rest kept for the next replay."""
        if self._replaying:
            return 0
        self._replaying = True
        try:
            return await self._replay_own(ledger) + await self._replay_orphans(ledger)
        finally:
            self._replaying = False

    async def _replay_own(self, ledger: Ledger) -> int:
        settled = 0
        for call, settlement in list(self._pending.items()):
            await _settle(ledger, settlement)
            os.write(self._own(), _line({"done": call}))
            del self._pending[call]
            settled += 1
        if self._fd is not None and not self._pending:
            os.ftruncate(self._fd, 0)  # appends go on at the new end
            self._bytes = 0
        return settled

    async def _replay_orphans(self, ledger: Ledger) -> int:
        settled = 0
        try:
            files = sorted(self.folder.glob(PATTERN), key=_modified)
        except OSError:
            return 0
        for path in files:
            if path == self._path:
                continue
            with _orphan(path) as fd:
                if fd is None:
                    continue  # its process lives, and settles it itself
                pending = _unsettled(path)
                if not _ends_a_line(path):
                    os.write(fd, b"\n")  # after a torn line, a done mark starts a line of its own
                for settlement in pending:
                    await _settle(ledger, settlement)
                    os.write(fd, _line({"done": settlement.call}))
                    settled += 1
                path.unlink(missing_ok=True)
        return settled


async def _settle(ledger: Ledger, settlement: Settlement) -> None:
    await ledger.settle(settlement.reservation, settlement.amount, settlement.counters, settlement.call)


def _line(entry: dict[str, Any]) -> bytes:
    return (json.dumps(entry, separators=(",", ":")) + "\n").encode()


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


@contextlib.contextmanager
def _orphan(path: Path) -> Iterator[int | None]:
    """The file, locked, if no living process holds it; else None."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except OSError:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        yield fd
    finally:
        os.close(fd)


def _ends_a_line(path: Path) -> bool:
    with open(path, "rb") as file:
        file.seek(0, os.SEEK_END)
        if file.tell() == 0:
            return True
        file.seek(-1, os.SEEK_END)
        return file.read(1) == b"\n"


def _unsettled(path: Path) -> list[Settlement]:
    """A journal file's settlements not marked done, in the order they were written."""
    pending: OrderedDict[str, Settlement] = OrderedDict()
    with open(path, "rb") as lines:
        for raw in lines:
            try:
                entry = json.loads(raw)
            except ValueError:
                continue  # a torn line
            if not isinstance(entry, dict):
                continue
            if "done" in entry:
                pending.pop(str(entry["done"]), None)
            elif (settlement := Settlement.of(entry.get("settle"))) is not None:
                pending.setdefault(settlement.call, settlement)
    return list(pending.values())
