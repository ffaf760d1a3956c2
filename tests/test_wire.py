"""JSON on the wire: compact UTF-8, and never an exception for text a provider sent."""

from __future__ import annotations

import json

import pytest

from plugin.cohere.wire import dumps, loads


@pytest.mark.parametrize("value", [
    {"text": "plain"},
    {"text": "Grüße, 世界 🙂", "n": [1, 2.5, None, True]},
    {"text": "quote \" backslash \\ newline \n tab \t"},
])
def test_compact_utf8_round_trip(value: dict) -> None:
    wire = dumps(value)
    assert b'":' in wire and b'": ' not in wire and b", " not in wire.replace(b"Gr\xc3\xbc\xc3\x9fe, ", b"")
    assert loads(wire) == value
    assert json.loads(wire.decode("utf-8")) == value
    if "世界" in value["text"]:
        assert "世界".encode() in wire  # not escaped: the UTF-8 bytes themselves


def test_lone_surrogate_is_escaped_not_an_error() -> None:
    value = {"text": "broken \ud800 text, 世界", "n": [1, 2]}
    wire = dumps(value)
    assert wire == b'{"text":"broken \\ud800 text, \\u4e16\\u754c","n":[1,2]}'  # still compact
    assert loads(wire) == value


def test_loads_takes_an_sse_frames_data_with_its_blank_line() -> None:
    assert loads(b'{"a":1}\n\n') == {"a": 1}
