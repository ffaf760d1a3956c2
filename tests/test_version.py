"""The plugin's release: one number (plugin/__init__.py), the package's too, reported at start-up and by
`/mpilot/version`, and the newest entry of CHANGELOG.md."""

from __future__ import annotations

import re
from importlib import metadata

import httpx

import plugin

from .harness import REPO, ProxyProcess


def test_the_package_the_changelog_and_the_code_name_one_version() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", plugin.__version__)
    assert metadata.version("mpilot-litellm") == plugin.__version__
    released = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", (REPO / "CHANGELOG.md").read_text(), re.M)
    assert released and released[0] == plugin.__version__, released


def test_the_proxy_reports_the_plugins_and_litellms_release(proxy: ProxyProcess) -> None:
    answer = httpx.get(f"{proxy.url}/mpilot/version", timeout=10)
    assert answer.status_code == 200
    assert answer.json() == {"plugin": plugin.__version__, "litellm": metadata.version("litellm")}
    assert f"MPilot plugin {plugin.__version__} loaded on LiteLLM {metadata.version('litellm')}" in proxy.log()
