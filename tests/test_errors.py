"""Error texts: credentials redacted, the plugin's own words kept, provider errors in plain words."""

from __future__ import annotations

import pytest

from plugin.cohere.errors import call_failure_message, redact


@pytest.mark.parametrize("secret", [
    "sk-bf-live-0123456789abcdef0123",
    "sk-test-master-0123456789",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
    "Bearer abcdefghijklmnop0123456789",
])
def test_credentials_are_redacted(secret: str) -> None:
    out = redact(f"refused: {secret}, then more")
    assert secret not in out and "[redacted]" in out and out.endswith(", then more")


@pytest.mark.parametrize("words", [
    "malformed bearer token",
    "the Authorization header needs a Bearer token",
    "virtual key 3f2a9c01b2e4 has exceeded its budget of $5.00",
])
def test_the_plugins_own_words_stay(words: str) -> None:
    assert redact(words) == words


def test_key_ids_are_shortened() -> None:
    key_id = "3f2a9c01b2e4" + "0" * 52
    assert redact(f"key {key_id} refused") == "key 3f2a9c01b2e4 refused"


def test_a_providers_429_says_which_limit_without_litellm_internals() -> None:
    text = "litellm.RateLimitError: RateLimitError: OpenAIException - quota of the org exhausted"
    message = call_failure_message(429, text, "gpt-4o")
    assert message == ("the provider of model 'gpt-4o' is rate limiting requests; retry later "
                       "(it said: quota of the org exhausted)")
    assert "litellm" not in message.lower() and "Exception" not in message


def test_other_provider_errors_keep_the_providers_words() -> None:
    text = "litellm.InternalServerError: InternalServerError: OpenAIException - upstream failure"
    assert call_failure_message(500, text, "gpt-4o") == "upstream failure"
    assert call_failure_message(500, "plain words", "gpt-4o") == "plain words"


def test_the_routers_fallback_notes_stay_with_the_operator() -> None:
    # LiteLLM 1.100's router appends the proxy's fallback settings and the whole message again.
    text = ("litellm.RateLimitError: RateLimitError: OpenAIException - provider said 429No fallback model group "
            "found for original model_group=fake. Fallbacks=[{'fake-broken': ['fake-b']}]. Received Model "
            "Group=fake\nAvailable Model Group Fallbacks=None\nError doing the fallback: litellm.RateLimitError: "
            "RateLimitError: OpenAIException - provider said 429")
    assert call_failure_message(500, text, "fake") == "provider said 429"
    assert call_failure_message(500, "provider said 500. Received Model Group=fake", "fake") == "provider said 500."
