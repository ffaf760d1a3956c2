"""The docs cannot drift from the code: every fenced block of README.md and docs/*.md whose info string ends
in `doctest` runs here. Python and shell blocks run against the session's proxy (the docs' address and demo
master key replaced by the test proxy's); YAML blocks are checked as the proxy reads them: an `mpilot:`
section through the plugin's own settings parsing (a typo there stops a proxy at start), and the lines
that load the plugin against the shipped config.yaml, which every test proxy runs."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from plugin.auth.hook import MPilotAuth

from .harness import MASTER_KEY, REPO, SHIPPED_CONFIG, ProxyProcess

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w+) doctest\n(.*?)^```$", re.M | re.S)
DOC_ADDRESS, DOC_MASTER_KEY = "http://127.0.0.1:4000", "sk-mpilot-demo-master"


def marked_blocks() -> list[tuple[str, str, str]]:
    """(where, language, code) of every block marked `doctest`."""
    blocks = []
    for doc in DOCS:
        text = doc.read_text()
        for match in FENCE.finditer(text):
            line = text[:match.start()].count("\n") + 1
            blocks.append((f"{doc.relative_to(REPO)}:{line}", match.group(1), match.group(2)))
    return blocks


BLOCKS = marked_blocks()


def test_the_docs_mark_their_runnable_snippets() -> None:
    """The README's SDK, v1 and curl snippets and the config lines are marked, and so is the full
    `mpilot:` reference: unmarking them would quietly stop this test."""
    by_doc: dict[str, set[str]] = {}
    for where, language, _ in BLOCKS:
        by_doc.setdefault(where.split(":")[0], set()).add(language)
    assert by_doc.get("README.md") == {"python", "sh", "yaml"}, by_doc
    assert "yaml" in by_doc.get("docs/configuration.md", set()), by_doc
    assert sum(1 for where, *_ in BLOCKS if where.startswith("README.md")) >= 4


def against(proxy: ProxyProcess, code: str) -> str:
    return code.replace(DOC_ADDRESS, proxy.url).replace(DOC_MASTER_KEY, MASTER_KEY)


@pytest.mark.parametrize(("where", "language", "code"), [b for b in BLOCKS if b[1] in ("python", "sh")],
                         ids=[b[0] for b in BLOCKS if b[1] in ("python", "sh")])
def test_a_command_in_the_docs_runs_against_a_proxy(proxy: ProxyProcess, where: str, language: str,
                                                    code: str) -> None:
    command = [sys.executable, "-c"] if language == "python" else ["bash", "-euo", "pipefail", "-c"]
    done = subprocess.run([*command, against(proxy, code)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    assert done.returncode == 0, f"{where}: {done.stderr[-2000:]}"
    assert done.stdout.strip(), f"{where} printed nothing"
    assert '"type":' not in done.stdout or "error" not in done.stdout, f"{where}: {done.stdout[:500]}"


def resolved(value: Any) -> Any:
    """`os.environ/NAME` as LiteLLM resolves it, for a proxy where the keys are set and the rest is not."""
    if isinstance(value, dict):
        return {key: resolved(item) for key, item in value.items()}
    if isinstance(value, list):
        return [resolved(item) for item in value]
    if isinstance(value, str) and value.startswith("os.environ/"):
        return f"sk-bf-{secrets.token_hex(24)}" if value.startswith("os.environ/MPILOT_KEY_") else None
    return value


@pytest.mark.parametrize(("where", "code"), [(b[0], b[2]) for b in BLOCKS if b[1] == "yaml"],
                         ids=[b[0] for b in BLOCKS if b[1] == "yaml"])
def test_a_config_snippet_in_the_docs_is_one_the_plugin_takes(where: str, code: str) -> None:
    snippet = yaml.safe_load(code)
    assert isinstance(snippet, dict) and snippet, where
    if "mpilot" in snippet:
        auth = MPilotAuth(resolved(snippet["mpilot"]) or {})  # raises, naming the field, on anything wrong
        documented = snippet["mpilot"] or {}
        assert len(auth.keys) == len(documented.get("virtual_keys") or []), where
    shipped = yaml.safe_load(SHIPPED_CONFIG.read_text())
    for section in ("litellm_settings", "general_settings"):
        for name, value in (snippet.get(section) or {}).items():
            if name in ("coordination_redis",):
                continue  # a deployment's own choice; the fleet tests run it
            if section == "litellm_settings" and name == "callbacks":
                assert set(value) <= set(shipped[section][name]), (where, name)
                continue
            assert shipped[section].get(name) == value, (where, section, name)
