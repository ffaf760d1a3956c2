"""The spend callback remembers which calls it settled (LiteLLM may run both success hooks for one call):
bounded in entries and in bytes, whatever call id a client sends."""

from __future__ import annotations

import hashlib

from plugin.auth import spend
from plugin.auth.spend import KeySpend


def test_a_call_is_claimed_once() -> None:
    hooks = KeySpend()
    assert hooks._claim("call-1", "key-1", None)
    assert not hooks._claim("call-1", "key-1", None)
    assert not hooks._claim("call-2", None, None)  # nobody to settle for


def test_a_long_call_id_is_remembered_as_its_digest() -> None:
    hooks = KeySpend()
    long_id = "c" * 10_000  # LiteLLM takes a client's x-litellm-call-id as the call's id
    assert hooks._claim(long_id, "key-1", None)
    assert list(hooks._settled) == [hashlib.sha256(long_id.encode()).hexdigest()]
    assert not hooks._claim(long_id, "key-1", None)
    uuid_like = "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert hooks._claim(uuid_like, "key-1", None)
    assert uuid_like in hooks._settled


def test_the_memory_keeps_the_newest_calls(monkeypatch) -> None:
    monkeypatch.setattr(spend, "_REMEMBERED", 3)
    hooks = KeySpend()
    for n in range(10):
        assert hooks._claim(f"call-{n}", "key-1", None)
    assert list(hooks._settled) == ["call-7", "call-8", "call-9"]
