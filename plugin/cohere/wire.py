"""JSON on the wire, by the standard library.

Not orjson, though LiteLLM brings it: on the 2-core Xeon test machines, orjson's calls in the
proxy's event loop made a 38-chunk stream 3-4 ms (5-7%) slower end to end while each call measured
~5 µs; the standard library's json showed no such effect (bench/stream_gap, docs/performance.md). Its
AVX-512 code paths lowering the core's clock after each call is the likely cause, not proven.
"""

from __future__ import annotations

import json
from typing import Any

loads = json.loads  # takes bytes or str; surrounding whitespace (an SSE frame's blank line) is fine
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_encode_ascii = json.JSONEncoder(separators=(",", ":")).encode


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, as the wire carries it. A lone surrogate (a provider's broken text) has no
    UTF-8 form; then every non-ASCII character is escaped, which JSON allows and parsers undo."""
    text = _encode(value)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return _encode_ascii(value).encode()
