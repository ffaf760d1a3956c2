"""Virtual keys declared in config: parsing, validation, budget windows and counter names."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from plugin.auth.keys import KeyConfigError, config_keys, key_id_of, parse_duration

ALPHA = "sk-bf-alpha-0123456789abcdef0123456789abcdef"
A = "sk-bf-" + "a" * 32


def test_entries_become_keys_by_id() -> None:
    keys = config_keys([
        {"key": ALPHA, "key_alias": "alpha", "models": ["gpt-4o"], "max_budget": 5,
         "budget_duration": "30d", "rpm_limit": 10, "tpm_limit": 1000, "expires": "2030-01-01T00:00:00Z",
         "user_id": "u", "team_id": "t", "metadata": {"k": "v"}},
        {"key": None, "key_alias": "unset environment variable"},
        {"key": "os.environ/UNSET_VARIABLE"},
    ])
    assert list(keys) == [key_id_of(ALPHA)]
    key = keys[key_id_of(ALPHA)]
    assert (key.alias, key.models, key.max_budget) == ("alpha", ("gpt-4o",), 5.0)
    assert (key.rpm_limit, key.tpm_limit, key.user_id, key.team_id) == (10, 1000, "u", "t")
    assert key.expires == datetime(2030, 1, 1, tzinfo=UTC)
    assert key.display_id == key.key_id[:12]
    assert "sk-bf-alpha" not in repr(key)


@pytest.mark.parametrize(("entry", "fragment"), [
    ({"key": "sk-alpha-000000"}, "must start with 'sk-bf-'"),
    ({"key": "sk-bf-"}, "at least 32 printable characters"),
    ({"key": "sk-bf-" + "a" * 31}, "at least 32 printable characters"),
    ({"key": " sk-bf-" + "a" * 32}, "must start with 'sk-bf-'"),
    ({"key": "sk-bf-" + "a" * 32 + " "}, "without spaces"),
    ({"key": A, "max_budget": -1}, "max_budget"),
    ({"key": A, "max_budget": "5"}, "max_budget"),
    ({"key": A, "max_budget": True}, "max_budget"),
    ({"key": A, "rpm_limit": 1.5}, "rpm_limit"),
    ({"key": A, "tpm_limit": "100"}, "tpm_limit"),
    ({"key": A, "budget_duration": "fortnight"}, "budget_duration"),
    ({"key": A, "budget_duration": 30}, "budget_duration"),
    ({"key": A, "expires": "next year"}, "expires"),
    ({"key": A, "models": "gpt-4o"}, "models"),
    ({"key": A, "models": ["gpt-4o", 3]}, "models"),
    ({"key": A, "blocked": "false"}, "blocked must be true or false"),
    ({"key": A, "blocked": 0}, "blocked must be true or false"),
    ({"key": A, "key_alias": 7}, "key_alias"),
    ({"key": A, "user_id": ["u"]}, "user_id"),
    ({"key": A, "team_id": ""}, "team_id"),
    ({"key": A, "metadata": ["x"]}, "metadata"),
    ({"key": A, "rpm": 3}, "unknown fields ['rpm']"),
])
def test_bad_entries_name_the_field_not_the_key(entry: dict, fragment: str) -> None:
    with pytest.raises(KeyConfigError) as raised:
        config_keys([entry])
    assert fragment in str(raised.value)
    assert "mpilot.virtual_keys[0]" in str(raised.value)
    assert entry["key"].strip() not in str(raised.value) or entry["key"].strip() == "sk-bf-"


def test_a_key_listed_twice_is_refused_whichever_entry_is_blocked() -> None:
    """Otherwise the last entry wins, and an unblocked duplicate lets a blocked key in."""
    for entries in ([{"key": A, "blocked": True}, {"key": A}], [{"key": A}, {"key": A, "blocked": True}]):
        with pytest.raises(KeyConfigError) as raised:
            config_keys(entries)
        assert "mpilot.virtual_keys[1].key repeats the key of mpilot.virtual_keys[0]" in str(raised.value)
        assert A not in str(raised.value)


@pytest.mark.parametrize(("section", "fragment"), [
    ({"leeway_seconds": "abc"}, "mpilot.jwt.leeway_seconds"),
    ({"leeway_seconds": -1}, "mpilot.jwt.leeway_seconds"),
    ({"jwks_cooldown_seconds": True}, "mpilot.jwt.jwks_cooldown_seconds"),
    ({"jwks_max_age_seconds": "300"}, "mpilot.jwt.jwks_max_age_seconds"),
    ({"verified_cache_size": 0}, "mpilot.jwt.verified_cache_size"),
    ({"issuer": 42}, "mpilot.jwt.issuer"),
    ({"secret": ["x"]}, "mpilot.jwt.secret"),
    ({"isuser": "x"}, "unknown fields ['isuser']"),
])
def test_bad_jwt_settings_name_the_field(section: dict, fragment: str) -> None:
    from plugin.auth.tokens import jwt_settings

    with pytest.raises(ValueError) as raised:
        jwt_settings(section)
    assert fragment in str(raised.value)


def test_jwt_settings_skip_unset_environment_values() -> None:
    from plugin.auth.tokens import jwt_settings

    settings = jwt_settings({"issuer": "https://i", "secret": "os.environ/UNSET", "leeway_seconds": 3})
    assert (settings.issuer, settings.secret, settings.leeway_seconds) == ("https://i", None, 3)


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("10m", 600), ("2h", 7200), ("7d", 604800),
                                               ("4w", 2419200), ("1mo", 2592000)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


def test_budget_windows_are_epoch_aligned_and_name_the_counter() -> None:
    key = config_keys([{"key": "sk-bf-w-" + "0" * 32, "budget_duration": "1d", "max_budget": 1, "user_id": "u"}])
    (key,) = key.values()
    noon = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    midnight = int(datetime(2026, 11, 28, tzinfo=UTC).timestamp())
    assert key.budget_window(noon) == midnight
    assert key.spend_counter(noon) == f"mpilot:nanos:key:{key.key_id}:{midnight}"
    assert key.spend_counters(noon) == [(key.spend_counter(noon), 2 * 86_400), ("mpilot:nanos:user:u", 315_360_000)]
    lifetime = next(iter(config_keys([{"key": "sk-bf-l-" + "0" * 32, "max_budget": 1}]).values()))
    assert lifetime.spend_counter(noon) == f"mpilot:nanos:key:{lifetime.key_id}"


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


@pytest.mark.parametrize(("section", "fragment"), [
    ({"reservation_ttl_seconds": 0}, "mpilot.limits.reservation_ttl_seconds"),
    ({"default_max_tokens": "4096"}, "mpilot.limits.default_max_tokens"),
    ({"ledger_path": ""}, "mpilot.limits.ledger_path"),
    ({"ledger": "x"}, "unknown fields ['ledger']"),
    ("ledger.sqlite3", "mpilot.limits must be a mapping"),
])
def test_bad_limit_settings_name_the_field(section: object, fragment: str) -> None:
    from plugin.auth.keys import limit_settings

    with pytest.raises(KeyConfigError) as raised:
        limit_settings(section)
    assert fragment in str(raised.value)


def test_limit_settings_defaults() -> None:
    from plugin.auth.keys import LimitSettings, limit_settings

    assert limit_settings(None) == LimitSettings() == limit_settings({})
    assert limit_settings({"default_max_tokens": 8}).default_max_tokens == 8
