"""A LiteLLM callback the test proxy loads: appends each logged call's cost to a JSON-lines file.

It proves what the route reports to LiteLLM's callbacks (the same path spend tracking takes).
"""

from __future__ import annotations

import json
import os
from typing import Any

from litellm.integrations.custom_logger import CustomLogger


class SpendRecorder(CustomLogger):
    async def async_log_success_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        self._write("success", kwargs)

    async def async_log_failure_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        self._write("failure", kwargs)

    def _write(self, status: str, kwargs: dict[str, Any]) -> None:
        payload = kwargs.get("standard_logging_object") or {}
        metadata = payload.get("metadata") or {}
        record = {
            "status": status,
            "call_id": kwargs.get("litellm_call_id"),
            "model_group": payload.get("model_group"),
            "response_cost": payload.get("response_cost"),
            "stream": payload.get("stream"),
            "completion_tokens": payload.get("completion_tokens"),
            "key_hash": metadata.get("user_api_key_hash"),
            "user_id": metadata.get("user_api_key_user_id"),
            "team_id": metadata.get("user_api_key_team_id"),
        }
        with open(os.environ["MPILOT_TEST_SPEND_LOG"], "a") as out:
            out.write(json.dumps(record) + "\n")


recorder = SpendRecorder()
