"""Starts real things for the tests and benchmarks: a LiteLLM proxy process with the plugin."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from .fake_upstream import FakeUpstream
from .loopback import free_port

REPO = Path(__file__).resolve().parent.parent
SHIPPED_CONFIG = REPO / "config.yaml"
MASTER_KEY = "sk-test-master-0123456789"
LITELLM = Path(sys.executable).parent / "litellm"

# Prices so spend is visible: $1 per million input tokens, $2 per million output tokens.
PRICED = {"input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002}
EMBEDDING_PRICE = {"input_cost_per_token": 0.0000001, "output_cost_per_token": 0.0}  # $0.10 per million tokens
RERANK_PRICE = {"input_cost_per_query": 0.002}  # $2 per thousand search units, as LiteLLM's map prices rerank-v3.5


def fake_model(name: str, upstream: FakeUpstream, **params: Any) -> dict[str, Any]:
    return {
        "model_name": name,
        "litellm_params": {"model": f"openai/{name}-upstream", "api_base": upstream.base_url,
                           "api_key": "fake-provider-key", **params},
        "model_info": dict(PRICED),
    }


# Virtual keys, one per limit; each is declared in config.yaml (`sk-bf-cfg-<name>`) and placed in the
# proxy's own key store (`sk-bf-store-<name>`), so every limit is tested for both.
LIMITS: dict[str, dict[str, Any]] = {
    "open": {"user_id": "user-open", "team_id": "team-open"},
    "models": {"models": ["fake"]},
    "group": {"models": ["group-b"]},
    "wildcard": {"models": ["fake-*"]},
    "blocked": {"blocked": True},
    "expired": {"expires": "2020-01-01T00:00:00+00:00"},
    "budget": {"max_budget": 0.00004},
    "window": {"max_budget": 0.00003, "budget_duration": "10s"},
    "rpm": {"rpm_limit": 2},
    "tpm": {"tpm_limit": 25},
    "stream": {},
    "jwt": {"models": ["fake"]},
    "tools": {"metadata": {"allowed_tools": ["get_weather"]}},
    "broke": {"max_budget": 0},
    "three": {"max_budget": 0.000075},  # three answers of $0.000025
    "v1-three": {"max_budget": 0.000075},  # the same, through Cohere's v1 chat
    "burst": {"rpm_limit": 5},
    "dear": {"max_budget": 0.001},  # fits calls to `fake`, not one to `fake-dear`
    "leave": {"max_budget": 0.00004},  # fits the reservation of one call at a time
    "embed-budget": {"max_budget": 0.0000005},  # five tokens of `fake-embed`
    "rerank-budget": {"max_budget": 0.003},  # one search unit of `fake-rerank`, not two
    "embed-models": {"models": ["fake-embed"], "rpm_limit": 2},
    "embed-fail": {"max_budget": 0.0000005},  # five tokens of `fake-embed`, one call's reservation at a time
    "embed-v1-budget": {"max_budget": 0.0000005},  # five tokens of `fake-embed`, through v1 embed
    "listing-rpm": {"rpm_limit": 3},  # model lists and tokenizing count against a key's requests
    "tokenize-burst": {"rpm_limit": 5},  # twenty tokenize requests at once
    "counting": {"max_budget": 0.00004},  # fits a call of `fake` with max_tokens 7, not a default reservation
    "documents": {"max_budget": 0.007049},  # three and a half answers of $0.002014: 2,000 tokens of documents
    "documents-stream": {"max_budget": 0.007049},  # the same, streamed
    "busy": {"max_budget": 1.0, "rpm_limit": 100_000},  # far from its limits: admitted in batches
    "fleet-rpm": {"rpm_limit": 5},  # through a vk JWT on two proxies
    "fleet-budget": {"max_budget": 0.00006, "user_id": "user-fleet", "team_id": "team-fleet"},  # two answers
    "failover": {"max_budget": 1.0, "rpm_limit": 100_000},  # its Redis master is stopped mid-traffic
    "outage": {"max_budget": 1.0, "rpm_limit": 100_000},  # its limits store is stopped, frozen, locked
    "alone": {"max_budget": 0.0001},  # four answers, counted by one proxy alone while its store is down
}
SOURCES = ("cfg", "store")
HS_SECRET = "hs256-test-secret-0123456789abcdef"


def virtual_key(source: str, name: str) -> str:
    return f"sk-bf-{source}-{name}-0123456789abcdef0123456789abcdef"


# Entries of the key store that are not virtual keys an MPilot token may act for, and one the hook
# cannot read (its expiry is not a time).
STORE_ONLY: dict[str, dict[str, Any]] = {
    "admin-owned": {"user_role": "proxy_admin", "user_id": "some-admin"},
    "ui-session": {"team_id": "litellm-dashboard", "user_id": "ui-user"},
    "unreadable": {"expires": "not-a-time"},
    # Restrictions only LiteLLM's key objects have: the plugin hands LiteLLM the object, LiteLLM enforces them.
    "parallel": {"max_parallel_requests": 1},
    "routes": {"allowed_routes": ["/v1/chat/completions"]},
    "model-budget": {"model_max_budget": {"fake": {"budget_limit": 0.00003, "time_period": "1d"}}},
}


def store_keys() -> list[dict[str, Any]]:
    return [{"key": virtual_key("store", name), "key_alias": f"store-{name}", **fields}
            for name, fields in {**LIMITS, **STORE_ONLY}.items()]


MAX_REQUEST_BYTES = 1024 * 1024  # the test proxies' body limit (default 20 MiB)


def mpilot_section(jwks_url: str | None) -> dict[str, Any]:
    from .jwt_issuer import AUDIENCE, ISSUER

    return {
        "jwt": {"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": jwks_url, "secret": HS_SECRET,
                "jwks_cooldown_seconds": 1},
        "virtual_keys": [{"key": virtual_key("cfg", name), "key_alias": f"cfg-{name}", **fields}
                         for name, fields in LIMITS.items()],
        # The fake upstream answers 7 tokens: a request without max_tokens is reserved as if it asked for 8.
        "limits": {"default_max_tokens": 8, "max_request_bytes": MAX_REQUEST_BYTES},
    }


def proxy_config_for(upstream: FakeUpstream, extra_models: list[dict[str, Any]] | None = None,
                     jwks_url: str | None = None) -> dict[str, Any]:
    """The shipped config.yaml (plugin registration included, unchanged) with models on `upstream`."""
    config = yaml.safe_load(SHIPPED_CONFIG.read_text())
    config = copy.deepcopy(config)
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    config["model_list"] = [
        *config["model_list"],
        fake_model("fake", upstream),
        {**fake_model("fake-b", upstream), "model_info": {**PRICED, "access_groups": ["group-b"]}},
        fake_model("fake-timeout", upstream, timeout=1.5),
        fake_model("fake-timeout-then-fake", upstream, timeout=1.5),  # falls back to `fake`
        {**fake_model("fake-dear", upstream), "model_info": {key: price * 100 for key, price in PRICED.items()}},
        {"model_name": "fake-cohere",
         "litellm_params": {"model": "cohere_chat/command-a-fake", "api_base": f"{upstream.base_url[:-3]}/v2/chat",
                            "api_key": "fake-cohere-key"},
         "model_info": dict(PRICED)},
        {"model_name": "fake-embed", "litellm_params": {"model": "openai/text-embedding-3-fake",
                                                         "api_base": upstream.base_url, "api_key": "fake-provider-key"},
         "model_info": {"mode": "embedding", **EMBEDDING_PRICE}},
        {"model_name": "fake-embed-ada", "litellm_params": {"model": "openai/ada-embedder-fake",
                                                             "api_base": upstream.base_url,
                                                             "api_key": "fake-provider-key"},
         "model_info": {"mode": "embedding", **EMBEDDING_PRICE}},  # answers one size: no `dimensions`
        {"model_name": "fake-embed-timeout", "litellm_params": {"model": "openai/text-embedding-3-fake",
                                                                 "api_base": upstream.base_url,
                                                                 "api_key": "fake-provider-key", "timeout": 1.5},
         "model_info": {"mode": "embedding", **EMBEDDING_PRICE}},
        {"model_name": "fake-embed-broken", "litellm_params": {"model": "openai/text-embedding-3-broken",
                                                                "api_base": dead, "api_key": "fake-provider-key"},
         "model_info": {"mode": "embedding", **EMBEDDING_PRICE}},  # falls back to `fake-embed`
        {"model_name": "fake-cohere-embed",
         "litellm_params": {"model": "cohere/embed-fake", "api_base": f"{upstream.base_url[:-3]}/v2/embed",
                            "api_key": "fake-cohere-key"},
         "model_info": {"mode": "embedding", **EMBEDDING_PRICE}},
        {"model_name": "fake-rerank",
         "litellm_params": {"model": "cohere/rerank-v3.5", "api_base": upstream.base_url[:-3],
                            "api_key": "fake-cohere-key"},
         "model_info": {"mode": "rerank", **RERANK_PRICE}},
        {"model_name": "fake-broken", "litellm_params": {"model": "openai/broken", "api_base": dead,
                                                          "api_key": "fake-provider-key"},
         "model_info": dict(PRICED)},
        # For the Cohere model list (tests/test_route_models.py): what LiteLLM's model info says of a model.
        {**fake_model("fake-tools", upstream), "model_info": {
            **PRICED, "max_input_tokens": 32000, "supports_function_calling": True, "supports_vision": True,
            "supports_response_schema": True}},
        # A model whose tokenizer LiteLLM ships (Anthropic's, a HuggingFace tokenizer, on every supported
        # release), for tokenize. Never called.
        {"model_name": "fake-claude",
         "litellm_params": {"model": "anthropic/claude-haiku-4-5", "api_base": upstream.base_url,
                            "api_key": "fake-provider-key"},
         "model_info": dict(PRICED)},
        # A stream's deadline as users set it: `stream_timeout` beside `timeout` (tests/test_upstream_faults.py).
        fake_model("drip-guarded", upstream, timeout=2, stream_timeout=2),
        # LlamaIndex's Cohere LLM takes only Cohere's model names (tests/clients/llamaindex_cohere_client.py).
        {**fake_model("command-r", upstream), "model_info": dict(PRICED)},
        *(extra_models or []),
    ]
    config["litellm_settings"]["callbacks"] = [*config["litellm_settings"]["callbacks"],
                                               "tests.spend_recorder.recorder", "tests.key_store_seed.seed"]
    config["mpilot"] = mpilot_section(jwks_url)
    config.setdefault("general_settings", {})["master_key"] = MASTER_KEY
    config["router_settings"] = {"num_retries": 0, "fallbacks": [{"fake-broken": ["fake-b"]},
                                                                {"fake-timeout-then-fake": ["fake"]},
                                                                {"fake-embed-broken": ["fake-embed"]}]}
    return config


class ProxyProcess:
    """`litellm --config` in a subprocess, its output captured to a log file."""

    def __init__(self, config: dict[str, Any] | Path, workdir: Path, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()) -> None:
        """`config`: a config to write into `workdir`, or the path of a config file to use as it is;
        `args`: more arguments for `litellm` (`--num_workers 2`)."""
        self._args = args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.log_path = workdir / "proxy.log"
        self.spend_log_path = workdir / "spend.jsonl"
        if isinstance(config, Path):
            self.config_path = config
        else:
            self.config_path = workdir / "config.yaml"
            self.config_path.write_text(yaml.safe_dump(config))
        self._env = {
            **os.environ,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "MPILOT_TEST_SPEND_LOG": str(self.spend_log_path),
            # The plugin is installed in the venv; the repo root makes `tests.spend_recorder` importable.
            "PYTHONPATH": str(REPO),
            "MPILOT_TEST_STORE_KEYS": json.dumps(store_keys()),
            **(env or {}),
        }
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90) -> ProxyProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115  # kept open for the process's life
        self._proc = subprocess.Popen(
            [str(LITELLM), "--config", str(self.config_path), "--host", "127.0.0.1", "--port", str(self.port),
             *self._args],
            cwd=self.workdir, env=self._env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"proxy exited with {self._proc.returncode}:\n{self.log()[-4000:]}")
            try:
                if httpx.get(f"{self.url}/health/liveliness", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"proxy not healthy after {timeout}s:\n{self.log()[-4000:]}")

    def run_to_exit(self, timeout: float = 120) -> tuple[int | None, str]:
        """For a proxy expected not to start: run it in the foreground; its exit code (None if it was
        still running at `timeout`, then killed) and everything it printed."""
        try:
            done = subprocess.run(
                [str(LITELLM), "--config", str(self.config_path), "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=self.workdir, env=self._env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as expired:
            return None, f"{expired.stdout or ''}{expired.stderr or ''}"
        return done.returncode, done.stdout + done.stderr

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    def cpu_seconds(self) -> float:
        """CPU time the proxy process has used so far, all its threads (Linux /proc; 10 ms ticks)."""
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        os.killpg(self._proc.pid, signal.SIGTERM)
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=5)

    def spend_records(self) -> list[dict[str, Any]]:
        if not self.spend_log_path.exists():
            return []
        return [json.loads(line) for line in self.spend_log_path.read_text().splitlines() if line.strip()]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def wait_for(probe: Any, timeout: float = 10) -> Any:
    """`probe()`'s first truthy value, polled until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")
