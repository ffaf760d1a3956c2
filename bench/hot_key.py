"""Throughput of one hot rate-limited key across a fleet, against a key without limits, same run.

    .venv/bin/python -m bench.hot_key [--seconds 20] [--rounds 4] [--clients 64]

Two proxies with the plugin share a redis-server of their own (`general_settings.coordination_redis`),
on one fake upstream that answers at once. `--clients` concurrent clients (asyncio, httpx), spread evenly
over both proxies, POST a short message to `/litellm/cohere/v2/chat`, as fast as they get answers, with
one of two `sk-bf-` config keys: the hot key has an rpm limit of 10,000,000 and a budget of $1,000,000
(both far from reached, both present, so every request is counted and reserved in the ledger on Redis),
the other has no limits at all. The two alternate in blocks of `--seconds / --rounds` seconds (ABBA,
after a 2-second warm-up of each), so noise falls on both. Prints each block, then admitted requests
per second for each key (only 200s count; any other answer or error is reported) and the CPU time both
proxies spent per request (less sensitive to what else the machine runs), what the ledger
counted for the hot key, and last: hot key / unlimited key throughput (target >= 0.9).

Bounded: each request times out after 10 s, each block stops starting requests at its end and is
abandoned 30 s after it; the servers it started (proxies, upstream, Redis) are stopped on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import subprocess
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from tests.fake_upstream import FakeUpstream
from tests.harness import ProxyProcess

from .auth_overhead import redis_server, start_all
from .setup import bench_config, running_upstream

HOT = "sk-bf-bench-hot-key-0123456789abcdef0123456789abcdef"
UNLIMITED = "sk-bf-bench-unlimited-0123456789abcdef0123456789abcdef"
KEYS = {"hot key": HOT, "unlimited key": UNLIMITED}
PATH = "/litellm/cohere/v2/chat"
BODY = {"model": "fake", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 16}
REQUEST_TIMEOUT = 10.0
BLOCK_GRACE = 30.0  # seconds past its end a block may take to finish its requests
WARM_UP = 2.0


def fleet_config(upstream: FakeUpstream, redis_port: int) -> dict[str, Any]:
    config = bench_config(upstream)
    config["mpilot"]["virtual_keys"] += [
        {"key": HOT, "key_alias": "bench-hot", "rpm_limit": 10_000_000, "max_budget": 1_000_000.0},
        {"key": UNLIMITED, "key_alias": "bench-unlimited"},
    ]
    config["general_settings"]["coordination_redis"] = {"host": "127.0.0.1", "port": redis_port}
    return config


async def block(clients: list[httpx.AsyncClient], token: str, concurrency: int,
                seconds: float) -> tuple[Counter, float]:
    """`concurrency` clients posting back to back for `seconds`, spread over `clients` (one per proxy):
    how each request ended (status code, or the error's name), and the seconds until the last answer."""
    outcomes: Counter = Counter()
    headers = {"Authorization": f"Bearer {token}"}
    start = time.monotonic()
    deadline = start + seconds

    async def client(number: int) -> None:
        http = clients[number % len(clients)]
        while time.monotonic() < deadline:
            try:
                response = await http.post(PATH, json=BODY, headers=headers)
                outcomes[response.status_code] += 1
            except httpx.HTTPError as error:
                outcomes[type(error).__name__] += 1

    tasks = [asyncio.ensure_future(client(number)) for number in range(concurrency)]
    done, pending = await asyncio.wait(tasks, timeout=seconds + BLOCK_GRACE)
    for task in pending:
        task.cancel()
        outcomes["abandoned"] += 1
    for task in done:
        if task.exception() is not None:
            outcomes[type(task.exception()).__name__] += 1
    return outcomes, time.monotonic() - start


def others(outcomes: Counter) -> str:
    rest = {str(what): count for what, count in outcomes.items() if what != 200}
    return ", ".join(f"{what}: {count}" for what, count in sorted(rest.items())) or "none"


async def measure(proxies: list[ProxyProcess],
                  args: argparse.Namespace) -> tuple[dict[str, tuple[Counter, float]], dict[str, float]]:
    """Each key's outcomes and seconds over its blocks, and the CPU seconds both proxies spent in them."""
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    clients = [httpx.AsyncClient(base_url=proxy.url, timeout=REQUEST_TIMEOUT, limits=limits) for proxy in proxies]
    totals: dict[str, tuple[Counter, float]] = {label: (Counter(), 0.0) for label in KEYS}
    cpu = {label: 0.0 for label in KEYS}
    try:
        for label, token in KEYS.items():  # warm up: connections, key lookups, the hot key's allowances
            outcomes, _ = await block(clients, token, args.clients, WARM_UP)
            if outcomes[200] == 0:
                raise SystemExit(f"{label}: no request admitted while warming up ({others(outcomes)})")
        seconds = args.seconds / args.rounds
        for round_ in range(args.rounds):
            order = list(KEYS.items()) if round_ % 2 == 0 else list(KEYS.items())[::-1]
            cells = []
            for label, token in order:
                cpu_before = sum(proxy.cpu_seconds() for proxy in proxies)
                outcomes, elapsed = await block(clients, token, args.clients, seconds)
                cpu[label] += sum(proxy.cpu_seconds() for proxy in proxies) - cpu_before
                counted, spent = totals[label]
                totals[label] = (counted + outcomes, spent + elapsed)
                cells.append(f"{label} {outcomes[200] / elapsed:7.1f} req/s"
                             + (f" (other: {others(outcomes)})" if set(outcomes) - {200} else ""))
            print(f"round {round_ + 1}: " + "   ".join(cells), flush=True)
    finally:
        for http in clients:
            await http.aclose()
    return totals, cpu


def ledger_counted(redis_port: int) -> str:
    """What the ledger on Redis holds for the hot key: its spend, and its requests of the last minute."""
    owner = f"mpilot:{{key:{hashlib.sha256(HOT.encode()).hexdigest()}}}"

    def cli(*args: str) -> str:
        return subprocess.run(["redis-cli", "-p", str(redis_port), *args], capture_output=True, text=True,
                              timeout=10).stdout.strip()

    spend = cli("GET", f"{owner}:nanos")
    rpm = cli("HVALS", f"{owner}:rpm").split()
    counted = sum(int(value) for value in rpm if value.lstrip("-").isdigit())
    dollars = f"${int(spend) / 1e9:.6f}" if spend.isdigit() else "nothing"
    return f"spend {dollars}, requests counted in the last minute: {counted}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of requests per key, in all")
    parser.add_argument("--rounds", type=int, default=4, help="blocks per key (each --seconds / --rounds long)")
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients, spread over both proxies")
    args = parser.parse_args()
    if args.seconds <= 0 or args.rounds < 1 or args.clients < 1:
        parser.error("--seconds, --rounds and --clients must be positive")

    with ExitStack() as stack:
        upstream = stack.enter_context(running_upstream(words=5))
        redis_port = stack.enter_context(redis_server())
        proxies = [ProxyProcess(fleet_config(upstream, redis_port), Path(stack.enter_context(
            tempfile.TemporaryDirectory()))) for _ in range(2)]
        for proxy in proxies:
            stack.callback(proxy.stop)
        start_all(proxies)
        totals, cpu = asyncio.run(measure(proxies, args))
        rates = {}
        print()
        for label, (outcomes, elapsed) in totals.items():
            rates[label] = outcomes[200] / elapsed
            print(f"{label:<14} {rates[label]:8.1f} req/s admitted ({outcomes[200]} in {elapsed:.1f} s; "
                  f"other answers: {others(outcomes)}); proxies' CPU per request: "
                  f"{cpu[label] / max(1, sum(outcomes.values())) * 1e3:.2f} ms")
        print(f"ledger (Redis) for the hot key: {ledger_counted(redis_port)}")
        ratio = rates["hot key"] / rates["unlimited key"] if rates["unlimited key"] else float("nan")
        print(f"hot key / unlimited key throughput: {ratio:.2f} (target >= 0.9)")


if __name__ == "__main__":
    main()
