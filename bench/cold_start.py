"""The first requests after a proxy starts, per route: each round starts a fresh proxy and sends its
first request to one route, then a few more.

    .venv/bin/python -m bench.cold_start [--rounds 2]

Prints, per route, the median over rounds of the first request's latency and of the next four's,
and the ratio of the Cohere route's first request to LiteLLM's own route's.
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx

from tests.harness import MASTER_KEY

from .setup import running_proxy

PROMPT = [{"role": "user", "content": "Summarise the plot of Hamlet in one paragraph."}]
ROUTES = {"cohere": "/litellm/cohere/v2/chat", "openai": "/v1/chat/completions"}


def first_requests(path: str, count: int = 5) -> list[float]:
    times = []
    with running_proxy() as proxy, httpx.Client(base_url=proxy.url, headers={"Authorization": f"Bearer {MASTER_KEY}"},
                                                timeout=60) as client:
        for _ in range(count):
            start = time.perf_counter()
            client.post(path, json={"model": "fake", "messages": PROMPT, "max_tokens": 200}).raise_for_status()
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="fresh proxies per route")
    args = parser.parse_args()
    firsts: dict[str, list[float]] = {name: [] for name in ROUTES}
    nexts: dict[str, list[float]] = {name: [] for name in ROUTES}
    for _ in range(args.rounds):
        for name, path in ROUTES.items():
            times = first_requests(path)
            firsts[name].append(times[0])
            nexts[name].append(statistics.median(times[1:]))
    first = {name: statistics.median(values) * 1e3 for name, values in firsts.items()}
    print(f"\n{'route':<10} {'first request':>14} {'next four, p50':>15}")
    for name in ROUTES:
        print(f"{name:<10} {first[name]:>11.0f} ms {statistics.median(nexts[name]) * 1e3:>12.1f} ms")
    print(f"first request, cohere/openai: {first['cohere'] / first['openai']:.3f}")


if __name__ == "__main__":
    main()
