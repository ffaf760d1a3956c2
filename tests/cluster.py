"""A local scale-out on one machine: one Redis, two proxies with the plugin, nginx in front.

    .venv/bin/python -m tests.cluster        # (scripts/scale_out) starts it, sends requests, stops

Everything listens on loopback ports. The proxies run the shipped config.yaml with
`coordination_redis` added, the embedded `demo` model (no provider, no network), one config-declared
`sk-bf-` key and MPilot JWTs signed with an HS256 secret.
"""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import yaml

from .harness import MASTER_KEY, SHIPPED_CONFIG, ProxyProcess
from .loopback import free_port

ISSUER = "https://mpilot.local/issuer"
HS_SECRET = "local-cluster-hs256-secret-0123456789"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"

NGINX_CONF = """
worker_processes 1;
error_log {workdir}/nginx-error.log warn;
pid {workdir}/nginx.pid;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {workdir}/nginx-body;
  proxy_temp_path {workdir}/nginx-proxy;
  fastcgi_temp_path {workdir}/nginx-fastcgi;
  uwsgi_temp_path {workdir}/nginx-uwsgi;
  scgi_temp_path {workdir}/nginx-scgi;
  upstream proxies {{
{servers}
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://proxies;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;               # SSE passes through as it is written
      proxy_read_timeout 60s;
      proxy_connect_timeout 2s;
      # A proxy that is down (refused, reset before answering) is skipped: the request goes to the other.
      proxy_next_upstream error timeout http_502 http_503;
      proxy_next_upstream_tries 2;
      add_header X-Served-By $upstream_addr always;
      error_page 502 503 504 = @unavailable;
    }}
    location @unavailable {{
      default_type application/json;
      return 503 '{unavailable}';
    }}
  }}
}}
"""


# What nginx answers when no proxy could: Cohere's error shape, so clients handle it like any 503.
UNAVAILABLE = ('{"type": "service_unavailable_error", "message": "no proxy could answer, retry", '
               '"code": "service_unavailable", "id": "nginx"}')


def cluster_config(redis_port: int, keys: list[dict[str, Any]]) -> dict[str, Any]:
    config = copy.deepcopy(yaml.safe_load(SHIPPED_CONFIG.read_text()))
    config["general_settings"]["master_key"] = MASTER_KEY
    config["general_settings"]["coordination_redis"] = {"host": "127.0.0.1", "port": redis_port}
    config["mpilot"] = {"jwt": {"issuer": ISSUER, "secret": HS_SECRET}, "virtual_keys": keys}
    return config


def virtual_key_jwt(raw_key: str, ttl: int = 600) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "local-app", "iat": now, "exp": now + ttl,
              "vk": hashlib.sha256(raw_key.encode()).hexdigest()}
    return jwt.encode(claims, HS_SECRET, algorithm="HS256")


class LocalCluster:
    def __init__(self, workdir: Path, keys: list[dict[str, Any]], proxies: int = 2) -> None:
        self.workdir = workdir
        self.redis_port = free_port()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = cluster_config(self.redis_port, keys)
        self.proxies = []
        for n in range(proxies):
            directory = workdir / f"proxy{n}"
            directory.mkdir(parents=True, exist_ok=True)
            self.proxies.append(ProxyProcess(config, directory))
        self._redis: subprocess.Popen[bytes] | None = None
        self._nginx: subprocess.Popen[bytes] | None = None

    def start(self) -> LocalCluster:
        self._redis = subprocess.Popen([REDIS, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
                                        "--appendonly", "no", "--dir", str(self.workdir)],
                                       stdout=subprocess.DEVNULL, start_new_session=True)
        self.redis("PING", expect="PONG")
        started = [_start_in_background(proxy) for proxy in self.proxies]
        for thread in started:
            thread.join()
        errors = [proxy.start_error for proxy in self.proxies if getattr(proxy, "start_error", None)]
        if errors:
            self.stop()
            raise RuntimeError(f"a proxy did not start: {errors[0]}")
        conf = self._write_nginx_conf(drained=None)
        self._nginx = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(self.workdir), "-g", "daemon off;"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(f"{self.url}/health/liveliness", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("nginx did not come up")
            time.sleep(0.1)

    def _write_nginx_conf(self, drained: int | None) -> Path:
        servers = "\n".join(
            f"    server 127.0.0.1:{p.port} max_fails=1 fail_timeout=3s{' down' if n == drained else ''};"
            for n, p in enumerate(self.proxies))
        conf = self.workdir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(workdir=self.workdir, servers=servers, port=self.port,
                                          unavailable=UNAVAILABLE))
        return conf

    def _reload_nginx(self, drained: int | None) -> None:
        """New workers take the new upstreams; the old ones finish their requests and exit. Returns once
        they have: until then an old worker may still pick the upstream being drained."""
        assert self._nginx is not None
        old = self._nginx_workers()
        self._write_nginx_conf(drained)
        os.kill(self._nginx.pid, signal.SIGHUP)
        deadline = time.monotonic() + 30
        while self._nginx_workers() & old or not self._nginx_workers():
            if time.monotonic() > deadline:
                raise RuntimeError("nginx's old workers did not exit after a reload")
            time.sleep(0.05)

    def _nginx_workers(self) -> set[int]:
        assert self._nginx is not None
        pid = self._nginx.pid
        return {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}

    def rolling_restart(self, n: int) -> None:
        """Restart proxy `n` the way a rolling deploy does: out of the balancer, restart, back in."""
        self._reload_nginx(drained=n)
        self.restart(n)
        self._reload_nginx(drained=None)

    def redis(self, *command: str, expect: str | None = None) -> str:
        deadline = time.monotonic() + 10
        while True:
            out = subprocess.run(["redis-cli", "-p", str(self.redis_port), *command], capture_output=True,
                                 text=True).stdout.strip()
            if expect is None or out == expect or time.monotonic() > deadline:
                return out
            time.sleep(0.05)

    def kill(self, n: int) -> None:
        process = self.proxies[n]._proc
        assert process is not None
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def restart(self, n: int) -> None:
        self.proxies[n].stop()
        self.proxies[n].start()

    def stop(self) -> None:
        for child in (self._nginx, self._redis):
            if child is not None and child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
                child.wait(timeout=10)
        for proxy in self.proxies:
            proxy.stop()


def _start_in_background(proxy: ProxyProcess) -> Any:
    import threading

    def start() -> None:
        try:
            proxy.start()
        except BaseException as error:  # noqa: BLE001  # reported by LocalCluster.start
            proxy.start_error = error  # type: ignore[attr-defined]

    thread = threading.Thread(target=start)
    thread.start()
    return thread


def main() -> None:
    key = "sk-bf-local-cluster-0001-0123456789abcdef0123456789"
    with tempfile.TemporaryDirectory() as workdir:
        cluster = LocalCluster(Path(workdir), [{"key": key, "key_alias": "local", "rpm_limit": 20,
                                                "max_budget": 1.0}]).start()
        try:
            print(f"nginx {cluster.url} -> proxies {[p.url for p in cluster.proxies]}, redis :{cluster.redis_port}")
            body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
            for label, token in (("sk-bf- key", key), ("virtual-key JWT", virtual_key_jwt(key))):
                for _ in range(3):
                    response = httpx.post(f"{cluster.url}/litellm/cohere/v2/chat", json=body,
                                          headers={"Authorization": f"Bearer {token}"}, timeout=30)
                    print(f"{label}: {response.status_code} via {response.headers.get('x-served-by')}")
            info = httpx.get(f"{cluster.url}/mpilot/key/info", headers={"Authorization": f"Bearer {key}"}).json()
            print(f"key {info['key_id']}: spend ${info['spend']:.6f} of ${info['max_budget']:.2f}")
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
