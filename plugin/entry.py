"""Registers the plugin with the proxy when `config.yaml` loads it (see `config_hooks.py`)."""

from __future__ import annotations

import os
import sqlite3
import sys
from typing import NoReturn

from litellm.integrations.custom_logger import CustomLogger

from . import __version__, host
from .auth.hook import mpilot_auth
from .auth.spend import key_spend
from .limits.ledger import SqliteLedger
from .routes import chat, chat_v1, embed, health, key_info, models, not_found


def refuse_to_start(reason: str) -> NoReturn:
    """One clear line and the process ends: a traceback through LiteLLM's start-up would bury the
    reason under hundreds of lines, and a proxy serving with limits that cannot hold is worse."""
    line = f"MPilot plugin: refusing to start: {reason}"
    print(line, file=sys.stderr, flush=True)
    os._exit(3)


class CohereV2Chat(CustomLogger):
    """Loaded from `litellm_settings.callbacks`: checks the `mpilot:` section (a proxy whose limits
    could not hold does not start), mounts the plugin's routes and its spend callback, loads ahead
    what LiteLLM would load on the first request, makes LiteLLM's Cohere provider read Cohere's
    streams (every route's: a release adapter, see `host.read_cohere_sse_streams`), and lets the route tell
    a stream its provider cut off (`host.notice_cut_off_streams`), and bounds each try of its calls
    as a whole by the deployment's timeout (`host.bound_each_try`)."""

    def __init__(self) -> None:
        super().__init__()
        try:
            auth = mpilot_auth()
        except (ValueError, TypeError) as error:
            refuse_to_start(str(error))
        if not host.redis_expected():  # then every worker of this machine counts limits in one file
            ledger = host.ledger_file(auth.limits.ledger_path)
            try:
                SqliteLedger.check(ledger)
            except (OSError, sqlite3.Error) as error:
                refuse_to_start(f"the limits ledger {ledger} cannot be opened ({error}); set "
                                "mpilot.limits.ledger_path to a writable file, or give the proxy a Redis")
        host.limit_request_bodies(auth.limits.max_request_bytes)
        host.mount_as(chat.router, chat.VIEWS)
        host.mount_as(chat_v1.router, chat_v1.VIEWS)
        host.mount_as(embed.router, embed.VIEWS)
        host.mount(key_info.router)
        host.mount(health.router)
        host.mount_without_model_calls(models.router)
        host.register_callback(key_spend)
        host.warm_up()
        host.read_cohere_sse_streams()
        host.notice_cut_off_streams()
        host.bound_each_try()
        # Last, so it sees every route the plugin serves; it stays behind routes mounted after it.
        host.mount_after_plugin_routes(not_found.router)
        print(f"MPilot plugin {__version__} loaded on LiteLLM {host.litellm_release()}: Cohere's API under "
              "/litellm/cohere, limits counted in " + ("Redis" if host.redis_expected() else "SQLite (or the Redis "
              "LiteLLM finds at start)"), file=sys.stderr, flush=True)


cohere_v2_chat = CohereV2Chat()
