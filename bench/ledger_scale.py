"""What one admission and its settlement cost as a key's calls in flight grow, against none in flight, same run.

    .venv/bin/python -m bench.ledger_scale [--sizes 0,1000,5000,20000] [--steps 2000] [--expired 0]

In process, on the ledger alone (no proxy): a SQLite file in a temporary directory, and a redis-server of
its own on a free loopback port. For each store and each size N, a fresh key (a budget and an rpm limit,
both far from reached) first gets N holds that stay outstanding (admitted, never settled; a ttl of an hour,
so none expires during the run); then `--steps` admit + settle pairs run one after the other, each
settling the reservation just admitted, and the median and p90 of a pair are printed in microseconds.
The pairs run in blocks of 100 alternating (ABBA) with the same number on a second key of the same store
that has nothing in flight: `ratio` is the first key's median over the second's (> 1: slower), so noise
falls on both and what the store holds is the same for both; only the key's own calls in flight differ.
The key's holds are then settled. A 0-run (a fresh key, an empty store) comes before the first size and
after each: the 0 line is their mean, and each size's line also gives its ratio to the two 0-runs around
it (what a store holding N calls costs a step at all, against an empty one; the noisier figure: it
compares runs seconds apart). The last line is the largest size's worst `ratio` over the two stores:
work per step that stays flat however many calls a key has in flight reads ~1.0.

`--expired N` adds, per store, a key with N holds that have already expired (made under a clock an
hour and a half behind): the steps that follow sweep them, a bounded number per step, so the line shows
the first pairs' mean (while sweeping), the slowest pair, how many took over 1 ms and what the key still
held at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from plugin.limits.ledger import SWEEP_MOST, Admission, Budget, Limits, RedisLedger, SqliteLedger

from .auth_overhead import redis_server
from .compare_routes import percentile

AMOUNT = 25_000  # nano-dollars reserved per call ($0.000025) and settled as its cost
BUDGET = 10**15  # $1,000,000: never reached (Lua counts exactly up to 2^53)
RPM = 10_000_000  # never reached
HOLD_TTL = 3600  # seconds: outstanding holds outlive the run
SPEND_TTL = 30 * 86_400
BLOCK = 100  # pairs of one key before the other's, alternating
CHUNK = 64  # steps gathered at once while building and settling holds (redis-py's pool: 100 connections)


class Clock:
    """time.time(), shifted by `offset` seconds: holds made behind the real time are already expired."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class Key:
    """One virtual key's counters, named as plugin/limits/keys.py names them (one hash tag)."""

    def __init__(self) -> None:
        owner = f"mpilot:{{key:{uuid.uuid4().hex}{uuid.uuid4().hex}}}"
        self.requests, self.spend = f"{owner}:rpm", f"{owner}:nanos"
        self.limits = Limits(requests=(self.requests, RPM), budget=Budget(self.spend, BUDGET, AMOUNT, HOLD_TTL))
        self.counters = [(self.spend, SPEND_TTL)]


async def gathered(calls: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
    results: list[Any] = []
    for start in range(0, len(calls), CHUNK):
        results += await asyncio.gather(*(call() for call in calls[start:start + CHUNK]))
    return results


async def hold(ledger: Any, key: Key, count: int) -> list[str]:
    """`count` outstanding holds of `key`: their reservations."""
    admissions: list[Admission] = await gathered([lambda: ledger.admit(key.limits)] * count)
    assert all(a.admitted and a.reservation for a in admissions), "a hold was refused"
    return [a.reservation for a in admissions if a.reservation]


async def release(ledger: Any, key: Key, reservations: list[str]) -> None:
    await gathered([lambda r=r: ledger.settle(r, AMOUNT, key.counters) for r in reservations])


async def pairs(ledger: Any, key: Key, steps: int) -> tuple[list[float], list[Admission]]:
    """`steps` admit + settle pairs one after the other: microseconds each, and each admission."""
    times: list[float] = []
    admissions: list[Admission] = []
    for _ in range(steps):
        start = time.perf_counter_ns()
        admission = await ledger.admit(key.limits)
        await ledger.settle(admission.reservation, AMOUNT, key.counters)
        times.append((time.perf_counter_ns() - start) / 1e3)
        admissions.append(admission)
    return times, admissions


async def run_zero(ledger: Any, steps: int) -> list[float]:
    """The baseline: a fresh key, nothing in flight in the whole store."""
    key = Key()
    await pairs(ledger, key, min(100, steps))  # warm up: connections, scripts, statement cache
    return (await pairs(ledger, key, steps))[0]


async def run_size(ledger: Any, size: int, steps: int) -> tuple[list[float], list[float]]:
    """Pairs of a key with `size` holds, and of a key with none in the same store, in alternating blocks."""
    key, beside = Key(), Key()
    reservations = await hold(ledger, key, size)
    for each in (key, beside):
        await pairs(ledger, each, min(100, steps))
    times: list[float] = []
    others: list[float] = []
    admissions: list[Admission] = []
    for number, start in enumerate(range(0, steps, BLOCK)):  # ABBA: neither key always goes first
        for each in (key, beside) if number % 2 == 0 else (beside, key):
            block, seen = await pairs(ledger, each, min(BLOCK, steps - start))
            if each is key:
                times += block
                admissions += seen
            else:
                others += block
    for admission in (admissions[0], admissions[-1]):  # the holds were there all along
        if admission.held != size * AMOUNT:
            print(f"  note: in_flight={size}: an admission saw {admission.held // AMOUNT} holds, not {size}")
    await release(ledger, key, reservations)
    return times, others


async def run_expired(ledger: Any, clock: Clock, count: int, steps: int) -> tuple[str, float]:
    key = Key()
    clock.offset = -1.5 * HOLD_TTL  # holds made now expire half an hour before the real time
    try:
        await hold(ledger, key, count)
    finally:
        clock.offset = 0.0
    times, admissions = await pairs(ledger, key, steps)
    sweeping = max(1, min(steps, -(-count // SWEEP_MOST)))
    left = admissions[-1].held // AMOUNT
    return (f"median={statistics.median(times):.0f} us  p90={percentile(times, 0.9):.0f} us  "
            f"max={max(times):.0f} us  first {sweeping} pairs (sweeping {SWEEP_MOST}/step at most): "
            f"mean={statistics.mean(times[:sweeping]):.0f} us  pairs over 1 ms: {sum(t > 1e3 for t in times)}  "
            f"expired holds left at the end: {left}"), \
        statistics.median(times)


async def run_store(name: str, ledger: Any, clock: Clock, sizes: list[int], steps: int,
                    expired: int) -> float:
    """Prints the store's lines; returns the ratio at the largest size."""
    nonzero = [size for size in sizes if size != 0]
    zeros = [await run_zero(ledger, steps)]
    measured: dict[int, tuple[list[float], list[float]]] = {}
    for size in nonzero or [0]:  # an empty store between sizes: a 0-run after each
        if size:
            measured[size] = await run_size(ledger, size, steps)
        zeros.append(await run_zero(ledger, steps))
    zero_medians = [statistics.median(times) for times in zeros]
    base = statistics.mean(zero_medians)
    print(f"{name:<6} in_flight={0:<6} median={base:.0f} us  "
          f"p90={statistics.mean(percentile(times, 0.9) for times in zeros):.0f} us  ratio=1.00  "
          f"(mean of {len(zeros)} runs, one before and after each size: "
          + ", ".join(f"{median:.0f}" for median in zero_medians) + " us)", flush=True)
    ratio = 1.0
    for position, (size, (times, beside)) in enumerate(measured.items()):
        empty = statistics.mean(zero_medians[position:position + 2])  # the 0-runs just before and after
        median, beside_median = statistics.median(times), statistics.median(beside)
        ratio = median / beside_median
        print(f"{name:<6} in_flight={size:<6} median={median:.0f} us  p90={percentile(times, 0.9):.0f} us  "
              f"ratio={ratio:.2f}  (key with none in flight, alternating: {beside_median:.0f} us; "
              f"vs the 0-runs in an empty store around it, {empty:.0f} us: {median / empty:.2f})", flush=True)
    if expired:
        line, median = await run_expired(ledger, clock, expired, steps)
        print(f"{name:<6} expired={expired:<8} {line}  ratio={median / base:.2f}", flush=True)
    return ratio


async def measure(args: argparse.Namespace, sqlite_path: Path, redis_port: int) -> None:
    worst: list[float] = []
    clock = Clock()
    worst.append(await run_store("sqlite", SqliteLedger(sqlite_path, clock=clock), clock, args.sizes,
                                 args.steps, args.expired))
    client = aioredis.Redis(port=redis_port)
    try:
        clock = Clock()
        worst.append(await run_store("redis", RedisLedger(client, clock=clock), clock, args.sizes, args.steps,
                                     args.expired))
    finally:
        await client.aclose()
    largest = max(args.sizes)
    print(f"worst ratio ({largest} vs 0 in flight): {max(worst):.2f}")


def sizes(text: str) -> list[int]:
    values = sorted({int(part) for part in text.split(",") if part.strip()})
    if not values or values[0] < 0:
        raise argparse.ArgumentTypeError("sizes: a comma-separated list of counts >= 0")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=sizes, default=[0, 1_000, 5_000, 20_000],
                        help="calls in flight to measure at, comma-separated (0 is always measured)")
    parser.add_argument("--steps", type=int, default=2_000, help="admit + settle pairs timed per store and size")
    parser.add_argument("--expired", type=int, default=0, help="also: a key with this many expired holds")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        redis_port = stack.enter_context(redis_server())
        asyncio.run(measure(args, workdir / "ledger.sqlite", redis_port))


if __name__ == "__main__":
    main()
