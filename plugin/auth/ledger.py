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
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Literal, Protocol

NANOS_PER_DOLLAR = 1_000_000_000
RATE_WINDOW_SECONDS = 60  # rpm and tpm limits: a sliding minute, in one-second buckets
PURGE_EVERY_SECONDS = 1.0  # SQLite: how often one process deletes what has expired
# SQLite: each step writes the pages it changed to the write-ahead log, a few rows each; 1 KiB pages
# instead of 4 KiB make a step ~30% cheaper (an admission and its settlement: ~180 -> ~130 us here)
PAGE_BYTES = 1024
BATCH_ROOM = 100  # a batch of admissions is granted only where every limit has room for this many of it


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

    async def admit(self, limits: Limits) -> Admission:
        """Refused by the first limit the request does not fit, else counted and its cost reserved: a
        budget fits while spent + reserved + amount <= limit (and spent + reserved < limit)."""
        ...

    async def settle(self, reservation: str | None, amount: int, counters: Sequence[tuple[str, int]]) -> None:
        """Drop `reservation` (if still held; a `part_of` one: that part of its hold) and add `amount` to each
        (counter, ttl seconds): one atomic step."""
        ...

    async def give_back(self, reservation: str | None, nanos: int, requests: tuple[str, int, int] | None) -> None:
        """What a batch's process did not hand out: `nanos` of its hold, and (counter, second, count)
        requests counted in that second, where they are still counted. One atomic step."""
        ...

    async def spent(self, counter: str) -> int: ...

    async def rate_used(self, counter: str) -> int: ...

    async def add_to_rate(self, counter: str, amount: int) -> None: ...


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
    transaction, so workers take turns.

    Runs in the caller's thread: a transaction takes tens of microseconds, while handing it to a thread
    of its own cost ~2 ms per request under load (that thread waits for the GIL, which a busy event loop
    gives up every 5 ms; bench/auth_overhead). A lock serialises callers from LiteLLM's other threads."""

    local = True

    def __init__(self, path: Path, clock: Any = time.time) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._purged_at = 0.0

    @staticmethod
    def check(path: Path) -> None:
        """Open (and create) the file now, so a proxy that could not share its limits refuses to start."""
        db = sqlite3.connect(path, timeout=30)
        try:
            db.execute(f"PRAGMA page_size={PAGE_BYTES}")  # a new file only: an existing one keeps its own
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        finally:
            db.close()

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.path, timeout=5, isolation_level=None, check_same_thread=False)
            db.execute(f"PRAGMA page_size={PAGE_BYTES}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    async def _run(self, step: Any, *args: Any) -> Any:
        with self._lock:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                now = self._clock()
                if not now - PURGE_EVERY_SECONDS < self._purged_at <= now:
                    _sqlite_purge(db, now)
                    self._purged_at = now
                result = step(db, now, *args)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

    async def admit(self, limits: Limits) -> Admission:
        return await self._run(_sqlite_admit, limits)

    async def settle(self, reservation: str | None, amount: int, counters: Sequence[tuple[str, int]]) -> None:
        await self._run(_sqlite_settle, reservation, amount, tuple(counters))

    async def give_back(self, reservation: str | None, nanos: int, requests: tuple[str, int, int] | None) -> None:
        await self._run(_sqlite_give_back, reservation, nanos, requests)

    async def spent(self, counter: str) -> int:
        return await self._run(_sqlite_spent, counter)

    async def rate_used(self, counter: str) -> int:
        return await self._run(_sqlite_rate_used, counter)

    async def add_to_rate(self, counter: str, amount: int) -> None:
        await self._run(_sqlite_add_to_rate, counter, amount)


def _sqlite_spent(db: sqlite3.Connection, now: float, counter: str) -> int:
    row = db.execute("SELECT value FROM counters WHERE name = ? AND expires_at > ?", (counter, now)).fetchone()
    return int(row[0]) if row else 0


def _sqlite_purge(db: sqlite3.Connection, now: float) -> None:
    """Forget what has expired, every counter's at once (reads skip it until then)."""
    db.execute("DELETE FROM rate WHERE second <= ?", (int(now) - RATE_WINDOW_SECONDS,))
    db.execute("DELETE FROM holds WHERE expires_at <= ?", (now,))
    db.execute("DELETE FROM counters WHERE expires_at <= ?", (now,))


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
        spent, held = db.execute(
            "SELECT (SELECT COALESCE(MAX(value), 0) FROM counters WHERE name = ?1 AND expires_at > ?2), "
            "(SELECT COALESCE(SUM(nanos), 0) FROM holds WHERE counter = ?1 AND expires_at > ?2)",
            (budget.counter, now)).fetchone()
        spent, held = int(spent) + budget.spent_elsewhere, int(held)
        if spent + held >= budget.limit or spent + held + budget.amount > budget.limit:
            return Admission("budget", spent=spent, held=held)
    granted = _granted(limits, requests_used, spent + held)
    if budget is not None and budget.amount > 0:
        reservation = _reservation_id(budget.counter)
        db.execute("INSERT INTO holds (id, counter, nanos, expires_at) VALUES (?, ?, ?, ?)",
                   (reservation, budget.counter, granted * budget.amount, now + budget.ttl))
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
                   counters: tuple[tuple[str, int], ...]) -> None:
    if reservation is not None:
        hold, part = _split_part(reservation)
        _sqlite_take_from_hold(db, hold, part)
    if amount <= 0:
        return
    for name, ttl in counters:  # a counter that has expired starts again from this amount
        db.execute("INSERT INTO counters (name, value, expires_at) VALUES (?1, ?2, ?3) ON CONFLICT (name) DO UPDATE "
                   "SET value = CASE WHEN expires_at <= ?4 THEN excluded.value ELSE value + excluded.value END, "
                   "expires_at = CASE WHEN expires_at <= ?4 THEN excluded.expires_at "
                   "ELSE MAX(expires_at, excluded.expires_at) END", (name, amount, now + ttl, now))


def _sqlite_take_from_hold(db: sqlite3.Connection, hold: str, part: int | None) -> None:
    if part is not None:
        db.execute("UPDATE holds SET nanos = nanos - ? WHERE id = ?", (part, hold))
        db.execute("DELETE FROM holds WHERE id = ? AND nanos <= 0", (hold,))
    else:
        db.execute("DELETE FROM holds WHERE id = ?", (hold,))


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


# --- Redis: every proxy ---------------------------------------------------------------------------------

# The window of a rate hash (second -> amount): drops seconds older than a minute, returns used, oldest.
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

# Takes `part` nanos from the hold `id` of the holds hash `holds` ('' : the whole hold); a hold is
# "nanos:expires_at", dropped when nothing is left of it.
_TAKE_FROM_HOLD = """
local function take_from_hold(holds, id, part)
  if part == '' then redis.call('HDEL', holds, id) return end
  local hold = redis.call('HGET', holds, id)
  if not hold then return end
  local sep = string.find(hold, ':', 1, true)
  local left = tonumber(string.sub(hold, 1, sep - 1)) - tonumber(part)
  if left > 0 then
    redis.call('HSET', holds, id, string.format('%.0f', left) .. string.sub(hold, sep))
  else
    redis.call('HDEL', holds, id)
  end
end
"""

# KEYS: requests hash, tokens hash, spend counter, holds hash (unused ones are named but not touched).
# ARGV: now, window, requests limit, tokens limit, budget (each -1 when absent), amount, ttl, id,
# spent elsewhere, batch, batch room. A hold is "nanos:expires_at"; expired holds are dropped on the way.
# Numbers are Lua doubles: exact up to 2^53 nano-dollars (about $9 million) per counter.
_ADMIT = _RATE_WINDOW + """
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
  local entries = redis.call('HGETALL', KEYS[4])
  for i = 1, #entries, 2 do
    local sep = string.find(entries[i + 1], ':', 1, true)
    if tonumber(string.sub(entries[i + 1], sep + 1)) <= now then
      redis.call('HDEL', KEYS[4], entries[i])
    else
      held = held + tonumber(string.sub(entries[i + 1], 1, sep - 1))
    end
  end
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
  redis.call('HSET', KEYS[4], ARGV[8], string.format('%.0f', granted * amount) .. ':' .. tostring(now + ttl))
  if redis.call('TTL', KEYS[4]) < ttl then redis.call('EXPIRE', KEYS[4], ttl + 1) end
end
if limits[1] >= 0 then
  redis.call('HINCRBY', KEYS[1], tostring(math.floor(now)), granted)
  redis.call('EXPIRE', KEYS[1], length + 2)
end
return {0, 0, -1, spent, held, granted}
"""

# KEYS: holds hash (or ''), counters... ARGV: reservation id (or ''), part ('' : all of it), amount,
# ttl of each counter...
_SETTLE = _TAKE_FROM_HOLD + """
if ARGV[1] ~= '' then take_from_hold(KEYS[1], ARGV[1], ARGV[2]) end
local amount = tonumber(ARGV[3])
if amount <= 0 then return 0 end
for i = 2, #KEYS do
  redis.call('INCRBY', KEYS[i], amount)
  local ttl = tonumber(ARGV[i + 2])
  if redis.call('TTL', KEYS[i]) < ttl then redis.call('EXPIRE', KEYS[i], ttl) end
end
return 1
"""

# KEYS: holds hash (or ''), requests hash (or ''). ARGV: reservation id (or ''), nanos, second, count.
_GIVE_BACK = _TAKE_FROM_HOLD + """
if ARGV[1] ~= '' and tonumber(ARGV[2]) > 0 then take_from_hold(KEYS[1], ARGV[1], ARGV[2]) end
local count = tonumber(ARGV[4])
if KEYS[2] ~= '' and count > 0 and redis.call('HEXISTS', KEYS[2], ARGV[3]) == 1 then
  if redis.call('HINCRBY', KEYS[2], ARGV[3], -count) <= 0 then redis.call('HDEL', KEYS[2], ARGV[3]) end
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

_REFUSALS: tuple[Refusal | None, ...] = (None, "requests", "tokens", "budget")


class RedisLedger:
    """The same ledger in Redis, for several proxies; each step is one Lua script (atomic in Redis).
    `client`: a `redis.asyncio` client."""

    local = False

    def __init__(self, client: Any, clock: Any = time.time) -> None:
        self._client = client
        self._clock = clock
        self._admit = client.register_script(_ADMIT)
        self._settle = client.register_script(_SETTLE)
        self._give_back = client.register_script(_GIVE_BACK)
        self._rate = client.register_script(_RATE)

    async def admit(self, limits: Limits) -> Admission:
        now = self._clock()
        budget = limits.budget
        reservation = _reservation_id(budget.counter) if budget is not None and budget.amount > 0 else None
        spend = budget.counter if budget is not None else "mpilot:none"
        requests, tokens = limits.requests or ("mpilot:none", -1), limits.tokens or ("mpilot:none", -1)
        refusal, used, oldest, spent, held, granted = await self._admit(
            keys=[requests[0], tokens[0], spend, _holds_of(spend)],
            args=[repr(now), RATE_WINDOW_SECONDS, requests[1], tokens[1], budget.limit if budget else -1,
                  budget.amount if budget else 0, budget.ttl if budget else 0, reservation or "",
                  budget.spent_elsewhere if budget else 0, limits.batch, BATCH_ROOM])
        refused_by = _REFUSALS[int(refusal)]
        if refused_by in ("requests", "tokens"):
            return Admission(refused_by, used=int(used),
                             retry_after=_retry_after(None if int(oldest) < 0 else int(oldest), now))
        if refused_by is not None:
            return Admission(refused_by, spent=int(spent), held=int(held))
        return Admission(None, spent=int(spent), held=int(held), reservation=reservation, granted=int(granted),
                         counted_at=math.floor(now))

    async def settle(self, reservation: str | None, amount: int, counters: Sequence[tuple[str, int]]) -> None:
        if reservation is None and (amount <= 0 or not counters):
            return
        holds = _holds_of(_held_counter(reservation) if reservation else counters[0][0])
        hold, part = _split_part(reservation) if reservation else ("", None)
        await self._settle(keys=[holds, *(name for name, _ in counters)],
                           args=[hold, "" if part is None else part, amount, *(ttl for _, ttl in counters)])

    async def give_back(self, reservation: str | None, nanos: int, requests: tuple[str, int, int] | None) -> None:
        hold = _split_part(reservation)[0] if reservation and nanos > 0 else None
        if hold is None and (requests is None or requests[2] <= 0):
            return
        counter, second, count = requests or ("", 0, 0)
        await self._give_back(keys=[_holds_of(_held_counter(hold)) if hold else "", counter],
                              args=[hold or "", nanos, second, count])

    async def spent(self, counter: str) -> int:
        return int(await self._client.get(counter) or 0)

    async def rate_used(self, counter: str) -> int:
        return int(await self._rate(keys=[counter], args=[repr(self._clock()), RATE_WINDOW_SECONDS, 0]))

    async def add_to_rate(self, counter: str, amount: int) -> None:
        await self._rate(keys=[counter], args=[repr(self._clock()), RATE_WINDOW_SECONDS, amount])


def _holds_of(counter: str) -> str:
    return f"{counter}:holds"
