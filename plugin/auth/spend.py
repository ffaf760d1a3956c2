"""Settles each call of a virtual key in the ledger: its reservation is replaced by what it cost (added to the
key's, its user's and its team's spend) and its tokens count against the key's tokens per minute.

LiteLLM computes the cost. A non-stream answer is settled from LiteLLM's post-call hook. On the SQLite
ledger that is a local transaction that never yields, done before the answer is sent, so a proxy that dies
right after answering loses no spend; a file another process holds locked is not waited for there (the
settlement goes to the journal and is counted a moment later, `ledger.patience`). On Redis it runs in a task
of its own as the answer goes out: awaiting the round trip first hands the event loop to LiteLLM's deferred
logging before the answer leaves (+5 ms p50, bench/auth_overhead). Until it lands, about a millisecond
later, the call's reservation (at least its cost when `max_tokens` is set) keeps its place in the budget; a
proxy killed in that millisecond loses the call's spend (the hold expires unspent). A stream's cost is known
only once it ends, and is settled from LiteLLM's success callback, streams cut short by the client included.
A call that fails gives its reservation back whole.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from .. import host
from ..limits.ledger import patience
from .hook import mpilot_auth

log = logging.getLogger("mpilot.auth")

_REMEMBERED = 10_000  # call ids remembered so that a call is settled once


class KeySpend(CustomLogger):
    def __init__(self) -> None:
        super().__init__()
        self._settled: OrderedDict[str, None] = OrderedDict()
        self._settling: set[asyncio.Task[None]] = set()  # settlements under way after their answers

    async def async_post_call_success_hook(self, data: dict, user_api_key_dict: Any, response: Any) -> Any:
        key_id, reservation = host.virtual_key_of(user_api_key_dict), host.reservation_of(user_api_key_dict)
        settlement = host.settlement_of(user_api_key_dict)
        if not self._claim(settlement, key_id, reservation):
            return None
        hidden = getattr(response, "_hidden_params", None) or {}
        usage = getattr(response, "usage", None)
        settling = self._settle(key_id, reservation, hidden.get("response_cost"),
                                getattr(usage, "total_tokens", 0) or 0, settlement)
        if mpilot_auth().ledger().local:
            with patience(False):  # before the answer: a file another process holds goes to the journal
                await settling
            return None
        task = asyncio.create_task(settling)  # settles as the answer goes out (see the module's docstring)
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        return None

    async def async_log_success_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        payload = kwargs.get("standard_logging_object") or {}
        key_metadata = _logged_key_metadata(kwargs)
        key_id, reservation = host.virtual_key_in(key_metadata), host.reservation_in(key_metadata)
        settlement = host.settlement_in(key_metadata)
        if self._claim(settlement, key_id, reservation):
            await self._settle(key_id, reservation, payload.get("response_cost"), payload.get("total_tokens") or 0,
                               settlement)

    async def async_post_call_failure_hook(self, request_data: dict, original_exception: Exception,
                                           user_api_key_dict: Any, traceback_str: str | None = None) -> Any:
        await self._release(host.reservation_of(user_api_key_dict))
        return None

    async def async_log_failure_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        await self._release(host.reservation_in(_logged_key_metadata(kwargs)))

    def _claim(self, settlement: str | None, key_id: str | None, reservation: str | None) -> bool:
        """Whether this hook settles the call: whichever of the two success hooks sees a call first
        (LiteLLM may run them in either order); marked before any await, so the other one skips it.
        `settlement`: the request's own id, which the plugin chose (`host.settlement_of`)."""
        if not settlement or not (key_id or reservation):
            return False
        if settlement in self._settled:
            return False
        self._settled[settlement] = None
        while len(self._settled) > _REMEMBERED:
            self._settled.popitem(last=False)
        return True

    async def _settle(self, key_id: str | None, reservation: str | None, cost: Any, tokens: Any,
                      settlement: str) -> None:
        try:
            await mpilot_auth().settle(str(key_id) if key_id else None, reservation, float(cost or 0.0),
                                       int(tokens or 0), settlement)
        except Exception as error:  # noqa: BLE001  # settling must never fail a request; the hold expires
            log.warning("MPilot spend not settled for key %s: %s", str(key_id)[:12], type(error).__name__)

    async def _release(self, reservation: str | None) -> None:
        if reservation is None:
            return
        try:
            await mpilot_auth().release(reservation)
        except Exception as error:  # noqa: BLE001  # the hold expires by itself
            log.warning("MPilot reservation not released: %s", type(error).__name__)


def _logged_key_metadata(kwargs: dict[str, Any]) -> Any:
    """The caller's metadata LiteLLM logs with a call (see `host.key_caller`)."""
    metadata = (kwargs.get("litellm_params") or {}).get("metadata") or {}
    return metadata.get("user_api_key_metadata")


key_spend = KeySpend()
