"""Registers the plugin with the proxy when `config.yaml` loads it (see `config_hooks.py`)."""

from __future__ import annotations

from litellm.integrations.custom_logger import CustomLogger

from . import host, key_info, route
from .auth.spend import key_spend


class CohereV2Chat(CustomLogger):
    """Loaded from `litellm_settings.callbacks`: mounts the plugin's routes and its spend callback,
    and loads ahead what LiteLLM would load on the first request."""

    def __init__(self) -> None:
        super().__init__()
        host.mount(route.router, chat_completions=True)
        host.mount(key_info.router)
        host.register_callback(key_spend)
        host.warm_up()


cohere_v2_chat = CohereV2Chat()
