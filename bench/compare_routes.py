"""Cohere route vs LiteLLM's own route, same proxy, same model, same prompt, same run.

    .venv/bin/python -m bench.compare_routes [--requests 300] [--concurrency 16]

Starts a fake OpenAI-compatible upstream (its own process) and one LiteLLM proxy with the plugin,
then measures `POST /litellm/cohere/v2/chat` against `POST /v1/chat/completions`, interleaving the
two so machine noise falls on both alike. Prints each figure and the ratio cohere/openai (for
throughput: openai rps / cohere rps), so > 1 always means the Cohere route is slower; also the
proxy's own CPU time per request and per stream, the work each route costs whatever else runs.
Also times the translation alone, in process, per request and per stream chunk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from plugin.cohere.request import to_openai_request
from plugin.cohere.response import to_cohere_response
from plugin.cohere.schema import parse_chat_request
from plugin.cohere.stream import CohereStream, sse
from plugin.cohere.wire import dumps, loads
from tests.harness import HS_SECRET, MASTER_KEY, ProxyProcess, virtual_key
from tests.jwt_issuer import claims

from .setup import running_proxy

PROMPT = [{"role": "user", "content": "Summarise the plot of Hamlet in one paragraph."}]
COHERE = ("/litellm/cohere/v2/chat", {"model": "fake", "messages": PROMPT, "max_tokens": 200})
OPENAI = ("/v1/chat/completions", {"model": "fake", "messages": PROMPT, "max_tokens": 200})


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class ProxyCpu:
    """The proxy's CPU time (all threads) spent during each route's requests, summed: less sensitive
    than wall time to what else the machine runs, since only the proxy's own work counts."""

    def __init__(self, proxy: ProxyProcess) -> None:
        self.proxy = proxy
        self.seconds: dict[str, float] = {"cohere": 0.0, "openai": 0.0}
        self.requests: dict[str, int] = {"cohere": 0, "openai": 0}

    @contextmanager
    def spent_on(self, name: str) -> Iterator[None]:
        before = self.proxy.cpu_seconds()
        yield
        self.seconds[name] += self.proxy.cpu_seconds() - before
        self.requests[name] += 1

    def per_request_ms(self, name: str) -> float:
        return self.seconds[name] / max(1, self.requests[name]) * 1e3


Call = tuple[str, dict[str, Any]]  # a route's path and the body sent to it


def sequential(client: httpx.Client, requests: int, cpu: ProxyCpu,
               routes: tuple[Call, Call] = (COHERE, OPENAI)) -> dict[str, list[float]]:
    """`requests` calls of each of `routes` (ours, then LiteLLM's), alternating; seconds each."""
    times: dict[str, list[float]] = {"cohere": [], "openai": []}
    for i in range(requests * 2):
        name, (path, body) = ("cohere", routes[0]) if i % 2 == 0 else ("openai", routes[1])
        with cpu.spent_on(name):
            start = time.perf_counter()
            response = client.post(path, json=body)
            times[name].append(time.perf_counter() - start)
        response.raise_for_status()
    return times


def first_and_last(client: httpx.Client, path: str, body: dict[str, Any], first: Callable[[str], bool]) \
        -> tuple[float, float]:
    start = time.perf_counter()
    ttfe = None
    with client.stream("POST", path, json={**body, "stream": True}) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if ttfe is None and first(line):
                ttfe = time.perf_counter() - start
    return ttfe or float("nan"), time.perf_counter() - start


def streaming(client: httpx.Client, requests: int, cpu: ProxyCpu) -> dict[str, tuple[list[float], list[float]]]:
    out: dict[str, tuple[list[float], list[float]]] = {"cohere": ([], []), "openai": ([], [])}
    checks = {
        "cohere": lambda line: line.startswith("data: ") and '"content-delta"' in line,
        "openai": lambda line: line.startswith("data: ") and '"content":"' in line.replace(" ", "")
        and '"content":""' not in line.replace(" ", ""),
    }
    # Cohere's message-end carries usage, so the route asks LiteLLM for it (stream_options.include_usage);
    # the OpenAI route is asked for the same, so both streams do the same work.
    bodies = {"cohere": COHERE, "openai": (OPENAI[0], {**OPENAI[1], "stream_options": {"include_usage": True}})}
    for i in range(requests * 2):
        name = "cohere" if i % 2 == 0 else "openai"
        path, body = bodies[name]
        with cpu.spent_on(name):
            ttfe, total = first_and_last(client, path, body, checks[name])
        out[name][0].append(ttfe)
        out[name][1].append(total)
    return out


async def throughput(url: str, path: str, body: dict[str, Any], concurrency: int, total: int) -> float:
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as client:
        remaining = total

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                (await client.post(path, json=body)).raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total / (time.perf_counter() - start)


def auth_latency(url: str, requests: int) -> dict[str, list[float]]:
    """The Cohere route's latency by who calls: LiteLLM's master key (declined by the plugin's hook),
    an `sk-bf-` virtual key, and a virtual-key JWT (verified once, then remembered)."""
    import hashlib

    import jwt

    raw = virtual_key("cfg", "open")
    token = jwt.encode(claims(vk=hashlib.sha256(raw.encode()).hexdigest(), ttl=3600), HS_SECRET, algorithm="HS256")
    callers = {"master key": MASTER_KEY, "sk-bf- key": raw, "virtual-key JWT": token}
    times: dict[str, list[float]] = {name: [] for name in callers}
    path, body = COHERE
    with httpx.Client(base_url=url, timeout=60) as client:
        for i in range(requests * len(callers)):
            name = list(callers)[i % len(callers)]
            start = time.perf_counter()
            client.post(path, json=body, headers={"Authorization": f"Bearer {callers[name]}"}).raise_for_status()
            times[name].append(time.perf_counter() - start)
    return times


def translation_cost(rounds: int = 3000) -> tuple[float, float]:
    """Microseconds of our own work per request (parse, translate both ways) and per stream chunk."""
    body = json.dumps(COHERE[1]).encode()
    openai_answer = {"id": "chatcmpl-1", "choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": "Hamlet, prince of Denmark, avenges his father. " * 8}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 80, "total_tokens": 100}}
    start = time.perf_counter()
    for _ in range(rounds):
        request = parse_chat_request(body)
        to_openai_request(request)
        dumps(to_cohere_response(openai_answer, request.stop_sequences))
    per_request = (time.perf_counter() - start) / rounds * 1e6

    frame = b"data: " + dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                                   "model": "fake", "choices": [{"index": 0, "delta": {"content": "word1 wo"},
                                                                 "finish_reason": None}]}) + b"\n\n"
    stream = CohereStream()
    start = time.perf_counter()
    for _ in range(rounds):
        b"".join(sse(event) for event in stream.feed(loads(frame[6:])))
    per_chunk = (time.perf_counter() - start) / rounds * 1e6
    return per_request, per_chunk


def row(label: str, cohere: float, openai: float, unit: str, ratio: float) -> None:
    print(f"{label:<34} {cohere:>10.2f} {openai:>10.2f} {unit:<4} {ratio:>7.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500, help="sequential requests per route")
    parser.add_argument("--streams", type=int, default=200, help="streams per route")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--throughput-requests", type=int, default=800, help="requests per route and round")
    args = parser.parse_args()

    with running_proxy() as proxy:
        run(proxy, args)


def run(proxy: ProxyProcess, args: argparse.Namespace) -> None:
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    with httpx.Client(base_url=proxy.url, headers=headers, timeout=60) as client:
        sequential(client, 30, ProxyCpu(proxy))  # warm up both routes
        streaming(client, 10, ProxyCpu(proxy))
        sequential_cpu, stream_cpu = ProxyCpu(proxy), ProxyCpu(proxy)
        times = sequential(client, args.requests, sequential_cpu)
        streams = streaming(client, args.streams, stream_cpu)
    rps: dict[str, list[float]] = {"cohere": [], "openai": []}
    for _ in range(3):
        for name, (path, body) in (("cohere", COHERE), ("openai", OPENAI)):
            rps[name].append(asyncio.run(throughput(proxy.url, path, body, args.concurrency,
                                                    args.throughput_requests)))
    per_request, per_chunk = translation_cost()
    callers = auth_latency(proxy.url, args.requests // 2)

    print(f"\nCohere route vs LiteLLM's /v1/chat/completions ({args.requests} sequential, {args.streams} streams,"
          f" {args.concurrency} concurrent)")
    print(f"{'figure':<34} {'cohere':>10} {'openai':>10} {'':<4} {'ratio':>7}")
    c50, o50 = statistics.median(times["cohere"]) * 1e3, statistics.median(times["openai"]) * 1e3
    row("latency p50", c50, o50, "ms", c50 / o50)
    c99, o99 = percentile(times["cohere"], 0.99) * 1e3, percentile(times["openai"], 0.99) * 1e3
    row("latency p99", c99, o99, "ms", c99 / o99)
    cc, oc = sequential_cpu.per_request_ms("cohere"), sequential_cpu.per_request_ms("openai")
    row("proxy CPU per request", cc, oc, "ms", cc / oc)
    crps, orps = statistics.median(rps["cohere"]), statistics.median(rps["openai"])
    row(f"throughput at {args.concurrency} clients", crps, orps, "rps", orps / crps)
    ct, ot = statistics.median(streams["cohere"][0]) * 1e3, statistics.median(streams["openai"][0]) * 1e3
    row("stream: first text event p50", ct, ot, "ms", ct / ot)
    ce, oe = statistics.median(streams["cohere"][1]) * 1e3, statistics.median(streams["openai"][1]) * 1e3
    row("stream: end p50", ce, oe, "ms", ce / oe)
    cc, oc = stream_cpu.per_request_ms("cohere"), stream_cpu.per_request_ms("openai")
    row("stream: proxy CPU per stream", cc, oc, "ms", cc / oc)
    print(f"{'translation per request':<34} {per_request:>10.1f} {'':>10} {'us':<4} "
          f"{per_request / (o50 * 1e3):>7.3f}  (share of LiteLLM's p50)")
    print(f"{'translation per stream chunk':<34} {per_chunk:>10.1f} {'':>10} {'us':<4}")
    base = statistics.median(callers["master key"]) * 1e3
    print(f"\nCohere route p50 by caller ({args.requests // 2} each, alternating; ratio to the master key)")
    for name, samples in callers.items():
        p50 = statistics.median(samples) * 1e3
        print(f"{name:<34} {p50:>10.2f} {'':>10} {'ms':<4} {p50 / base:>7.3f}")


if __name__ == "__main__":
    main()
