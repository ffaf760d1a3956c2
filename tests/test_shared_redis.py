"""Two proxy processes sharing one real Redis: a key's rpm limit and budget hold across both."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .fake_upstream import FakeUpstream
from .harness import ProxyProcess, proxy_config_for, virtual_key
from .jwt_issuer import JwksServer
from .loopback import free_port

PATH = "/litellm/cohere/v2/chat"
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    server = shutil.which("redis-server")
    assert server, "redis-server is missing: scripts/test installs it"
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(workdir)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True).stdout.strip() \
            != "PONG":
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    yield port
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def pair(upstream: FakeUpstream, jwks: JwksServer, redis_port: int,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProxyProcess, ProxyProcess]]:
    config = proxy_config_for(upstream, jwks_url=jwks.url)
    config["general_settings"]["coordination_redis"] = {"host": "127.0.0.1", "port": redis_port}
    proxies = [ProxyProcess(config, Path(tmp_path_factory.mktemp(f"shared{n}"))) for n in range(2)]
    errors: list[BaseException] = []

    def start(proxy: ProxyProcess) -> None:
        try:
            proxy.start()
        except BaseException as error:  # noqa: BLE001  # reported below
            errors.append(error)

    threads = [threading.Thread(target=start, args=(p,)) for p in proxies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert not errors, errors
        yield proxies[0], proxies[1]
    finally:
        for proxy in proxies:
            proxy.stop()


def ask(proxy: ProxyProcess, token: str) -> httpx.Response:
    return httpx.post(proxy.url + PATH, json={"model": "fake", "messages": USER},
                      headers={"Authorization": f"Bearer {token}"}, timeout=30)


def spend_on(proxy: ProxyProcess, token: str) -> float:
    response = httpx.get(f"{proxy.url}/mpilot/key/info", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["spend"]


@pytest.mark.parametrize("source", ["cfg", "store"])
def test_rpm_limit_is_shared(pair: tuple[ProxyProcess, ProxyProcess], fake: FakeUpstream, source: str) -> None:
    first, second = pair
    token = virtual_key(source, "rpm")  # 2 a minute in total, not 2 on each
    assert ask(first, token).status_code == 200
    assert ask(second, token).status_code == 200
    refused = [ask(first, token), ask(second, token)]
    assert [r.status_code for r in refused] == [429, 429]
    assert all(int(r.headers["retry-after"]) > 0 for r in refused)


@pytest.mark.parametrize("source", ["cfg", "store"])
def test_budget_spent_on_one_is_refused_on_the_other(pair: tuple[ProxyProcess, ProxyProcess], fake: FakeUpstream,
                                                     redis_port: int, source: str) -> None:
    first, second = pair
    token = virtual_key(source, "budget")  # $0.00004; each answer $0.000025
    assert ask(first, token).status_code == 200
    deadline = time.monotonic() + 10
    while spend_on(second, token) < 0.000024:  # the other proxy sees the spend
        assert time.monotonic() < deadline, "spend did not reach the other proxy"
        time.sleep(0.05)
    assert ask(second, token).status_code == 200
    while spend_on(first, token) < 0.000049:
        assert time.monotonic() < deadline, "spend did not reach the first proxy"
        time.sleep(0.05)
    assert ask(first, token).status_code == 402
    assert ask(second, token).status_code == 402
    # The spend is in Redis, under the plugin's counter for this key.
    key_id = hashlib.sha256(token.encode()).hexdigest()
    stored = subprocess.run(["redis-cli", "-p", str(redis_port), "GET", f"mpilot:spend:key:{key_id}"],
                            capture_output=True, text=True).stdout.strip()
    assert float(stored) == pytest.approx(0.00005)
