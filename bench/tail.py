"""The tail: the Cohere route's p99 against LiteLLM's own route, and why it moves.

    .venv/bin/python -m bench.tail [--requests 1000] [--rounds 1]

With `--rounds N` a last table pools every round's requests per answer size (the p99 of N x 1,000
requests, and its bootstrap interval) and gives the median of the rounds' own p99 ratios.

One proxy with the plugin, two fake upstreams (their own processes): model `fake` answers 40 words (the
long answer of bench/compare_routes), model `short` one sentence; a short prompt for both. For each answer
size, `--requests` non-stream requests per route, sequential and alternating one by one (master key, so
only the route differs). Prints p50, p90, p99 and the ratio cohere/openai (> 1: the Cohere route is
slower), with:
- a bootstrap interval of the p99 ratio (1,000 resamples of each side): what the ratio of two p99s of
  this many requests can be by chance alone, from one machine's noise;
- the interpreter's garbage-collection pauses inside the proxy (bench/gc_probe.py, loaded as a callback)
  that fell within each route's requests: collections per 1,000 requests, their milliseconds per request,
  and how many of each route's slowest 1% a collection landed in.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from tests.harness import MASTER_KEY, ProxyProcess, fake_model

from .compare_routes import percentile
from .setup import bench_config, running_upstream

PROMPT = [{"role": "user", "content": "Say hello."}]
ROUTES = {"cohere": "/litellm/cohere/v2/chat", "openai": "/v1/chat/completions"}


def timed(client: httpx.Client, model: str, requests: int) -> dict[str, list[tuple[float, float]]]:
    """(start, end) on the monotonic clock of each request, by route, alternating one by one."""
    spans: dict[str, list[tuple[float, float]]] = {"cohere": [], "openai": []}
    for i in range(requests * 2):
        name = "cohere" if i % 2 == 0 else "openai"
        start = time.monotonic()
        response = client.post(ROUTES[name], json={"model": model, "messages": PROMPT, "max_tokens": 200})
        spans[name].append((start, time.monotonic()))
        response.raise_for_status()
    return spans


def bootstrap_ratio(cohere: list[float], openai: list[float], q: float, rounds: int = 1000) -> tuple[float, float]:
    random.seed(7)
    ratios = sorted(percentile(random.choices(cohere, k=len(cohere)), q)
                    / percentile(random.choices(openai, k=len(openai)), q) for _ in range(rounds))
    return ratios[int(0.05 * rounds)], ratios[int(0.95 * rounds)]


def collections_in(spans: list[tuple[float, float]], pauses: list[tuple[float, float, int, int]],
                   generation: int | None = None) -> list[list[float]]:
    """For each request, the durations of the collections (of `generation`, else all) that started within it."""
    pauses = [pause for pause in pauses if generation is None or pause[2] == generation]
    ordered = sorted(pauses)
    out: list[list[float]] = []
    j = 0
    for start, end in spans:
        while j < len(ordered) and ordered[j][0] < start:
            j += 1
        k, inside = j, []
        while k < len(ordered) and ordered[k][0] <= end:
            inside.append(ordered[k][1])
            k += 1
        out.append(inside)
    return out


def report(label: str, spans: dict[str, list[tuple[float, float]]],
           pauses: list[tuple[float, float, int, int]]) -> None:
    ms = {name: [(end - start) * 1e3 for start, end in spans[name]] for name in spans}
    print(f"\n{label}: {len(ms['cohere'])} requests a route")
    print(f"{'':>6} {'cohere ms':>10} {'openai ms':>10} {'ratio':>7}")
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        c, o = percentile(ms["cohere"], q), percentile(ms["openai"], q)
        print(f"{name:>6} {c:>10.2f} {o:>10.2f} {c / o:>7.3f}")
    low, high = bootstrap_ratio(ms["cohere"], ms["openai"], 0.99)
    print(f"p99 ratio by chance alone (bootstrap, 90%): {low:.3f} - {high:.3f}")
    for name in ("cohere", "openai"):
        inside = collections_in(spans[name], pauses)
        count = sum(len(found) for found in inside)
        pause_ms = sum(sum(found) for found in inside) * 1e3
        cut = percentile(ms[name], 0.99)
        slowest = [found for found, took in zip(inside, ms[name], strict=True) if took >= cut]
        print(f"{name:>6}: {count / len(inside) * 1000:6.0f} collections per 1,000 requests, "
              f"{pause_ms / len(inside):.3f} ms of them per request; "
              f"a collection in {sum(1 for found in slowest if found)} of the slowest {len(slowest)}")
        collected = sum(pause[3] for pause in pauses if any(start <= pause[0] <= end for start, end in spans[name]))
        print(f"{'':>8}objects collected (cyclic garbage): {collected / len(inside):.0f} per request")
        by_generation = []
        for generation in (0, 1, 2):
            found = [pause for request in collections_in(spans[name], pauses, generation) for pause in request]
            if found:
                by_generation.append(f"gen{generation} {len(found)} x {statistics.mean(found) * 1e3:.2f} ms "
                                     f"(max {max(found) * 1e3:.1f})")
        print(f"{'':>8}{'; '.join(by_generation)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per route and answer size")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    with ExitStack() as stack:
        long_answers = stack.enter_context(running_upstream(words=40))
        one_sentence = stack.enter_context(running_upstream(words=8))
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        config: dict[str, Any] = bench_config(long_answers)
        config["model_list"].append(fake_model("short", one_sentence))
        config["litellm_settings"]["callbacks"].append("bench.gc_probe.probe")
        proxy = ProxyProcess(config, workdir).start()
        stack.callback(proxy.stop)
        with httpx.Client(base_url=proxy.url, headers={"Authorization": f"Bearer {MASTER_KEY}"},
                          timeout=60) as client:
            timed(client, "fake", 50)  # warm up both routes
            pooled: dict[str, dict[str, list[float]]] = {}
            ratios: dict[str, list[float]] = {}
            for round_ in range(args.rounds):
                for label, model in (("one-sentence answer", "short"), ("40-word answer", "fake")):
                    client.get("/bench/gc-pauses").raise_for_status()  # forget the warm-up's
                    spans = timed(client, model, args.requests)
                    pauses = [tuple(pause) for pause in client.get("/bench/gc-pauses").json()]
                    report(f"round {round_ + 1}, {label}", spans, pauses)  # type: ignore[arg-type]
                    for name, each in spans.items():
                        pooled.setdefault(label, {}).setdefault(name, []).extend(end - start for start, end in each)
                    ms = {name: [end - start for start, end in each] for name, each in spans.items()}
                    ratios.setdefault(label, []).append(percentile(ms["cohere"], 0.99) / percentile(ms["openai"], 0.99))
            if args.rounds > 1:
                summary(pooled, ratios)


def summary(pooled: dict[str, dict[str, list[float]]], ratios: dict[str, list[float]]) -> None:
    """The p99 of all rounds' requests together (a p99 of more requests moves less by chance), and the
    median of the rounds' own p99 ratios."""
    print(f"\n{'all rounds':<22} {'requests':>9} {'cohere p99':>11} {'openai p99':>11} {'ratio':>7} "
          f"{'90% by chance':>15} {'rounds: median (lowest-highest)':>33}")
    for label, ms in pooled.items():
        c, o = percentile(ms["cohere"], 0.99), percentile(ms["openai"], 0.99)
        low, high = bootstrap_ratio(ms["cohere"], ms["openai"], 0.99)
        each = sorted(ratios[label])
        print(f"{label:<22} {len(ms['cohere']):>9} {c * 1e3:>11.2f} {o * 1e3:>11.2f} {c / o:>7.3f} "
              f"{low:>7.3f}-{high:.3f} {statistics.median(each):>14.3f} ({each[0]:.3f}-{each[-1]:.3f})")


if __name__ == "__main__":
    main()
