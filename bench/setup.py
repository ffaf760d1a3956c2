"""What every benchmark runs against: a fake upstream in its own process and proxies with the plugin."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.fake_upstream import FakeUpstream
from tests.harness import REPO, ProxyProcess, proxy_config_for
from tests.loopback import free_port


@contextmanager
def running_upstream(words: int = 40) -> Iterator[FakeUpstream]:
    """A fake OpenAI-compatible upstream in its own process, answering `words` words, streamed in
    8-character chunks. The `FakeUpstream` yielded only names its address."""
    port = free_port()
    upstream = subprocess.Popen([sys.executable, "-m", "tests.fake_upstream", "--port", str(port),
                                 "--words", str(words)], cwd=REPO)
    try:
        yield FakeUpstream(port=port)
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)


def bench_config(upstream: FakeUpstream) -> dict[str, Any]:
    """The shipped config (plugin, auth hook, test keys) with models on `upstream`; test-only callbacks out."""
    config = proxy_config_for(upstream)
    config["litellm_settings"]["callbacks"] = ["plugin.config_hooks.cohere_v2_chat"]
    return config


@contextmanager
def running_proxy(words: int = 40) -> Iterator[ProxyProcess]:
    """One proxy from `bench_config` on a fresh fake upstream."""
    with running_upstream(words) as upstream, tempfile.TemporaryDirectory() as workdir:
        proxy = ProxyProcess(bench_config(upstream), Path(workdir)).start()
        try:
            yield proxy
        finally:
            proxy.stop()
