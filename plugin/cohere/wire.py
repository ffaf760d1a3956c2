"""JSON on the wire: orjson when installed (LiteLLM brings it), else the standard library."""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson

    dumps_bytes = orjson.dumps
    loads = orjson.loads  # takes bytes or str
except ImportError:  # pragma: no cover - orjson comes with LiteLLM
    def dumps_bytes(value: Any) -> bytes:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()

    loads = json.loads


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, as the wire carries it."""
    return dumps_bytes(value)
