"""The ledger: what virtual keys have spent, what their calls in flight have reserved, and how many
requests and tokens they used in the last minute; shared by every worker of a proxy (SQLite in WAL mode
on the machine) or by every proxy (Redis). Each check-and-change is one atomic step in the store, so a
limit that holds one request at a time holds at 20 at once.

Money is counted in integer nano-dollars, never as float sums: ten answers of $0.025 are exactly
$0.25. A reservation expires by itself (`ttl`), so a proxy that dies mid-call does not hold a key's
budget forever. Pure apart from its two stores; knows nothing of LiteLLM.

A step may admit a batch of requests at once (`Limits.batch`), for a process to hand out itself without a
round trip to the store, only where every limit has room for `BATCH_ROOM` batches: their requests are
counted and their cost reserved as one hold, which each call settles its part of (`part_of`), and what the
process did not hand out it gives back (`give_back`).

Work per step is bounded, however many calls are in flight: each budget keeps a running total of what
its holds reserve next to its spend, and an index of the holds by expiry, so a step sweeps only holds
that are due, at most `SWEEP_MOST` of them (more than a step adds: a backlog only shrinks). On Redis,
everything one step touches lives under one hash tag (see `near`), so it runs on a Redis Cluster as one
script on one slot; counters of other owners (a user's, a team's spend) are settled in steps of their own,
each done once per call (`SETTLED_MEMORY_SECONDS`), so a settlement a client retried counts once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Literal, Protocol

from redis import exceptions as redis_errors

NANOS_PER_DOLLAR = 1_000_000_000
RATE_WINDOW_SECONDS = 60  # rpm and tpm limits: a sliding minute, in one-second buckets
PURGE_EVERY_SECONDS = 1.0  # SQLite: how often one process deletes what has expired
# SQLite: each step writes the pages it changed to the write-ahead log, a few rows each; 1 KiB pages
# instead of 4 KiB make a step ~30% cheaper (an admission and its settlement: ~180 -> ~130 us here)
PAGE_BYTES = 1024
BATCH_ROOM = 100  # a batch of admissions is granted only where every limit has room for this many of it
SWEEP_MOST = 64  # expired holds a step drops at most (each step adds one hold at most)
SETTLED_MEMORY_SECONDS = 300  # how long a settlement's name is kept, so that one made again counts once


def to_nanos(dollars: float | int | str | Decimal) -> int:
    """Dollars as integer nano-dollars, rounded half up; floats by their shortest repr (0.1 -> 100000000)."""
    return int((Decimal(repr(dollars) if isinstance(dollars, float) else str(dollars)) * NANOS_PER_DOLLAR)
               .to_integral_value(rounding=ROUND_HALF_UP))


def to_dollars(nanos: int) -> Decimal:
    return Decimal(nanos) / NANOS_PER_DOLLAR


@dataclass(frozen=True)
class Budget:
    """A reservation to make: `amount` against `limit` on `counter`, held for `ttl` seconds at most.
    `spent_elsewhere`: spend kept outside the ledger (LiteLLM's database) that counts too."""

    counter: str
    limit: int
    amount: int
    ttl: int
    spent_elsewhere: int = 0


@dataclass(frozen=True)
class Limits:
    """What one request must fit, all checked (and counted) in one atomic step: a request a minute on
    `requests` (counter, limit), the tokens of the last minute on `tokens` (counter, limit; its use is
    added after the call), and its reservation against `budget`."""

    requests: tuple[str, int] | None = None
    tokens: tuple[str, int] | None = None
    budget: Budget | None = None
    batch: int = 1  # admit up to this many requests (each reserving `budget.amount`), see `BATCH_ROOM`


Refusal = Literal["requests", "tokens", "budget"]


class StoreUnavailable(Exception):
    """The ledger's store could not be reached or could not take the step (down, failing over, locked):
    nothing of the step was counted. Names the store, never a key."""


class StoreBusy(StoreUnavailable):
    """A step asked not to wait (`patience(False)`) found the store busy (another process holds the SQLite
    file's write lock): nothing was counted, and the store is not known to be down."""


_waits: ContextVar[bool] = ContextVar("mpilot_ledger_waits", default=True)


@contextlib.contextmanager
def patience(waits: bool) -> Iterator[None]:
    """Whether the SQLite steps run inside may wait for another process's lock (they retry until their
    bound) or fail at once with `StoreBusy`: a settlement made before its answer goes out must not hold it."""
    token = _waits.set(waits)
    try:
        yield
    finally:
        _waits.reset(token)


@dataclass(frozen=True)
class Admission:
    refused_by: Refusal | None  # None: admitted, the request counted and its cost reserved
    used: int = 0  # requests or tokens of the last minute, for a rate refusal
    retry_after: int = 0  # whole seconds until the minute has room again, for a rate refusal
    spent: int = 0  # the budget counter's spend (spent elsewhere included) before this request
    held: int = 0  # what calls in flight had reserved before this request
    reservation: str | None = None  # what `settle` takes back; None when nothing was reserved
    granted: int = 1  # requests admitted (a batch: their reservations are one hold, of granted x amount)
    counted_at: int = 0  # the second the requests were counted in, for `give_back`

    @property
    def admitted(self) -> bool:
        return self.refused_by is None


class Ledger(Protocol):
    local: bool  # each step is a transaction in this process's thread that never yields to the event loop
    kind: str  # the store, for logs and health: "sqlite", "redis"

    async def admit(self, limits: Limits) -> Admission:
        """Refused by the first limit the request does not fit, else counted and its cost reserved: a
        budget fits while spent + reserved + amount <= limit (and spent + reserved < limit)."""
        ...

    async def settle(self, reservation: str | None, amount: int, counters: Sequence[tuple[str, int]],
                     call: str | None = None) -> None:
        """Drop `reservation` (if still held; a `part_of` one: that part of its hold) and add `amount` to each
        (counter, ttl seconds). `call` names the settlement (default: the reservation, else a new id): one
        settled again under the same name within `SETTLED_MEMORY_SECONDS` counts once. Atomic per owner (on
        Redis, the reservation's budget and the counters that share its owner are one step, each other owner's
        counters one of their own; on SQLite, all of it is one transaction)."""
        ...

    async def give_back(self, reservation: str | None, nanos: int, requests: tuple[str, int, int] | None) -> None:
        """What a batch's process did not hand out: `nanos` of its hold, and (counter, second, count)
        requests counted in that second, where they are still counted. One atomic step."""
        ...

    async def spent(self, counter: str) -> int: ...

    async def rate_used(self, counter: str) -> int: ...

    async def add_to_rate(self, counter: str, amount: int) -> None: ...

    async def rename(self, renamed: Callable[[str], str | None], prefix: str) -> int:
        """Spend counters kept under an earlier layout of names (starting with `prefix`) move to
        `renamed(name)`, added to what is there; returns how many moved. Safe to run from every process."""
        ...


def _reservation_id(counter: str) -> str:
    return f"{uuid.uuid4().hex}@{counter}"


def _held_counter(reservation: str) -> str:
    return _split_part(reservation)[0].split("@", 1)[1]


def part_of(reservation: str, nanos: int, serial: int) -> str:
    """The reservation of one call of a batch, the batch's `serial`th: `nanos` of the batch's hold, which
    `settle` takes back. Each is a name of its own, so that its end can be told from another call's."""
    return f"{reservation}#{serial}:{nanos}"


def _split_part(reservation: str) -> tuple[str, int | None]:
    """(the hold's id, the part of it, or None for all of it). Hold ids are `hex@counter`, counters are
    the plugin's names (hex key ids): no `#` in them."""
    hold, sep, tail = reservation.rpartition("#")
    serial, colon, nanos = tail.partition(":")
    if sep and colon and serial.isdigit() and nanos.isdigit():
        return hold, int(nanos)
    return reservation, None


def _retry_after(oldest_second: int | None, now: float) -> int:
    if oldest_second is None:
        return 1
    return max(1, math.ceil(oldest_second + RATE_WINDOW_SECONDS - now))


# --- SQLite: every worker of one machine ---------------------------------------------------------------

# `held`: each budget counter's running total of its holds, so an admission reads one row however many
# calls are in flight. Every expiry has an index, so what is due is found without a scan.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL, expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS counters_by_expiry ON counters (expires_at);
CREATE TABLE IF NOT EXISTS holds (id TEXT PRIMARY KEY, counter TEXT NOT NULL, nanos INTEGER NOT NULL,
                                  expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS holds_by_counter ON holds (counter, expires_at);
CREATE INDEX IF NOT EXISTS holds_by_expiry ON holds (expires_at);
CREATE TABLE IF NOT EXISTS held (counter TEXT PRIMARY KEY, nanos INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rate (counter TEXT NOT NULL, second INTEGER NOT NULL, amount INTEGER NOT NULL,
                                 PRIMARY KEY (counter, second));
CREATE INDEX IF NOT EXISTS rate_by_second ON rate (second);
CREATE TABLE IF NOT EXISTS settled (call TEXT PRIMARY KEY, expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS settled_by_expiry ON settled (expires_at);
"""
SCHEMA_VERSION = 2  # 2: `held` totals (a file of version 1 has its holds totalled once, on opening)
PURGE_MOST = 1_000  # rows of each table one purge deletes at most; a purge that hit it runs again next step
BUSY_BACKOFF_FIRST = 0.001  # seconds a step waits before it tries a locked file again, doubled each time
BUSY_BACKOFF_MOST = 0.05


def _locked(error: sqlite3.OperationalError) -> bool:
    """Another connection holds the lock the step needs (SQLITE_BUSY / SQLITE_LOCKED): worth another try."""
    return "locked" in str(error) or "busy" in str(error)


class SqliteLedger:
    """One file that every worker process of the machine opens; each change is a `BEGIN IMMEDIATE`
    transaction, so workers take turns.

    Runs in the caller's thread: a transaction takes tens of microseconds, while handing it to a thread
    of its own cost ~2 ms per request under load (that thread waits for the GIL, which a busy event loop
    gives up every 5 ms; bench/auth_overhead). A lock serialises callers from LiteLLM's other threads.

    Never blocks the event loop on another process's lock (a backup, an admin's `sqlite3` shell): the
    connection waits for no lock (busy timeout 0); a step that finds the file locked gives the loop back
    and tries again (`asyncio.sleep`, backoff up to `BUSY_BACKOFF_MOST`) for `busy_seconds`, then fails
    with `StoreUnavailable` (a deadline around the step, `guard.StoreGuard`, ends the wait sooner)."""

    local = True
    kind = "sqlite"

    def __init__(self, path: Path, clock: Any = time.time, busy_seconds: float = 5.0) -> None:
        self.path = path
        self._clock = clock
        self._busy_seconds = busy_seconds
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._purged_at = 0.0

    @staticmethod
    def check(path: Path) -> None:
        """Open (and create) the file now, so a proxy that could not share its limits refuses to start."""
        db = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            _sqlite_prepare(db)
        finally:
            db.close()

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)
            try:
                _sqlite_prepare(db)
                db.execute("PRAGMA synchronous=NORMAL")
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    async def _run(self, step: Any, *args: Any) -> Any:
        pause, waited_until = BUSY_BACKOFF_FIRST, time.monotonic() + self._busy_seconds
        while True:
            with self._lock:
                try:
                    db = self._connection()
                    db.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as error:
                    if not _locked(error):
                        raise
                    locked = error
                else:
                    return self._step(db, step, *args)
            if not _waits.get():
                raise StoreBusy(f"SQLite ledger {self.path.name}: {locked}")
            if time.monotonic() + pause > waited_until:
                raise StoreUnavailable(f"SQLite ledger {self.path.name}: {locked} (another process has held "
                                       f"its write lock for {self._busy_seconds:g} s)")
            await asyncio.sleep(pause)  # the event loop serves other requests meanwhile
            pause = min(pause * 2, BUSY_BACKOFF_MOST)

    def _step(self, db: sqlite3.Connection, step: Any, *args: Any) -> Any:
        """`step` in the transaction just begun; committed, or rolled back if it raised."""
        try:
            now = self._clock()
            if not now - PURGE_EVERY_SECONDS < self._purged_at <= now:
                self._purged_at = now if _sqlite_purge(db, now) else 0.0
            result = step(db, now, *args)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    async def admit(self, limits: Limits) -> Admission:
        return await self._run(_sqlite_admit, limits)

    async def settle(self, reservation: str | None, amount: int, counters: Sequence[tuple[str, int]],
                     call: str | None = None) -> None:
        if reservation is None and (amount <= 0 or not counters):
            return
        await self._run(_sqlite_settle, reservation, amount, tuple(counters), call or reservation or uuid.uuid4().hex)

    async def give_back(self, reservation: str | None, nanos: int, requests: tuple[str, int, int] | None) -> None:
        await self._run(_sqlite_give_back, reservation, nanos, requests)

    async def spent(self, counter: str) -> int:
        return await self._run(_sqlite_spent, counter)

    async def rate_used(self, counter: str) -> int:
        return await self._run(_sqlite_rate_used, counter)

    async def add_to_rate(self, counter: str, amount: int) -> None:
        await self._run(_sqlite_add_to_rate, counter, amount)

    async def rename(self, renamed: Callable[[str], str | None], prefix: str) -> int:
        return await self._run(_sqlite_rename, renamed, prefix)


def _sqlite_prepare(db: sqlite3.Connection) -> None:
    db.execute(f"PRAGMA page_size={PAGE_BYTES}")  # a new file only: an existing one keeps its own
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("BEGIN IMMEDIATE")  # one process brings a file to this version, the others then see it
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version < SCHEMA_VERSION:
            # Statement by statement: `executescript` would commit the transaction first.
            for statement in filter(None, (part.strip() for part in _SCHEMA.split(";"))):
                db.execute(statement)
            db.execute("DELETE FROM held")
            db.execute("INSERT INTO held (counter, nanos) SELECT counter, SUM(nanos) FROM holds GROUP BY counter")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _sqlite_spent(db: sqlite3.Connection, now: float, counter: str) -> int:
    row = db.execute("SELECT value FROM counters WHERE name = ? AND expires_at > ?", (counter, now)).fetchone()
    return int(row[0]) if row else 0


def _sqlite_purge(db: sqlite3.Connection, now: float) -> bool:
    """Forget what has expired, of every counter (reads skip it until then), `PURGE_MOST` rows of a table
    at most; whether all of it is gone."""
    due = db.execute("SELECT id, counter, nanos FROM holds WHERE expires_at <= ? ORDER BY expires_at LIMIT ?",
                     (now, PURGE_MOST)).fetchall()
    _sqlite_drop_holds(db, due)
    rate = db.execute("DELETE FROM rate WHERE rowid IN (SELECT rowid FROM rate WHERE second <= ? LIMIT ?)",
                      (int(now) - RATE_WINDOW_SECONDS, PURGE_MOST)).rowcount
    counters = db.execute("DELETE FROM counters WHERE rowid IN "
                          "(SELECT rowid FROM counters WHERE expires_at <= ? LIMIT ?)", (now, PURGE_MOST)).rowcount
    settled = db.execute("DELETE FROM settled WHERE rowid IN "
                         "(SELECT rowid FROM settled WHERE expires_at <= ? LIMIT ?)", (now, PURGE_MOST)).rowcount
    return max(len(due), rate, counters, settled) < PURGE_MOST


def _sqlite_drop_holds(db: sqlite3.Connection, holds: Sequence[tuple[str, str, int]]) -> None:
    """Drop (id, counter, nanos) holds, taking each out of its counter's held total."""
    if not holds:
        return
    db.executemany("DELETE FROM holds WHERE id = ?", [(hold_id,) for hold_id, _, _ in holds])
    totals: dict[str, int] = {}
    for _, counter, nanos in holds:
        totals[counter] = totals.get(counter, 0) + nanos
    _sqlite_add_held(db, totals.items(), sign=-1)


def _sqlite_add_held(db: sqlite3.Connection, amounts: Any, sign: int = 1) -> None:
    changes = [(counter, sign * nanos) for counter, nanos in amounts]
    db.executemany("INSERT INTO held (counter, nanos) VALUES (?, ?) "
                   "ON CONFLICT (counter) DO UPDATE SET nanos = nanos + excluded.nanos", changes)
    if sign < 0:
        db.executemany("DELETE FROM held WHERE counter = ? AND nanos <= 0", [(c,) for c, _ in changes])


def _sqlite_admit(db: sqlite3.Connection, now: float, limits: Limits) -> Admission:
    rates: tuple[tuple[Refusal, tuple[str, int] | None], ...] = (("requests", limits.requests),
                                                                   ("tokens", limits.tokens))
    requests_used = 0
    for refusal, rate in rates:
        if rate is not None:
            used, oldest = _sqlite_rate_window(db, now, rate[0])
            if used >= rate[1]:
                return Admission(refusal, used=used, retry_after=_retry_after(oldest, now))
            if refusal == "requests":
                requests_used = used
    spent = held = 0
    reservation = None
    budget = limits.budget
    if budget is not None:
        _sqlite_drop_holds(db, db.execute(
            "SELECT id, counter, nanos FROM holds WHERE counter = ? AND expires_at <= ? LIMIT ?",
            (budget.counter, now, SWEEP_MOST)).fetchall())
        spent, held = db.execute(
            "SELECT (SELECT COALESCE(MAX(value), 0) FROM counters WHERE name = ?1 AND expires_at > ?2), "
            "(SELECT COALESCE(MAX(nanos), 0) FROM held WHERE counter = ?1)", (budget.counter, now)).fetchone()
        spent, held = int(spent) + budget.spent_elsewhere, int(held)
        if spent + held >= budget.limit or spent + held + budget.amount > budget.limit:
            return Admission("budget", spent=spent, held=held)
    granted = _granted(limits, requests_used, spent + held)
    if budget is not None and budget.amount > 0:
        reservation = _reservation_id(budget.counter)
        db.execute("INSERT INTO holds (id, counter, nanos, expires_at) VALUES (?, ?, ?, ?)",
                   (reservation, budget.counter, granted * budget.amount, now + budget.ttl))
        _sqlite_add_held(db, [(budget.counter, granted * budget.amount)])
    if limits.requests is not None:
        _sqlite_add_to_rate(db, now, limits.requests[0], granted)
    return Admission(None, spent=spent, held=held, reservation=reservation, granted=granted, counted_at=int(now))


def _granted(limits: Limits, requests_used: int, committed: int) -> int:
    """How many requests one step admits: `limits.batch` where every limit has room for `BATCH_ROOM` such
    batches (none with a tokens limit, whose use is known only after the calls), else one."""
    if limits.batch <= 1 or limits.tokens is not None:
        return 1
    granted = limits.batch
    if limits.requests is not None:
        granted = min(granted, (limits.requests[1] - requests_used) // BATCH_ROOM)
    budget = limits.budget
    if budget is not None and budget.amount > 0:
        granted = min(granted, (budget.limit - committed) // (BATCH_ROOM * budget.amount))
    return max(granted, 1)


def _sqlite_settle(db: sqlite3.Connection, now: float, reservation: str | None, amount: int,
                   counters: tuple[tuple[str, int], ...], call: str) -> None:
    if not db.execute("INSERT OR IGNORE INTO settled (call, expires_at) VALUES (?, ?)",
                      (call, now + SETTLED_MEMORY_SECONDS)).rowcount:
        return  # settled before under this name
    if reservation is not None:
        hold, part = _split_part(reservation)
        _sqlite_take_from_hold(db, hold, part)
    if amount <= 0:
        return
    for name, ttl in counters:  # a counter that has expired starts again from this amount
        _sqlite_add_to_counter(db, now, name, amount, now + ttl)


def _sqlite_add_to_counter(db: sqlite3.Connection, now: float, name: str, amount: int, expires_at: float) -> None:
    db.execute("INSERT INTO counters (name, value, expires_at) VALUES (?1, ?2, ?3) ON CONFLICT (name) DO UPDATE "
               "SET value = CASE WHEN expires_at <= ?4 THEN excluded.value ELSE value + excluded.value END, "
               "expires_at = CASE WHEN expires_at <= ?4 THEN excluded.expires_at "
               "ELSE MAX(expires_at, excluded.expires_at) END", (name, amount, expires_at, now))


def _sqlite_take_from_hold(db: sqlite3.Connection, hold: str, part: int | None) -> None:
    """`part` nanos of the hold `hold` (None: all of it), out of its counter's held total too."""
    row = db.execute("SELECT counter, nanos FROM holds WHERE id = ?", (hold,)).fetchone()
    if row is None:
        return
    counter, nanos = row
    if part is not None and part < nanos:
        db.execute("UPDATE holds SET nanos = nanos - ? WHERE id = ?", (part, hold))
        _sqlite_add_held(db, [(counter, part)], sign=-1)
    else:
        _sqlite_drop_holds(db, [(hold, counter, nanos)])


def _sqlite_give_back(db: sqlite3.Connection, now: float, reservation: str | None, nanos: int,
                      requests: tuple[str, int, int] | None) -> None:
    if reservation is not None and nanos > 0:
        _sqlite_take_from_hold(db, _split_part(reservation)[0], nanos)
    if requests is not None and requests[2] > 0:
        counter, second, count = requests
        db.execute("UPDATE rate SET amount = amount - ? WHERE counter = ? AND second = ?", (count, counter, second))
        db.execute("DELETE FROM rate WHERE counter = ? AND second = ? AND amount <= 0", (counter, second))


def _sqlite_rate_window(db: sqlite3.Connection, now: float, counter: str) -> tuple[int, int | None]:
    used, oldest = db.execute("SELECT COALESCE(SUM(amount), 0), MIN(second) FROM rate "
                              "WHERE counter = ? AND second > ?", (counter, int(now) - RATE_WINDOW_SECONDS)).fetchone()
    return int(used), oldest


def _sqlite_rate_used(db: sqlite3.Connection, now: float, counter: str) -> int:
    return _sqlite_rate_window(db, now, counter)[0]


def _sqlite_add_to_rate(db: sqlite3.Connection, now: float, counter: str, amount: int) -> None:
    db.execute("INSERT INTO rate (counter, second, amount) VALUES (?, ?, ?) "
               "ON CONFLICT (counter, second) DO UPDATE SET amount = amount + excluded.amount",
               (counter, int(now), amount))


def _sqlite_rename(db: sqlite3.Connection, now: float, renamed: Callable[[str], str | None], prefix: str) -> int:
    rows = db.execute("SELECT name, value, expires_at FROM counters WHERE name >= ? AND name < ? AND expires_at > ?",
                      (prefix, prefix + "\U0010ffff", now)).fetchall()
    moved = 0
    for name, value, expires_at in rows:
        new = renamed(name)
        if new is None or new == name:
            continue
        _sqlite_add_to_counter(db, now, new, value, expires_at)
        db.execute("DELETE FROM counters WHERE name = ?", (name,))
        moved += 1
    return moved


# --- Redis: every proxy ---------------------------------------------------------------------------------

def hash_tag(name: str) -> str:
    """What Redis Cluster hashes of a key's name to choose its slot: the text of its first `{...}`, if
    not empty, else the whole name."""
    start = name.find("{")
    if start >= 0:
        end = name.find("}", start + 1)
        if end > start + 1:
            return name[start + 1:end]
    return name


def near(name: str, suffix: str) -> str:
    """A name for `suffix` of `name`'s that lives in the same slot of a Redis Cluster as `name`."""
    return f"{name}:{suffix}" if hash_tag(name) != name else f"{{{name}}}:{suffix}"


# The window of a rate hash (second -> amount, at most a minute of seconds): drops seconds older than a
# minute, returns used, oldest.
_RATE_WINDOW = """
local function window(key, now, length)
  local oldest_allowed = math.floor(now) - length
  local used, oldest = 0, -1
  local entries = redis.call('HGETALL', key)
  for i = 1, #entries, 2 do
    local second = tonumber(entries[i])
    if second <= oldest_allowed then
      redis.call('HDEL', key, entries[i])
    else
      used = used + tonumber(entries[i + 1])
      if oldest < 0 or second < oldest then oldest = second end
    end
  end
  return used, oldest
end
"""

# A budget's holds: `holds` (hash id -> nanos), `held` (their total) and `due` (sorted set id -> expiry).
# Amounts are passed to Redis as the strings they are (integer commands: exact).
_HOLDS = """
local function sweep(holds, held, due, now, most)
  local ids = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, most)
  if #ids == 0 then return end
  for _, id in ipairs(ids) do
    local nanos = redis.call('HGET', holds, id)
    if nanos then redis.call('DECRBY', held, nanos) end
  end
  redis.call('HDEL', holds, unpack(ids))
  redis.call('ZREM', due, unpack(ids))
end

local function take_from_hold(holds, held, due, id, part)
  local nanos = redis.call('HGET', holds, id)
  if not nanos then return end
  if part ~= '' and tonumber(part) < tonumber(nanos) then
    redis.call('HINCRBY', holds, id, '-' .. part)
    redis.call('DECRBY', held, part)
  else
    redis.call('DECRBY', held, nanos)
    redis.call('HDEL', holds, id)
    redis.call('ZREM', due, id)
  end
end
"""

# KEYS: requests hash, tokens hash, spend counter, holds, held, due (those of an absent limit are named,
# in the same slot, but not touched). ARGV: now, window, requests limit, tokens limit, budget (each -1
# when absent), amount, ttl, id, spent elsewhere, batch, batch room, sweep most, the hold's expiry.
# Numbers are Lua doubles: exact up to 2^53 nano-dollars (about $9 million) per counter.
_ADMIT = _RATE_WINDOW + _HOLDS + """
local now, length = tonumber(ARGV[1]), tonumber(ARGV[2])
local limits = {tonumber(ARGV[3]), tonumber(ARGV[4])}
local requests_used = 0
for i = 1, 2 do
  if limits[i] >= 0 then
    local used, oldest = window(KEYS[i], now, length)
    if used >= limits[i] then return {i, used, oldest, 0, 0, 0} end
    if i == 1 then requests_used = used end
  end
end
local budget, amount, ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local spent, held = 0, 0
if budget >= 0 then
  spent = tonumber(redis.call('GET', KEYS[3]) or '0') + tonumber(ARGV[9])
  sweep(KEYS[4], KEYS[5], KEYS[6], now, tonumber(ARGV[12]))
  held = tonumber(redis.call('GET', KEYS[5]) or '0')
  if spent + held >= budget or spent + held + amount > budget then return {3, 0, -1, spent, held, 0} end
end
local granted, room = tonumber(ARGV[10]), tonumber(ARGV[11])
if granted > 1 and limits[2] < 0 then
  if limits[1] >= 0 then granted = math.min(granted, math.floor((limits[1] - requests_used) / room)) end
  if budget >= 0 and amount > 0 then
    granted = math.min(granted, math.floor((budget - spent - held) / (room * amount)))
  end
end
if granted < 1 or limits[2] >= 0 then granted = 1 end
if budget >= 0 and amount > 0 then
  local nanos = string.format('%.0f', granted * amount)
  redis.call('HSET', KEYS[4], ARGV[8], nanos)
  redis.call('ZADD', KEYS[6], ARGV[13], ARGV[8])
  redis.call('INCRBY', KEYS[5], nanos)
  for i = 4, 6 do
    if redis.call('TTL', KEYS[i]) < ttl then redis.call('EXPIRE', KEYS[i], ttl + 1) end
  end
end
if limits[1] >= 0 then
  redis.call('HINCRBY', KEYS[1], tostring(math.floor(now)), granted)
  redis.call('EXPIRE', KEYS[1], length + 2)
end
return {0, 0, -1, spent, held, granted}
"""

# KEYS: the settlement's mark, holds, held, due, counters... ARGV: how long the mark is kept, hold id
# ('': none), part ('': all of it), amount, ttl of each counter (ARGV[i] for KEYS[i], i >= 5).
_SETTLE = _HOLDS + """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
if ARGV[2] ~= '' then take_from_hold(KEYS[2], KEYS[3], KEYS[4], ARGV[2], ARGV[3]) end
if tonumber(ARGV[4]) <= 0 then return 1 end
for i = 5, #KEYS do
  redis.call('INCRBY', KEYS[i], ARGV[4])
  local ttl = tonumber(ARGV[i])
  if redis.call('TTL', KEYS[i]) < ttl then redis.call('EXPIRE', KEYS[i], ttl) end
end
return 1
"""

# KEYS: holds, held, due, requests hash. ARGV: hold id ('': none), nanos, second, count.
_GIVE_BACK = _HOLDS + """
if ARGV[1] ~= '' and tonumber(ARGV[2]) > 0 then take_from_hold(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2]) end
local count = tonumber(ARGV[4])
if count > 0 and redis.call('HEXISTS', KEYS[4], ARGV[3]) == 1 then
  if redis.call('HINCRBY', KEYS[4], ARGV[3], -count) <= 0 then redis.call('HDEL', KEYS[4], ARGV[3]) end
end
return 1
"""

# KEYS: rate hash. ARGV: now, window, amount to add (0: just read). Returns the use before the addition.
_RATE = _RATE_WINDOW + """
local now, length, amount = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local used = window(KEYS[1], now, length)
if amount > 0 then
  redis.call('HINCRBY', KEYS[1], tostring(math.floor(now)), amount)
  redis.call('EXPIRE', KEYS[1], length + 2)
end
return used
"""

# KEYS: an old counter, its new name (one Redis server: the old layout never ran on a cluster).
_RENAME = """
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
redis.call('INCRBY', KEYS[2], value)
local kept = redis.call('PTTL', KEYS[2])
if ttl > 0 and (kept < 0 or kept < ttl) then redis.call('PEXPIRE', KEYS[2], ttl) end
redis.call('DEL', KEYS[1])
return 1
"""

_REFUSALS: tuple[Refusal | None, ...] = (None, "requests", "tokens", "budget")
RENAMED_MARK = "mpilot:{ledger}:renamed"  # set once the earlier layout's counters have all been moved


class RedisLedger:
    """The same ledger in Redis, for several proxies; each step is one Lua script (atomic in Redis), on
    one hash slot. `client`: a `redis.asyncio` client (a server, a Sentinel's master, or a cluster)."""

    local = False
    kind = "redis"

    def __init__(self, client: Any, clock: Any = time.time, cluster: bool = False) -> None:
        self._client = client
        self._clock = clock
        self._cluster = cluster
        self._admit = _reaching(client.register_script(_ADMIT))
        self._settle = _reaching(client.register_script(_SETTLE))
        self._give_back = _reaching(client.register_script(_GIVE_BACK))
        self._rate = _reaching(client.register_script(_RATE))
        self._rename = _reaching(client.register_script(_RENAME))
        self._get = _reaching(client.get)

    async def admit(self, limits: Limits) -> Admission:
        now = self._clock()
        budget = limits.budget
        anchor = next(name for name in (budget.counter if budget else None, *(limits.requests or ()),
                                        *(limits.tokens or ())) if isinstance(name, str)) \
            if budget or limits.requests or limits.tokens else None
        if anchor is None:
            return Admission(None)
        unused = near(anchor, "unused")
        reservation = _reservation_id(budget.counter) if budget is not None and budget.amount > 0 else None
        holds = _holds_of(budget.counter) if budget is not None else (unused,) * 3
        requests, tokens = limits.requests or (unused, -1), limits.tokens or (unused, -1)
        ttl = budget.ttl if budget else 0
        refusal, used, oldest, spent, held, granted = await self._admit(
            keys=[requests[0], tokens[0], budget.counter if budget else unused, *holds],
            args=[repr(now), RATE_WINDOW_SECONDS, requests[1], tokens[1], budget.limit if budget else -1,
                  budget.amount if budget else 0, ttl, reservation or "",
                  budget.spent_elsewhere if budget else 0, limits.batch, BATCH_ROOM, SWEEP_MOST, repr(now + ttl)])
        refused_by = _REFUSALS[int(refusal)]
        if refused_by in ("requests", "tokens"):
            return Admission(refused_by, used=int(used),
                             retry_after=_retry_after(None if int(oldest) < 0 else int(oldest), now))
        if refused_by is not None:
            return Admission(refused_by, spent=int(spent), held=int(held))
        return Admission(None, spent=int(spent), held=int(held), reservation=reservation, granted=int(granted),
                         counted_at=math.floor(now))

    async def settle(self, reservation: str | None, amount: int, counters: Sequence[tuple[str, int]],
                     call: str | None = None) -> None:
        if reservation is None and (amount <= 0 or not counters):
            return
        call = call or reservation or uuid.uuid4().hex
        hold, part = _split_part(reservation) if reservation else ("", None)
        owners: dict[str, list[tuple[str, int]]] = {}  # hash tag -> its counters, the hold's owner first
        if reservation:
            owners[hash_tag(_held_counter(reservation))] = []
        for name, ttl in counters if amount > 0 else ():
            owners.setdefault(hash_tag(name), []).append((name, ttl))
        steps = []
        for position, own in enumerate(owners.values()):
            holding = bool(reservation) and position == 0
            anchor = _held_counter(reservation) if holding else own[0][0]
            steps.append(self._settle(
                keys=[near(anchor, f"settled:{call}"), *_holds_of(anchor), *(name for name, _ in own)],
                args=[SETTLED_MEMORY_SECONDS, hold if holding else "", "" if part is None else part, amount,
                      *(ttl for _, ttl in own)]))
        await asyncio.gather(*steps)

    async def give_back(self, reservation: str | None, nanos: int, requests: tuple[str, int, int] | None) -> None:
        hold = _split_part(reservation)[0] if reservation and nanos > 0 else None
        if hold is None and (requests is None or requests[2] <= 0):
            return
        counter, second, count = requests or ("", 0, 0)
        anchor = _held_counter(hold) if hold else counter
        await self._give_back(keys=[*_holds_of(anchor), counter or near(anchor, "unused")],
                              args=[hold or "", nanos, second, count])

    async def spent(self, counter: str) -> int:
        return int(await self._get(counter) or 0)

    async def rate_used(self, counter: str) -> int:
        return int(await self._rate(keys=[counter], args=[repr(self._clock()), RATE_WINDOW_SECONDS, 0]))

    async def add_to_rate(self, counter: str, amount: int) -> None:
        await self._rate(keys=[counter], args=[repr(self._clock()), RATE_WINDOW_SECONDS, amount])

    async def rename(self, renamed: Callable[[str], str | None], prefix: str) -> int:
        if self._cluster:
            return 0  # the earlier layout's steps spanned slots: no counter of it was ever kept on a cluster
        if await self._get(RENAMED_MARK) is not None:
            return 0  # a process has moved them all before: no scan of the keyspace at each start
        moved = 0
        try:
            async for name in self._client.scan_iter(match=prefix.replace("[", "\\[") + "*", count=1000):
                old = name.decode() if isinstance(name, bytes) else name
                new = renamed(old)
                if new is not None and new != old:
                    moved += int(await self._rename(keys=[old, new]))
            await self._client.set(RENAMED_MARK, "1")
        except _UNREACHABLE as error:
            raise StoreUnavailable(f"Redis ledger: {type(error).__name__}") from None
        return moved


# Redis cannot take a step now, but will: down, hung, loading, failing over (a demoted master refuses
# writes), a cluster whose slot has no master yet.
_UNREACHABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.ReadOnlyError,
                redis_errors.ClusterError, redis_errors.TryAgainError, OSError)


def _reaching(command: Any) -> Any:
    async def reach(*args: Any, **kwargs: Any) -> Any:
        try:
            return await command(*args, **kwargs)
        except _UNREACHABLE as error:
            raise StoreUnavailable(f"Redis ledger: {type(error).__name__}") from None

    return reach


def _holds_of(counter: str) -> tuple[str, str, str]:
    """A budget counter's holds (hash), their total and their index by expiry, in its slot."""
    return near(counter, "holds"), near(counter, "held"), near(counter, "due")
