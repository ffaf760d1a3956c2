"""The ledger: what virtual keys have spent, what their calls in flight have reserved, and how many
requests and tokens they used in the last minute; shared by every worker of a proxy (SQLite in WAL mode
on the machine) or by every proxy (Redis). Each check-and-change is one atomic step in the store, so a
limit that holds one request at a time holds at 20 at once.

Money is counted in integer nano-dollars, never as float sums: ten answers of $0.025 are exactly
$0.25. A reservation expires by itself (`ttl`), so a proxy that dies mid-call does not hold a key's
budget forever. Pure apart from its two stores; knows nothing of LiteLLM.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Protocol

NANOS_PER_DOLLAR = 1_000_000_000
RATE_WINDOW_SECONDS = 60  # rpm and tpm limits: a sliding minute, in one-second buckets


def to_nanos(dollars: float | int | str | Decimal) -> int:
    """Dollars as integer nano-dollars, rounded half up; floats by their shortest repr (0.1 -> 100000000)."""
    return int((Decimal(repr(dollars) if isinstance(dollars, float) else str(dollars)) * NANOS_PER_DOLLAR)
               .to_integral_value(rounding=ROUND_HALF_UP))


def to_dollars(nanos: int) -> Decimal:
    return Decimal(nanos) / NANOS_PER_DOLLAR


@dataclass(frozen=True)
class Hold:
    """The answer to a reservation: granted or not, and the key's spend and reserved amounts before it."""

    granted: bool
    spent: int
    held: int
    reservation: str | None = None  # what `settle` takes back; None when nothing was reserved


@dataclass(frozen=True)
class RateCheck:
    admitted: bool
    used: int  # requests (or tokens) in the last minute, this one not included
    retry_after: int = 0  # whole seconds until the window has room again


class Ledger(Protocol):
    async def spent(self, counter: str) -> int: ...

    async def reserve(self, counter: str, budget: int, amount: int, ttl: int, spent_elsewhere: int = 0) -> Hold:
        """Reserve `amount` against `budget` when spent + reserved + amount fits (and spent + reserved is
        below it): one atomic step. `spent_elsewhere`: spend kept outside the ledger (LiteLLM's database)."""
        ...

    async def settle(self, reservation: str | None, amount: int, counters: Sequence[tuple[str, int]]) -> None:
        """Drop `reservation` (if still held) and add `amount` to each (counter, ttl seconds): one atomic step."""
        ...

    async def count_request(self, counter: str, limit: int, amount: int = 1) -> RateCheck:
        """Admit (and count `amount`) while the last minute holds less than `limit` and `amount` fits;
        `amount=0` only checks, for limits whose use is known after the call (tokens)."""
        ...

    async def rate_used(self, counter: str) -> int: ...

    async def add_to_rate(self, counter: str, amount: int) -> None: ...


def _reservation_id(counter: str) -> str:
    return f"{uuid.uuid4().hex}@{counter}"


def _held_counter(reservation: str) -> str:
    return reservation.split("@", 1)[1]


def _retry_after(oldest_second: int | None, now: float) -> int:
    if oldest_second is None:
        return 1
    return max(1, math.ceil(oldest_second + RATE_WINDOW_SECONDS - now))


# --- SQLite: every worker of one machine ---------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS holds (id TEXT PRIMARY KEY, counter TEXT NOT NULL, nanos INTEGER NOT NULL,
                                  expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS holds_by_counter ON holds (counter, expires_at);
CREATE TABLE IF NOT EXISTS rate (counter TEXT NOT NULL, second INTEGER NOT NULL, amount INTEGER NOT NULL,
                                 PRIMARY KEY (counter, second));
"""


class SqliteLedger:
    """One file that every worker process of the machine opens; each change is a `BEGIN IMMEDIATE`
    transaction, so workers take turns. Runs on one thread of its own per process: SQLite calls (and
    their waits for another worker's lock) never block the proxy's event loop."""

    def __init__(self, path: Path, clock: Any = time.time) -> None:
        self.path = path
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mpilot-ledger")
        self._db: sqlite3.Connection | None = None

    @staticmethod
    def check(path: Path) -> None:
        """Open (and create) the file now, so a proxy that could not share its limits refuses to start."""
        db = sqlite3.connect(path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        finally:
            db.close()

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    async def _run(self, step: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._transaction, step, args)

    def _transaction(self, step: Any, args: tuple[Any, ...]) -> Any:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            result = step(db, self._clock(), *args)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    async def spent(self, counter: str) -> int:
        return await self._run(_sqlite_spent, counter)

    async def reserve(self, counter: str, budget: int, amount: int, ttl: int, spent_elsewhere: int = 0) -> Hold:
        return await self._run(_sqlite_reserve, counter, budget, amount, ttl, spent_elsewhere)

    async def settle(self, reservation: str | None, amount: int, counters: Sequence[tuple[str, int]]) -> None:
        await self._run(_sqlite_settle, reservation, amount, tuple(counters))

    async def count_request(self, counter: str, limit: int, amount: int = 1) -> RateCheck:
        return await self._run(_sqlite_count_request, counter, limit, amount)

    async def rate_used(self, counter: str) -> int:
        return await self._run(_sqlite_rate_used, counter)

    async def add_to_rate(self, counter: str, amount: int) -> None:
        await self._run(_sqlite_add_to_rate, counter, amount)


def _sqlite_spent(db: sqlite3.Connection, now: float, counter: str) -> int:
    row = db.execute("SELECT value FROM counters WHERE name = ? AND expires_at > ?", (counter, now)).fetchone()
    return int(row[0]) if row else 0


def _sqlite_reserve(db: sqlite3.Connection, now: float, counter: str, budget: int, amount: int, ttl: int,
                    spent_elsewhere: int) -> Hold:
    db.execute("DELETE FROM holds WHERE counter = ? AND expires_at <= ?", (counter, now))
    spent = _sqlite_spent(db, now, counter) + spent_elsewhere
    held = int(db.execute("SELECT COALESCE(SUM(nanos), 0) FROM holds WHERE counter = ?", (counter,)).fetchone()[0])
    if spent + held >= budget or spent + held + amount > budget:
        return Hold(False, spent, held)
    if amount <= 0:
        return Hold(True, spent, held)
    reservation = _reservation_id(counter)
    db.execute("INSERT INTO holds (id, counter, nanos, expires_at) VALUES (?, ?, ?, ?)",
               (reservation, counter, amount, now + ttl))
    return Hold(True, spent, held, reservation)


def _sqlite_settle(db: sqlite3.Connection, now: float, reservation: str | None, amount: int,
                   counters: tuple[tuple[str, int], ...]) -> None:
    if reservation is not None:
        db.execute("DELETE FROM holds WHERE id = ?", (reservation,))
    if amount <= 0:
        return
    for name, ttl in counters:
        db.execute("DELETE FROM counters WHERE name = ? AND expires_at <= ?", (name, now))
        db.execute("INSERT INTO counters (name, value, expires_at) VALUES (?, ?, ?) "
                   "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value, "
                   "expires_at = MAX(expires_at, excluded.expires_at)", (name, amount, now + ttl))


def _sqlite_rate_window(db: sqlite3.Connection, now: float, counter: str) -> tuple[int, int | None]:
    db.execute("DELETE FROM rate WHERE counter = ? AND second <= ?", (counter, int(now) - RATE_WINDOW_SECONDS))
    used, oldest = db.execute("SELECT COALESCE(SUM(amount), 0), MIN(second) FROM rate WHERE counter = ?",
                              (counter,)).fetchone()
    return int(used), oldest


def _sqlite_count_request(db: sqlite3.Connection, now: float, counter: str, limit: int, amount: int) -> RateCheck:
    used, oldest = _sqlite_rate_window(db, now, counter)
    if used >= limit or used + amount > limit:
        return RateCheck(False, used, _retry_after(oldest, now))
    if amount > 0:
        _sqlite_add_to_rate(db, now, counter, amount)
    return RateCheck(True, used)


def _sqlite_rate_used(db: sqlite3.Connection, now: float, counter: str) -> int:
    return _sqlite_rate_window(db, now, counter)[0]


def _sqlite_add_to_rate(db: sqlite3.Connection, now: float, counter: str, amount: int) -> None:
    db.execute("INSERT INTO rate (counter, second, amount) VALUES (?, ?, ?) "
               "ON CONFLICT (counter, second) DO UPDATE SET amount = amount + excluded.amount",
               (counter, int(now), amount))


# --- Redis: every proxy ---------------------------------------------------------------------------------

# KEYS: spend counter, holds hash. ARGV: budget, amount, now, ttl, id, spent elsewhere.
# A hold is "nanos:expires_at"; expired holds are dropped on the way. Numbers are Lua doubles: exact
# up to 2^53 nano-dollars (about $9 million) per counter.
_RESERVE = """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0') + tonumber(ARGV[6])
local now = tonumber(ARGV[3])
local held = 0
local entries = redis.call('HGETALL', KEYS[2])
for i = 1, #entries, 2 do
  local sep = string.find(entries[i + 1], ':', 1, true)
  local nanos = tonumber(string.sub(entries[i + 1], 1, sep - 1))
  if tonumber(string.sub(entries[i + 1], sep + 1)) <= now then
    redis.call('HDEL', KEYS[2], entries[i])
  else
    held = held + nanos
  end
end
local budget, amount = tonumber(ARGV[1]), tonumber(ARGV[2])
if spent + held >= budget or spent + held + amount > budget then return {0, spent, held} end
if amount > 0 then
  redis.call('HSET', KEYS[2], ARGV[5], ARGV[2] .. ':' .. tostring(now + tonumber(ARGV[4])))
  local ttl = redis.call('TTL', KEYS[2])
  if ttl < tonumber(ARGV[4]) then redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]) + 1) end
end
return {1, spent, held}
"""

# KEYS: holds hash (or ''), counters... ARGV: reservation id (or ''), amount, ttl of each counter...
_SETTLE = """
if ARGV[1] ~= '' then redis.call('HDEL', KEYS[1], ARGV[1]) end
local amount = tonumber(ARGV[2])
if amount <= 0 then return 0 end
for i = 2, #KEYS do
  redis.call('INCRBY', KEYS[i], amount)
  local ttl = tonumber(ARGV[i + 1])
  if redis.call('TTL', KEYS[i]) < ttl then redis.call('EXPIRE', KEYS[i], ttl) end
end
return 1
"""

# KEYS: rate hash (second -> amount). ARGV: now, window, limit (or -1: just read), amount to add.
_RATE = """
local now = tonumber(ARGV[1])
local oldest_allowed = math.floor(now) - tonumber(ARGV[2])
local used, oldest = 0, nil
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local second = tonumber(entries[i])
  if second <= oldest_allowed then
    redis.call('HDEL', KEYS[1], entries[i])
  else
    used = used + tonumber(entries[i + 1])
    if oldest == nil or second < oldest then oldest = second end
  end
end
local limit, amount = tonumber(ARGV[3]), tonumber(ARGV[4])
if limit >= 0 and (used >= limit or used + amount > limit) then return {0, used, oldest or -1} end
if amount > 0 then
  redis.call('HINCRBY', KEYS[1], tostring(math.floor(now)), amount)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]) + 2)
end
return {1, used, oldest or -1}
"""


class RedisLedger:
    """The same ledger in Redis, for several proxies; each step is one Lua script (atomic in Redis).
    `client`: a `redis.asyncio` client."""

    def __init__(self, client: Any, clock: Any = time.time) -> None:
        self._client = client
        self._clock = clock
        self._reserve = client.register_script(_RESERVE)
        self._settle = client.register_script(_SETTLE)
        self._rate = client.register_script(_RATE)

    async def spent(self, counter: str) -> int:
        return int(await self._client.get(counter) or 0)

    async def reserve(self, counter: str, budget: int, amount: int, ttl: int, spent_elsewhere: int = 0) -> Hold:
        reservation = _reservation_id(counter)
        granted, spent, held = await self._reserve(
            keys=[counter, _holds_of(counter)],
            args=[budget, amount, repr(self._clock()), ttl, reservation, spent_elsewhere])
        if not granted:
            return Hold(False, int(spent), int(held))
        return Hold(True, int(spent), int(held), reservation if amount > 0 else None)

    async def settle(self, reservation: str | None, amount: int, counters: Sequence[tuple[str, int]]) -> None:
        if reservation is None and (amount <= 0 or not counters):
            return
        holds = _holds_of(_held_counter(reservation) if reservation else counters[0][0])
        await self._settle(keys=[holds, *(name for name, _ in counters)],
                           args=[reservation or "", amount, *(ttl for _, ttl in counters)])

    async def count_request(self, counter: str, limit: int, amount: int = 1) -> RateCheck:
        now = self._clock()
        admitted, used, oldest = await self._rate(keys=[counter], args=[repr(now), RATE_WINDOW_SECONDS, limit, amount])
        return RateCheck(bool(admitted), int(used),
                         0 if admitted else _retry_after(None if int(oldest) < 0 else int(oldest), now))

    async def rate_used(self, counter: str) -> int:
        _, used, _ = await self._rate(keys=[counter], args=[repr(self._clock()), RATE_WINDOW_SECONDS, -1, 0])
        return int(used)

    async def add_to_rate(self, counter: str, amount: int) -> None:
        await self._rate(keys=[counter], args=[repr(self._clock()), RATE_WINDOW_SECONDS, -1, amount])


def _holds_of(counter: str) -> str:
    return f"{counter}:holds"
