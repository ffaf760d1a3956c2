"""Adds each answered request's cost to its virtual key's spend (and its user's and team's).

LiteLLM computes the cost. A non-stream answer's cost is recorded in the request's own path
(LiteLLM's post-call hook, before the answer is sent), so a proxy that dies right after answering
loses no spend; a stream's cost is known only once it ends, and is recorded from LiteLLM's success
callback, streams cut short by the client included.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from .hook import mpilot_auth

log = logging.getLogger("mpilot.auth")

_REMEMBERED = 10_000  # call ids remembered so that a call's cost is counted once


class KeySpend(CustomLogger):
    def __init__(self) -> None:
        super().__init__()
        self._counted: OrderedDict[str, None] = OrderedDict()

    async def async_post_call_success_hook(self, data: dict, user_api_key_dict: Any, response: Any) -> Any:
        hidden = getattr(response, "_hidden_params", None) or {}
        await self._count_once(data.get("litellm_call_id"), getattr(user_api_key_dict, "token", None),
                               hidden.get("response_cost"))
        return None

    async def async_log_success_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        payload = kwargs.get("standard_logging_object") or {}
        key_id = (payload.get("metadata") or {}).get("user_api_key_hash")
        await self._count_once(kwargs.get("litellm_call_id"), key_id, payload.get("response_cost"))

    async def _count_once(self, call_id: str | None, key_id: str | None, cost: Any) -> None:
        """Whichever of the two hooks sees a call first counts it (LiteLLM may run them in either order)."""
        if not call_id or not key_id or not cost or call_id in self._counted:
            return
        self._counted[call_id] = None  # marked before the first await: the other hook skips it
        while len(self._counted) > _REMEMBERED:
            self._counted.popitem(last=False)
        await self._record(str(key_id), float(cost))

    async def _record(self, key_id: str, cost: float) -> None:
        try:
            await mpilot_auth().record_spend(key_id, cost)
        except Exception as error:  # noqa: BLE001  # spend keeping must never fail a request
            log.warning("MPilot spend not recorded for key %s: %s", key_id[:12], type(error).__name__)


key_spend = KeySpend()
