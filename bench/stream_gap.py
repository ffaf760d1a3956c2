"""Where a Cohere stream's extra time goes: raw-byte timings of streams through one proxy.

    .venv/bin/python -m bench.stream_gap [--streams 100]

Alternates the Cohere route with LiteLLM's `/v1/chat/completions`, plain and with the parameters
the Cohere route adds (`drop_params`, `stream_options.include_usage`), reading raw bytes so the
client's own parsing is the same for all; prints median time to the end of the stream and the ratio
to the plain OpenAI route.
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx

from tests.harness import MASTER_KEY

from .setup import running_proxy

BASE = {"model": "fake", "messages": [{"role": "user", "content": "Summarise Hamlet."}], "max_tokens": 200,
        "stream": True}
VARIANTS = {
    "cohere route": ("/litellm/cohere/v2/chat", BASE),
    "openai route": ("/v1/chat/completions", BASE),
    "openai + the cohere route's params": ("/v1/chat/completions",
                                           {**BASE, "drop_params": True, "stream_options": {"include_usage": True}}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=100, help="streams per variant")
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with running_proxy() as proxy, httpx.Client(base_url=proxy.url, headers={"Authorization": f"Bearer {MASTER_KEY}"},
                                                timeout=60) as client:
        for i in range((args.streams + 5) * len(VARIANTS)):
            name = list(VARIANTS)[i % len(VARIANTS)]
            path, body = VARIANTS[name]
            start = time.perf_counter()
            with client.stream("POST", path, json=body) as response:
                for _ in response.iter_raw():
                    pass
            if i >= 5 * len(VARIANTS):  # the first rounds warm up
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["openai route"])
    for name, samples in times.items():
        print(f"{name:<36} {statistics.median(samples) * 1e3:8.2f} ms {statistics.median(samples) / base:7.3f}")


if __name__ == "__main__":
    main()
