"""Loaded by a test proxy from its callbacks: puts virtual keys into the proxy's own key store.

LiteLLM's key store is its cache in front of Postgres; Postgres cannot run on these machines (its
query engine is downloaded at run time), so the tests fill the tier that runs here, the cache, the
way LiteLLM itself fills it after a database read. Keys come from MPILOT_TEST_STORE_KEYS (JSON list
of UserAPIKeyAuth fields, with the raw `key`).
"""

from __future__ import annotations

import hashlib
import json
import os

from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy import proxy_server
from litellm.proxy._types import UserAPIKeyAuth


class KeyStoreSeed(CustomLogger):
    def __init__(self) -> None:
        super().__init__()
        for fields in json.loads(os.environ.get("MPILOT_TEST_STORE_KEYS", "[]")):
            raw = fields.pop("key")
            token = hashlib.sha256(raw.encode()).hexdigest()
            proxy_server.user_api_key_cache.set_cache(
                key=token, value=UserAPIKeyAuth(token=token, **fields), model_type=UserAPIKeyAuth, ttl=86_400)


seed = KeyStoreSeed()
