"""The spend callback remembers which calls it settled (LiteLLM may run both success hooks for one call):
bounded in entries; the names are the plugin's own (`host.settlement_of`, 32 hex digits), never a call id
a client chose (tests/test_shared_redis.py sends the same `x-litellm-call-id` on every request)."""

from __future__ import annotations

from plugin.auth import spend
from plugin.auth.spend import KeySpend


def test_a_call_is_claimed_once() -> None:
    hooks = KeySpend()
    assert hooks._claim("call-1", "key-1", None)
    assert hooks._claim("call-1", "key-1", None) is False
    assert hooks._claim("call-2", None, None) is False  # nobody to settle for
    assert hooks._claim(None, "key-1", None) is False  # no name to settle it under


def test_the_memory_keeps_the_newest_calls(monkeypatch) -> None:
    monkeypatch.setattr(spend, "_REMEMBERED", 3)
    hooks = KeySpend()
    for n in range(10):
        assert hooks._claim(f"call-{n}", "key-1", None)
    assert list(hooks._settled) == ["call-7", "call-8", "call-9"]


def test_the_callback_logs_messages_as_litellm_does() -> None:
    """LiteLLM reads a callback's message-logging switches when it builds what it logs."""
    hooks = KeySpend()
    assert (hooks.message_logging, hooks.turn_off_message_logging) == (True, False)
