"""JSON on the wire, by the standard library.

Not orjson, though LiteLLM brings it: on the 2-core Xeon test machines, orjson's AVX-512 code paths
in the proxy's event loop made every stream ~4 ms (7%) slower end to end while each call measured
~5 µs, most likely by lowering the core's clock for a while after each call; the standard library's
json showed no such effect (bench/stream_gap, README "Speed").
"""

from __future__ import annotations

import json
from typing import Any

loads = json.loads  # takes bytes or str; surrounding whitespace (an SSE frame's blank line) is fine
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, as the wire carries it."""
    return _encode(value).encode()
