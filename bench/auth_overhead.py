"""What the plugin's auth hook costs, measured against a baseline in the same run.

    .venv/bin/python -m bench.auth_overhead [--requests 400] [--rounds 1]

The hook runs on every request of the proxy, not only the Cohere route's. Three proxies on one fake
upstream, requests alternating one by one so machine noise falls on both sides alike:
1. presence: LiteLLM's own `/v1/chat/completions` with the master key, on a proxy with the plugin
   loaded (hook, callbacks, routes) vs one from the same models without it (target <= 1.01);
2. a budgeted key: the Cohere route with an `sk-bf-` key that has a budget and an rpm limit (a rate
   count, a cost estimate, a reservation and its settlement in the ledger on every request) vs the
   master key, on the SQLite ledger and on Redis (target <= 1.02).
Prints p50 and p99 (requests alternating one by one) and the proxy's CPU time per request (over
alternating blocks of 25) for each side, and the ratios (> 1: slower). A ratio moves 3-4% from run to run
on a shared 2-core machine: with `--rounds N` the comparisons run N times on the same proxies, and a
last table gives each ratio's median over the rounds, with the lowest and highest.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.harness import MASTER_KEY, SHIPPED_CONFIG, ProxyProcess
from tests.loopback import free_port

from .compare_routes import COHERE, OPENAI, percentile
from .setup import bench_config, running_upstream

BUDGETED = "sk-bf-bench-budgeted-0123456789abcdef0123456789abcdef"


def with_budgeted_key(config: dict[str, Any]) -> dict[str, Any]:
    config["mpilot"]["virtual_keys"].append({"key": BUDGETED, "max_budget": 1000.0, "rpm_limit": 1_000_000})
    return config


def without_plugin(config: dict[str, Any]) -> dict[str, Any]:
    """The same proxy as a user has it before adding the plugin: models and master key only."""
    shipped = yaml.safe_load(SHIPPED_CONFIG.read_text())
    return {"model_list": config["model_list"], "router_settings": config["router_settings"],
            "general_settings": {"master_key": MASTER_KEY},
            "litellm_settings": {key: value for key, value in shipped["litellm_settings"].items()
                                 if key not in ("callbacks", "enable_post_custom_auth_checks")}}


@contextmanager
def redis_server() -> Iterator[int]:
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        process = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                                    "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
                                   stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                                 text=True).stdout.strip() != "PONG":
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
            yield port
        finally:
            process.terminate()
            process.wait(timeout=10)


def start_all(proxies: list[ProxyProcess]) -> None:
    threads = [threading.Thread(target=proxy.start) for proxy in proxies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


class Side:
    """One side of a comparison: a proxy, a route and body, a token; its latencies and proxy CPU time."""

    def __init__(self, proxy: ProxyProcess, request: tuple[str, dict[str, Any]], token: str) -> None:
        self.proxy, (self.path, self.body), self.token = proxy, request, token
        self.client = httpx.Client(base_url=proxy.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        self.times: list[float] = []
        self.cpu = 0.0
        self.blocked = 0

    def once(self, record: bool = True) -> None:
        start = time.perf_counter()
        self.client.post(self.path, json=self.body).raise_for_status()
        if record:
            self.times.append(time.perf_counter() - start)

    def p50(self) -> float:
        return statistics.median(self.times) * 1e3

    def p99(self) -> float:
        return percentile(self.times, 0.99) * 1e3

    def cpu_ms(self) -> float:
        return self.cpu / self.blocked * 1e3

    def block(self, requests: int) -> None:
        """CPU time over `requests` in a row: work a request leaves for after its answer (LiteLLM's
        logging) counts for its own side, not for whichever request comes next."""
        cpu = self.proxy.cpu_seconds()
        for _ in range(requests):
            self.once(record=False)
        self.cpu += self.proxy.cpu_seconds() - cpu
        self.blocked += requests


FIGURES = (("latency p50", "ms", Side.p50), ("latency p99", "ms", Side.p99),
           ("proxy CPU per request", "ms", Side.cpu_ms))


def compare(label: str, subject: Side, baseline: Side, requests: int) -> dict[str, float]:
    """The two sides' figures, printed; returns each figure's ratio."""
    for side in (subject, baseline):
        side.times, side.cpu, side.blocked = [], 0.0, 0
    for _ in range(30):  # warm up both
        subject.once(record=False)
        baseline.once(record=False)
    for _ in range(requests):  # latency: alternating request by request
        subject.once()
        baseline.once()
    for _ in range(max(1, requests // 25)):  # CPU: alternating blocks of 25
        subject.block(25)
        baseline.block(25)
    print(f"\n{label} ({requests} each, alternating)")
    print(f"{'figure':<26} {'subject':>10} {'baseline':>10} {'ratio':>7}")
    for name, unit, of in FIGURES:
        print(f"{name + ' (' + unit + ')':<26} {of(subject):>10.2f} {of(baseline):>10.2f} "
              f"{of(subject) / of(baseline):>7.3f}")
    return {name: of(subject) / of(baseline) for name, _, of in FIGURES}


def summary(ratios: dict[str, list[dict[str, float]]]) -> None:
    rounds = len(next(iter(ratios.values())))
    print(f"\nMedian ratio over {rounds} rounds (lowest - highest)")
    print(f"{'comparison':<44} " + " ".join(f"{name:>22}" for name, _, _ in FIGURES))
    for label, each in ratios.items():
        cells = []
        for name, _, _ in FIGURES:
            values = sorted(round_[name] for round_ in each)
            cells.append(f"{statistics.median(values):.3f} ({values[0]:.3f}-{values[-1]:.3f})")
        print(f"{label:<44} " + " ".join(f"{cell:>22}" for cell in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400, help="requests per side and comparison")
    parser.add_argument("--rounds", type=int, default=1, help="times to run the three comparisons")
    args = parser.parse_args()

    with ExitStack() as stack:
        upstream = stack.enter_context(running_upstream())
        redis_port = stack.enter_context(redis_server())
        workdirs = [Path(stack.enter_context(tempfile.TemporaryDirectory())) for _ in range(3)]
        plugin = ProxyProcess(with_budgeted_key(bench_config(upstream)), workdirs[0])
        bare = ProxyProcess(without_plugin(bench_config(upstream)), workdirs[1])
        shared = with_budgeted_key(bench_config(upstream))
        shared["general_settings"]["coordination_redis"] = {"host": "127.0.0.1", "port": redis_port}
        redis_backed = ProxyProcess(shared, workdirs[2])
        proxies = [plugin, bare, redis_backed]
        try:
            start_all(proxies)
            comparisons = {
                "presence (master key, /v1/chat/completions)": (Side(plugin, OPENAI, MASTER_KEY),
                                                               Side(bare, OPENAI, MASTER_KEY)),
                "budgeted key / master key, SQLite ledger": (Side(plugin, COHERE, BUDGETED),
                                                             Side(plugin, COHERE, MASTER_KEY)),
                "budgeted key / master key, Redis ledger": (Side(redis_backed, COHERE, BUDGETED),
                                                            Side(redis_backed, COHERE, MASTER_KEY)),
            }
            ratios: dict[str, list[dict[str, float]]] = {label: [] for label in comparisons}
            for round_ in range(args.rounds):
                for label, (subject, baseline) in comparisons.items():
                    ratios[label].append(compare(f"Round {round_ + 1}: {label}", subject, baseline, args.requests))
            if args.rounds > 1:
                summary(ratios)
        finally:
            for proxy in proxies:
                proxy.stop()


if __name__ == "__main__":
    main()
