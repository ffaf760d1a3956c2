"""Adds each answered request's cost to its virtual key's spend (and its user's and team's).

LiteLLM computes the cost and hands it to its callbacks, streams cut short by the client
included; this callback keeps the counters the plugin's budget checks read (see `MPilotAuth`).
"""

from __future__ import annotations

import logging
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from .hook import mpilot_auth

log = logging.getLogger("mpilot.auth")


class KeySpend(CustomLogger):
    async def async_log_success_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        payload = kwargs.get("standard_logging_object") or {}
        key_id = (payload.get("metadata") or {}).get("user_api_key_hash")
        cost = payload.get("response_cost")
        if not key_id or not cost:
            return
        try:
            await mpilot_auth().record_spend(str(key_id), float(cost))
        except Exception as error:  # noqa: BLE001  # logging must never fail a request
            log.warning("MPilot spend not recorded for key %s: %s", str(key_id)[:12], type(error).__name__)


key_spend = KeySpend()
