"""Virtual keys declared in config: parsing, validation, budget windows and counter names."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from plugin.auth.keys import KeyConfigError, config_keys, key_id_of, parse_duration


def test_entries_become_keys_by_id() -> None:
    keys = config_keys([
        {"key": "sk-bf-alpha-000000", "key_alias": "alpha", "models": ["gpt-4o"], "max_budget": 5,
         "budget_duration": "30d", "rpm_limit": 10, "tpm_limit": 1000, "expires": "2030-01-01T00:00:00Z",
         "user_id": "u", "team_id": "t", "metadata": {"k": "v"}},
        {"key": None, "key_alias": "unset environment variable"},
        {"key": "os.environ/UNSET_VARIABLE"},
    ])
    assert list(keys) == [key_id_of("sk-bf-alpha-000000")]
    key = keys[key_id_of("sk-bf-alpha-000000")]
    assert (key.alias, key.models, key.max_budget) == ("alpha", ("gpt-4o",), 5.0)
    assert (key.rpm_limit, key.tpm_limit, key.user_id, key.team_id) == (10, 1000, "u", "t")
    assert key.expires == datetime(2030, 1, 1, tzinfo=UTC)
    assert key.display_id == key.key_id[:12]
    assert "sk-bf-alpha" not in repr(key)


@pytest.mark.parametrize(("entry", "fragment"), [
    ({"key": "sk-alpha-000000"}, "must start with 'sk-bf-'"),
    ({"key": "sk-bf-a", "max_budget": -1}, "max_budget"),
    ({"key": "sk-bf-a", "rpm_limit": 1.5}, "rpm_limit"),
    ({"key": "sk-bf-a", "budget_duration": "fortnight"}, "budget_duration"),
    ({"key": "sk-bf-a", "expires": "next year"}, "expires"),
    ({"key": "sk-bf-a", "models": "gpt-4o"}, "models"),
    ({"key": "sk-bf-a", "rpm": 3}, "unknown fields ['rpm']"),
])
def test_bad_entries_name_the_field_not_the_key(entry: dict, fragment: str) -> None:
    with pytest.raises(KeyConfigError) as raised:
        config_keys([entry])
    assert fragment in str(raised.value)
    assert "mpilot.virtual_keys[0]" in str(raised.value)
    assert entry["key"] not in str(raised.value)


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("10m", 600), ("2h", 7200), ("7d", 604800),
                                               ("4w", 2419200), ("1mo", 2592000)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


def test_budget_windows_are_epoch_aligned_and_name_the_counter() -> None:
    key = config_keys([{"key": "sk-bf-w-000000", "budget_duration": "1d", "max_budget": 1, "user_id": "u"}])
    (key,) = key.values()
    noon = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    midnight = int(datetime(2026, 11, 28, tzinfo=UTC).timestamp())
    assert key.budget_window(noon) == midnight
    assert key.spend_counter(noon) == f"mpilot:spend:key:{key.key_id}:{midnight}"
    assert key.spend_counters(noon)[1:] == ["mpilot:spend:user:u"]
    lifetime = next(iter(config_keys([{"key": "sk-bf-l-000000", "max_budget": 1}]).values()))
    assert lifetime.spend_counter(noon) == f"mpilot:spend:key:{lifetime.key_id}"


def test_a_broken_mpilot_section_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every token is refused with a 500 naming the problem; none slips through to another auth."""
    import asyncio

    from litellm.proxy._types import ProxyException

    from plugin import host
    from plugin.auth import hook

    monkeypatch.setattr(hook, "_auth", None)
    monkeypatch.setattr(host, "mpilot_settings", lambda: {"virtual_keys": [{"key": "sk-plain-000000000"}]})
    with pytest.raises(ProxyException) as raised:
        asyncio.run(hook.user_api_key_auth(None, "sk-bf-anything-0000"))  # type: ignore[arg-type]
    assert str(raised.value.code) == "500"
    assert "misconfigured" in raised.value.message and "sk-plain" not in raised.value.message
