"""What every benchmark runs against: a fake upstream in its own process and one proxy with the plugin."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.fake_upstream import FakeUpstream
from tests.harness import REPO, ProxyProcess, proxy_config_for
from tests.loopback import free_port


@contextmanager
def running_proxy(words: int = 40) -> Iterator[ProxyProcess]:
    """A proxy from the shipped config (plugin, auth hook, test keys), its models on a fake upstream
    that answers `words` words, streamed in 8-character chunks. Test-only callbacks are left out."""
    port = free_port()
    upstream = subprocess.Popen([sys.executable, "-m", "tests.fake_upstream", "--port", str(port),
                                 "--words", str(words)], cwd=REPO)
    try:
        config = proxy_config_for(FakeUpstream(port=port))  # only its address: the server is `upstream`
        config["litellm_settings"]["callbacks"] = ["plugin.config_hooks.cohere_v2_chat"]
        with tempfile.TemporaryDirectory() as workdir:
            proxy = ProxyProcess(config, Path(workdir)).start()
            try:
                yield proxy
            finally:
                proxy.stop()
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)
