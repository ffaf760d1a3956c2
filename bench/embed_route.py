"""Cohere embed and rerank routes vs LiteLLM's own, same proxy, same model, same input, same run.

    .venv/bin/python -m bench.embed_route [--requests 200]

Starts a fake upstream (its own process; OpenAI's `/v1/embeddings`, Cohere's `/v2/rerank`) and one LiteLLM
proxy with the plugin, then measures, alternating request by request so machine noise falls on both alike:
`POST /litellm/cohere/v2/embed` against `POST /v1/embeddings` (model `fake-embed`, 8 texts, floats), and
`POST /litellm/cohere/v2/rerank` against LiteLLM's `POST /v1/rerank` (model `fake-rerank`, 20 documents).
Prints p50, p99 and the proxy's CPU time per request, and each ratio ours/LiteLLM's (> 1: ours is slower;
target <= 1.05). Stops by itself in about a minute with the default count (300: 1m43s on a busy 2-core machine).
"""

from __future__ import annotations

import argparse
import statistics

import httpx

from tests.harness import MASTER_KEY, ProxyProcess

from .compare_routes import Call, ProxyCpu, percentile, row, sequential
from .setup import running_proxy

TEXTS = [f"passage {i}: the quick brown fox jumps over the lazy dog near the river bank" for i in range(8)]
DOCUMENTS = [f"document {i} about {topic}" for i, topic in enumerate(["whales", "the sky", "carpets", "rivers"] * 5)]
PAIRS: dict[str, tuple[Call, Call]] = {
    "embed": (("/litellm/cohere/v2/embed", {"model": "fake-embed", "input_type": "search_document", "texts": TEXTS}),
              ("/v1/embeddings", {"model": "fake-embed", "input": TEXTS, "encoding_format": "float"})),
    "rerank": (("/litellm/cohere/v2/rerank", {"model": "fake-rerank", "query": "blue whales", "documents": DOCUMENTS,
                                              "top_n": 5}),
               ("/v1/rerank", {"model": "fake-rerank", "query": "blue whales", "documents": DOCUMENTS, "top_n": 5,
                               "return_documents": False})),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="sequential requests per route and endpoint")
    args = parser.parse_args()
    with running_proxy() as proxy:
        run(proxy, args.requests)


def run(proxy: ProxyProcess, requests: int) -> None:
    results = {}
    with httpx.Client(base_url=proxy.url, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=60) as client:
        for name, pair in PAIRS.items():
            sequential(client, 20, ProxyCpu(proxy), pair)  # warm up both routes
            cpu = ProxyCpu(proxy)
            results[name] = (sequential(client, requests, cpu, pair), cpu)
    print(f"\nCohere embed/rerank routes vs LiteLLM's own ({requests} sequential each, alternating)")
    print(f"{'figure':<34} {'cohere':>10} {'litellm':>10} {'':<4} {'ratio':>7}")
    for name, (times, cpu) in results.items():
        baseline = PAIRS[name][1][0]
        c50, o50 = statistics.median(times["cohere"]) * 1e3, statistics.median(times["openai"]) * 1e3
        row(f"{name} latency p50 (vs {baseline})", c50, o50, "ms", c50 / o50)
        c99, o99 = percentile(times["cohere"], 0.99) * 1e3, percentile(times["openai"], 0.99) * 1e3
        row(f"{name} latency p99", c99, o99, "ms", c99 / o99)
        cc, oc = cpu.per_request_ms("cohere"), cpu.per_request_ms("openai")
        row(f"{name} proxy CPU per request", cc, oc, "ms", cc / oc)


if __name__ == "__main__":
    main()
