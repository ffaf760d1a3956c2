"""Which LiteLLM releases the plugin runs on, and what `config.yaml` gets on any other.

Checked when LiteLLM loads the plugin (`config_hooks.py`), before anything of LiteLLM's proxy is imported:
on a release outside the supported lines, on a withdrawn one, or where the plugin fails to load, the proxy
still starts (LiteLLM's own keys and routes keep working) and one line says why; the plugin then fails
closed (see `unsupported.py`). What differs between supported releases lives in `host/`.
"""

from __future__ import annotations

import sys
from importlib import metadata
from typing import Any

FIRST_LINE, LAST_LINE = (1, 100), (1, 110)  # release lines (major, minor), both included
WITHDRAWN = {"1.107.0": "withdrawn after a supply-chain compromise"}
SUPPORTED = "1.100.x to 1.110.x, never 1.107.0"


def running_release() -> str:
    try:
        return metadata.version("litellm")
    except metadata.PackageNotFoundError:
        return "unknown"


def unsupported_reason(release: str) -> str | None:
    """None when the plugin supports `release`, else why not."""
    if release in WITHDRAWN:
        return f"LiteLLM {release} was {WITHDRAWN[release]}"
    parts = release.split(".")
    try:
        line = (int(parts[0]), int(parts[1]))
    except (IndexError, ValueError):
        return f"LiteLLM {release} is not a release the plugin knows"
    if not FIRST_LINE <= line <= LAST_LINE:
        return f"LiteLLM {release} is not supported"
    return None


_loaded: tuple[Any, Any] | None = None


def load_plugin() -> tuple[Any, Any]:
    """(the custom_auth hook, the callback that mounts the routes): the plugin's own on a supported
    release, else their fail-closed stand-ins. Once per process: LiteLLM executes `config_hooks.py`
    once per reference."""
    global _loaded
    if _loaded is None:
        release = running_release()
        reason = unsupported_reason(release)
        if reason is None:
            try:
                from .auth.hook import user_api_key_auth
                from .entry import cohere_v2_chat

                _loaded = (user_api_key_auth, cohere_v2_chat)
                return _loaded
            except Exception as error:  # noqa: BLE001  # a release that moved what the plugin uses
                reason = f"the plugin cannot load on LiteLLM {release} ({type(error).__name__}: {error})"
        from .unsupported import UnsupportedRelease, refuse_mpilot_tokens

        print(f"MPilot plugin: {reason} (supported: {SUPPORTED}); MPilot tokens and sk-bf- keys are refused "
              f"with 503 and /litellm/cohere/v2/chat answers 503 until the proxy runs a supported release",
              file=sys.stderr, flush=True)
        _loaded = (refuse_mpilot_tokens, UnsupportedRelease(release))
    return _loaded
