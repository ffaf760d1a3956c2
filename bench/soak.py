"""Memory and file descriptors of a proxy with the plugin over a long mixed load.

    .venv/bin/python -m bench.soak [--requests 50000] [--clients 8] [--every 5000] [--max-seconds 1800]

One proxy (SQLite ledger) on a fake upstream in its own process. `--clients` threads send, in turn, the
request kinds of `KINDS`: the Cohere route with the master key (stream and non-stream), with a budgeted
`sk-bf-` key, with an MPilot virtual-key JWT that is new on every request (so the plugin's cache of verified
tokens fills to its bound and then turns over), with bad input (400s), and LiteLLM's own
`/v1/chat/completions`. Every `--every` requests it prints the proxy's resident memory (all processes of
its group) and open file descriptors; at the end, the growth over the second half of the run, which is
what a leak shows as (the first half holds start-up, warm caches and filling bounded ones).

Stops by itself after `--requests` or `--max-seconds`, whichever comes first.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import jwt

from tests.harness import HS_SECRET, MASTER_KEY, ProxyProcess, virtual_key
from tests.jwt_issuer import claims

from .auth_overhead import BUDGETED, with_budgeted_key
from .setup import bench_config, running_upstream

COHERE = "/litellm/cohere/v2/chat"
USER = [{"role": "user", "content": "Say hello in one sentence."}]
JWT_KEY_ID = hashlib.sha256(virtual_key("cfg", "jwt").encode()).hexdigest()


def kinds() -> list[tuple[str, str, Any, int]]:
    """(label, path, body or a function of the request number that makes (token, body), expected status)."""
    chat = {"model": "fake", "messages": USER}
    return [
        ("cohere", COHERE, chat, 200),
        ("cohere-stream", COHERE, {**chat, "stream": True}, 200),
        ("cohere-budgeted", COHERE, chat, 200),
        ("cohere-jwt", COHERE, chat, 200),
        ("cohere-bad", COHERE, {"model": "fake", "messages": "not a list"}, 400),
        ("openai", "/v1/chat/completions", {"model": "fake", "messages": USER}, 200),
    ]


def token_for(label: str, n: int) -> str:
    if label == "cohere-budgeted":
        return BUDGETED
    if label == "cohere-jwt":
        return jwt.encode(claims(vk=JWT_KEY_ID, jti=f"soak-{n}"), HS_SECRET, algorithm="HS256")
    return MASTER_KEY


def resident_mib(proxy: ProxyProcess) -> float:
    """Resident memory of every process in the proxy's process group, in MiB."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            if int(fields[2]) != proxy.pid:  # field 5 of stat: the process group
                continue
            with open(f"/proc/{pid}/status") as status:
                total += next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue
    return total / 1024


def open_fds(proxy: ProxyProcess) -> int:
    return len(os.listdir(f"/proc/{proxy.pid}/fd"))


class Load:
    def __init__(self, proxy: ProxyProcess, requests: int, deadline: float) -> None:
        self.proxy, self.requests, self.deadline = proxy, requests, deadline
        self.counter = itertools.count()
        self.lock = threading.Lock()
        self.done = 0
        self.unexpected: dict[str, int] = {}
        self.kinds = kinds()

    def client(self) -> None:
        with httpx.Client(base_url=self.proxy.url, timeout=60) as http:
            while time.monotonic() < self.deadline:
                n = next(self.counter)
                if n >= self.requests:
                    return
                label, path, body, expected = self.kinds[n % len(self.kinds)]
                response = http.post(path, json=body, headers={"Authorization": f"Bearer {token_for(label, n)}"})
                with self.lock:
                    self.done += 1
                    if response.status_code != expected:
                        key = f"{label}:{response.status_code}"
                        self.unexpected[key] = self.unexpected.get(key, 0) + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--every", type=int, default=5_000)
    parser.add_argument("--max-seconds", type=float, default=1800)
    args = parser.parse_args()

    with running_upstream(words=12) as upstream, tempfile.TemporaryDirectory() as workdir:
        proxy = ProxyProcess(with_budgeted_key(bench_config(upstream)), Path(workdir)).start()
        try:
            load = Load(proxy, args.requests, time.monotonic() + args.max_seconds)
            threads = [threading.Thread(target=load.client, daemon=True) for _ in range(args.clients)]
            started = time.monotonic()
            print(f"{'requests':>9} {'RSS MiB':>8} {'fds':>5} {'req/s':>6}")
            samples = [(0, resident_mib(proxy), open_fds(proxy))]
            print(f"{0:>9} {samples[0][1]:>8.1f} {samples[0][2]:>5} {'':>6}", flush=True)
            for thread in threads:
                thread.start()
            mark = args.every
            while any(thread.is_alive() for thread in threads):
                time.sleep(0.2)
                if load.done >= mark or not any(thread.is_alive() for thread in threads):
                    done = load.done
                    samples.append((done, resident_mib(proxy), open_fds(proxy)))
                    rate = done / (time.monotonic() - started)
                    print(f"{done:>9} {samples[-1][1]:>8.1f} {samples[-1][2]:>5} {rate:>6.0f}", flush=True)
                    mark = (done // args.every + 1) * args.every
            half = next(sample for sample in samples if sample[0] >= load.done // 2)
            last = samples[-1]
            print(f"second half ({half[0]} -> {last[0]} requests): RSS {last[1] - half[1]:+.1f} MiB, "
                  f"fds {last[2] - half[2]:+d}; unexpected answers: {load.unexpected or 'none'}")
        finally:
            proxy.stop()


if __name__ == "__main__":
    main()
