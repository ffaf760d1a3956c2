"""A proxy whose `mpilot:` section could mean two things, or could not hold its limits, does not start:
one clear line names the field, and no key reaches the log."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from .harness import SHIPPED_CONFIG, ProxyProcess

KEY = "sk-bf-start-refusal-0123456789abcdef0123456789"


def config_with(mpilot: dict[str, Any]) -> dict[str, Any]:
    config = yaml.safe_load(SHIPPED_CONFIG.read_text())
    config["mpilot"] = mpilot
    return config


CASES = {
    "duplicate": ({"virtual_keys": [{"key": KEY, "blocked": True}, {"key": KEY}]},
                  "mpilot.virtual_keys[1].key repeats the key of mpilot.virtual_keys[0]"),
    "short": ({"virtual_keys": [{"key": "sk-bf-"}]}, "mpilot.virtual_keys[0].key must have at least 32"),
    "blocked-string": ({"virtual_keys": [{"key": KEY, "blocked": "false"}]},
                       "mpilot.virtual_keys[0].blocked must be true or false"),
    "leeway": ({"jwt": {"issuer": "https://i", "secret": "s" * 32, "leeway_seconds": "abc"}},
               "mpilot.jwt.leeway_seconds must be a number"),
    # Without Redis, limits are shared through a file: one that cannot be opened means they could not hold.
    "ledger": ({"limits": {"ledger_path": "/nonexistent/folder/ledger.sqlite3"}},
               "the limits ledger /nonexistent/folder/ledger.sqlite3 cannot be opened"),
}


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int | None, str]]:
    """Every case's proxy started at once (each takes ~10 s to import LiteLLM): exit code and output."""
    results: dict[str, tuple[int | None, str]] = {}

    no_redis = {"REDIS_HOST": "", "REDIS_URL": ""}  # the ledger case is about a proxy without Redis
    proxies = {name: ProxyProcess(config_with(mpilot), Path(tmp_path_factory.mktemp(f"refuse-{name}")), env=no_redis)
               for name, (mpilot, _) in CASES.items()}  # made here: mktemp is not thread-safe

    def run(name: str) -> None:
        results[name] = proxies[name].run_to_exit()

    threads = [threading.Thread(target=run, args=(name,)) for name in proxies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.parametrize("name", list(CASES))
def test_proxy_refuses_to_start_with_one_line(refusals: dict[str, tuple[int | None, str]], name: str) -> None:
    code, output = refusals[name]
    assert code not in (None, 0), f"the proxy did not refuse to start:\n{output[-2000:]}"
    lines = [line for line in output.splitlines() if "refusing to start" in line]
    assert len(lines) == 1, output[-3000:]
    assert CASES[name][1] in lines[0]
    assert "Traceback" not in output
    assert KEY not in output
