"""Registers the plugin with the proxy when `config.yaml` loads it (see `config_hooks.py`)."""

from __future__ import annotations

from litellm.integrations.custom_logger import CustomLogger

from . import host
from .route import router


class CohereV2Chat(CustomLogger):
    """Loaded from `litellm_settings.callbacks`; mounting the route is its whole job."""

    def __init__(self) -> None:
        super().__init__()
        host.mount(router)


cohere_v2_chat = CohereV2Chat()
