from __future__ import annotations

import os

# In this process too, as in the proxies the tests start: LiteLLM's packaged prices, no fetch from the network.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
import shutil
import subprocess
import time
from collections.abc import Iterator

import cohere
import httpx
import pytest

from .fake_upstream import FakeUpstream
from .harness import MASTER_KEY, ProxyProcess, proxy_config_for
from .jwt_issuer import JwksServer, ec_key, rsa_key
from .loopback import free_port
from .redis_servers import RedisCluster, RedisSentinel


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstream]:
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def jwks() -> Iterator[JwksServer]:
    """MPilot's token issuer: an RSA and an EC signing key behind a real JWKS endpoint."""
    server = JwksServer(rsa_key("rsa-1"), ec_key("ec-1")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def proxy(upstream: FakeUpstream, jwks: JwksServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    """One proxy for the session: the shipped config's plugin registration, models on the fake upstream,
    test virtual keys in config and in the key store, JWTs from `jwks`."""
    process = ProxyProcess(proxy_config_for(upstream, jwks_url=jwks.url), tmp_path_factory.mktemp("proxy")).start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real redis-server on loopback for the session, empty at start; the one named by
    `MPILOT_TEST_REDIS_PORT` when set (scripts/mutation.py starts it once, not once per mutant, and empties
    it between mutants)."""
    if os.environ.get("MPILOT_TEST_REDIS_PORT"):
        yield int(os.environ["MPILOT_TEST_REDIS_PORT"])
        return
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


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A real 3-master Redis Cluster on loopback for the session; `flushall()` it where a test needs it empty."""
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinel]:
    """A real master + replica + sentinel on loopback, one per test module: a failover test (`stop_master()`)
    leaves it with no replica, so a module that fails over should do so last, or once."""
    sentinel = RedisSentinel(tmp_path_factory.mktemp("redis-sentinel")).start()
    yield sentinel
    sentinel.stop()


@pytest.fixture
def fake(upstream: FakeUpstream) -> FakeUpstream:
    """The upstream with an empty script and no recorded requests."""
    upstream.reset()
    return upstream


@pytest.fixture
def co(proxy: ProxyProcess) -> cohere.ClientV2:
    return cohere.ClientV2(api_key=MASTER_KEY, base_url=f"{proxy.url}/litellm/cohere", timeout=30)


@pytest.fixture
def co_no_retry(proxy: ProxyProcess) -> cohere.ClientV2:
    """For errors: the SDK retries 408/409/429/5xx twice unless told not to."""
    return cohere.ClientV2(api_key=MASTER_KEY, base_url=f"{proxy.url}/litellm/cohere", timeout=30, max_retries=0)


@pytest.fixture
def http(proxy: ProxyProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxy.url, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30) as client:
        yield client
