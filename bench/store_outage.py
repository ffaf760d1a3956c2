"""What a proxy answers while its limits store fails, against the same proxy with the store well, same run.

    .venv/bin/python -m bench.store_outage [--requests 60] [--rounds 3]

1. SQLite: one proxy on its ledger file; blocks of `--requests` sequential requests alternate between the
   file free and the file write-locked by another process (`BEGIN IMMEDIATE`, held for the block). Each
   block times `/health/liveliness`, the master key's Cohere chat, and a limited `sk-bf-` key's (200 or
   503). Prints p50 and the largest time of each, and the ratio locked / free (the loop must go on: ~1).
2. Redis: one proxy on a redis-server of its own; blocks alternate between Redis answering, stopped and
   frozen (SIGSTOP). Prints the limited key's answer times (a 503 within the deadline, 1 s, while failed)
   and the master key's, with the ratio failed / well for the master key.

Bounded: each request times out after 30 s; the lock is held for one block; every server the bench
started is stopped on the way out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import httpx

from tests.harness import MASTER_KEY, ProxyProcess, virtual_key
from tests.redis_servers import FaultyRedis
from tests.test_store_guard import hold_write_lock

from .setup import bench_config, running_upstream

PATH = "/litellm/cohere/v2/chat"
BODY = {"model": "fake", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 16}
LIMITED = virtual_key("cfg", "outage")


def timed(call: Callable[[], httpx.Response]) -> tuple[float, int]:
    started = time.perf_counter()
    status = call().status_code
    return time.perf_counter() - started, status


def block(http: httpx.Client, requests: int) -> dict[str, list[tuple[float, int]]]:
    def chat(token: str) -> Callable[[], httpx.Response]:
        return lambda: http.post(PATH, json=BODY, headers={"Authorization": f"Bearer {token}"})

    seen: dict[str, list[tuple[float, int]]] = {"liveliness": [], "master key": [], "limited key": []}
    for _ in range(requests):
        seen["liveliness"].append(timed(lambda: http.get("/health/liveliness")))
        seen["master key"].append(timed(chat(MASTER_KEY)))
        seen["limited key"].append(timed(chat(LIMITED)))
    return seen


def report(state: str, seen: dict[str, list[tuple[float, int]]]) -> dict[str, float]:
    medians = {}
    for what, results in seen.items():
        times = [took for took, _ in results]
        statuses = Counter(status for _, status in results)
        medians[what] = statistics.median(times)
        print(f"  {state:>8} {what:<12} p50 {medians[what] * 1000:7.1f} ms  max {max(times) * 1000:7.1f} ms  "
              f"answers {dict(statuses)}")
    return medians


def sqlite_rounds(requests: int, rounds: int) -> list[float]:
    ratios = []
    with ExitStack() as stack:
        upstream = stack.enter_context(running_upstream(words=8))
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        proxy = ProxyProcess(bench_config(upstream), workdir).start()
        stack.callback(proxy.stop)
        http = stack.enter_context(httpx.Client(base_url=proxy.url, timeout=30))
        block(http, 5)  # warm-up
        for number in range(rounds):
            print(f"SQLite round {number + 1}")
            free = report("free", block(http, requests))
            locker = hold_write_lock(workdir / ".mpilot-ledger.sqlite3", 3600)
            try:
                locked = report("locked", block(http, requests))
            finally:
                locker.kill()
                locker.wait(10)
            time.sleep(1.5)  # the guard's probe sees the file free again
            ratios.append(locked["liveliness"] / free["liveliness"])
            ratios.append(locked["master key"] / free["master key"])
    return ratios


def redis_rounds(requests: int, rounds: int) -> list[float]:
    ratios = []
    with ExitStack() as stack:
        upstream = stack.enter_context(running_upstream(words=8))
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        redis = FaultyRedis(workdir / "redis").start()
        stack.callback(redis.stop)
        config = bench_config(upstream)
        config["general_settings"]["coordination_redis"] = {"host": "127.0.0.1", "port": redis.port}
        proxy = ProxyProcess(config, workdir).start()
        stack.callback(proxy.stop)
        http = stack.enter_context(httpx.Client(base_url=proxy.url, timeout=30))
        block(http, 5)
        for number in range(rounds):
            print(f"Redis round {number + 1}")
            well = report("well", block(http, requests))
            for fault, start, end in (("stopped", redis.down, redis.up), ("frozen", redis.freeze, redis.thaw)):
                start()
                time.sleep(1.1)  # past any allowance taken before the fault
                try:
                    failed = report(fault, block(http, requests))
                finally:
                    end()
                time.sleep(1.5)
                ratios.append(failed["master key"] / well["master key"])
    return ratios


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    sqlite = sqlite_rounds(args.requests, args.rounds)
    redis = redis_rounds(args.requests, args.rounds)
    print(f"SQLite: p50 locked / free, liveliness and master key, by round: {', '.join(f'{r:.2f}' for r in sqlite)}")
    print(f"Redis: master key p50 failed / well, stopped and frozen, by round: {', '.join(f'{r:.2f}' for r in redis)}")
    print(f"worst ratio (store failed vs well): {max(sqlite + redis):.2f}")


if __name__ == "__main__":
    sys.exit(main())
