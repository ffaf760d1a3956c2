"""Virtual keys declared in config: parsing, validation, budget windows and counter names."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from plugin.limits.keys import KeyConfigError, config_keys, key_id_of, parse_duration

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
    assert key.spend_counter(noon) == f"mpilot:{{key:{key.key_id}}}:nanos:{midnight}"
    assert key.spend_counters(noon) == [(key.spend_counter(noon), 2 * 86_400), ("mpilot:{user:u}:nanos", 315_360_000)]
    lifetime = next(iter(config_keys([{"key": "sk-bf-l-" + "0" * 32, "max_budget": 1}]).values()))
    assert lifetime.spend_counter(noon) == f"mpilot:{{key:{lifetime.key_id}}}:nanos"


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
    from plugin.limits.keys import limit_settings

    with pytest.raises(KeyConfigError) as raised:
        limit_settings(section)
    assert fragment in str(raised.value)


def test_limit_settings_defaults() -> None:
    from plugin.limits.keys import LimitSettings, limit_settings

    assert limit_settings(None) == LimitSettings() == limit_settings({})
    assert limit_settings({"default_max_tokens": 8}).default_max_tokens == 8


def test_a_config_key_is_a_config_key_open_by_default() -> None:
    """Without `blocked:` a key is usable; a config key has no key-store object and no stored spend."""
    (key,) = config_keys([{"key": A}]).values()
    assert (key.source, key.blocked, key.stored, key.stored_spend) == ("config", False, None, 0.0)
    (blocked,) = config_keys([{"key": A, "blocked": True}]).values()
    assert blocked.blocked is True


def test_keys_whose_variable_is_unset_are_skipped_wherever_they_are() -> None:
    keys = config_keys([{"key": ""}, {"key": "os.environ/UNSET"}, {"key": None}, {"key": A}, {"key": ""},
                        {"key": ALPHA}])
    assert list(keys) == [key_id_of(A), key_id_of(ALPHA)]


@pytest.mark.parametrize(("entries", "message"), [
    ({"key": A}, "mpilot.virtual_keys must be a list"),
    ([A], "mpilot.virtual_keys[0] must be a mapping"),
])
def test_the_list_and_its_entries_must_have_their_shape(entries: object, message: str) -> None:
    with pytest.raises(KeyConfigError) as raised:
        config_keys(entries)
    assert str(raised.value) == message
    assert config_keys(None) == {}


def test_zero_limits_are_allowed() -> None:
    """A budget of $0 or a limit of 0 requests is a way to stop a key's calls while keeping it listed."""
    (key,) = config_keys([{"key": A, "max_budget": 0, "rpm_limit": 0, "tpm_limit": 0}]).values()
    assert (key.max_budget, key.rpm_limit, key.tpm_limit) == (0.0, 0, 0)
    assert key.has_limits


def test_expires_from_yaml_is_a_time_and_a_time_without_zone_is_utc() -> None:
    import yaml

    entries = yaml.safe_load(f"- key: {A}\n  expires: 2027-01-01T00:00:00Z\n"
                             f"- key: {ALPHA}\n  expires: 2027-06-01 12:00:00\n")
    assert isinstance(entries[0]["expires"], datetime)  # YAML reads a timestamp itself
    keys = config_keys(entries)
    assert keys[key_id_of(A)].expires == datetime(2027, 1, 1, tzinfo=UTC)
    assert keys[key_id_of(ALPHA)].expires == datetime(2027, 6, 1, 12, tzinfo=UTC)
    (text,) = config_keys([{"key": A, "expires": "2027-06-01T12:00:00"}]).values()
    assert text.expires == datetime(2027, 6, 1, 12, tzinfo=UTC)


def test_a_key_expires_at_its_time() -> None:
    (key,) = config_keys([{"key": A, "expires": "2027-01-01T00:00:00Z"}]).values()
    moment = datetime(2027, 1, 1, tzinfo=UTC)
    assert not key.expired(moment.replace(year=2026))
    assert key.expired(moment)
    (forever,) = config_keys([{"key": A}]).values()
    assert not forever.expired(moment)


def test_counter_names() -> None:
    """The ledger's counters, shared by every proxy on one Redis: their names must not drift."""
    (key,) = config_keys([{"key": A, "user_id": "u", "team_id": "t", "rpm_limit": 5}]).values()
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert key.requests_counter == f"mpilot:{{key:{key.key_id}}}:rpm"
    assert key.tokens_counter == f"mpilot:{{key:{key.key_id}}}:tpm"
    assert key.spend_counters(now) == [(f"mpilot:{{key:{key.key_id}}}:nanos", 315_360_000),
                                       ("mpilot:{user:u}:nanos", 315_360_000), ("mpilot:{team:t}:nanos", 315_360_000)]


@pytest.mark.parametrize(("entry", "limited"), [
    ({}, False), ({"max_budget": 1}, True), ({"rpm_limit": 5}, True), ({"tpm_limit": 5}, True),
    ({"budget_duration": "1d"}, False),
])
def test_has_limits(entry: dict, limited: bool) -> None:
    (key,) = config_keys([{"key": A, **entry}]).values()
    assert key.has_limits is limited


def test_a_keys_repr_shows_neither_the_key_nor_its_store_object() -> None:
    import dataclasses

    from plugin.limits.keys import VirtualKey

    class Stored:
        def __repr__(self) -> str:
            return "Stored(token='sk-bf-secret')"

    key = VirtualKey(key_id=key_id_of(A), source="proxy", stored=Stored())
    assert "sk-bf-secret" not in repr(key) and "Stored" not in repr(key)
    assert key == VirtualKey(key_id=key_id_of(A), source="proxy", stored=Stored())  # equal by what it grants
    with pytest.raises(dataclasses.FrozenInstanceError):
        key.blocked = True  # type: ignore[misc]


def test_limit_settings_documented_defaults_and_edges() -> None:
    """docs/configuration.md: reservations free themselves after 900 s; 4096 tokens when none asked;
    bodies up to 20 MiB."""
    from plugin.limits.keys import limit_settings

    settings = limit_settings({})
    assert (settings.ledger_path, settings.reservation_ttl_seconds, settings.default_max_tokens,
            settings.max_request_bytes) == (".mpilot-ledger.sqlite3", 900, 4096, 20 * 2**20)
    assert limit_settings({"reservation_ttl_seconds": 1, "default_max_tokens": 1}).default_max_tokens == 1


@pytest.mark.parametrize("section", [
    {"leeway_seconds": 0}, {"leeway_seconds": 86_400}, {"jwks_cooldown_seconds": 0.5}, {"verified_cache_size": 1},
])
def test_jwt_settings_edges_accepted(section: dict) -> None:
    from plugin.auth.tokens import jwt_settings

    (name, value), = section.items()
    assert getattr(jwt_settings(section), name) == value


@pytest.mark.parametrize(("section", "message"), [
    ({"leeway_seconds": 86_401}, "mpilot.jwt.leeway_seconds must be a number of seconds from 0 to 86400, got 86401"),
    ({"verified_cache_size": 1.5}, "mpilot.jwt.verified_cache_size must be a whole number >= 1, got 1.5"),
    *(({name: 42}, f"mpilot.jwt.{name} must be a string")
      for name in ("issuer", "audience", "jwks_url", "public_key", "secret")),
    ({"isuser": "x"}, "mpilot.jwt has unknown fields ['isuser']; known: "),
])
def test_bad_jwt_settings_messages(section: dict, message: str) -> None:
    from plugin.auth.tokens import jwt_settings

    with pytest.raises(ValueError) as raised:
        jwt_settings(section)
    assert str(raised.value).startswith(message)


def test_empty_jwt_settings_count_as_absent() -> None:
    from plugin.auth.tokens import jwt_settings

    settings = jwt_settings({"issuer": "", "audience": None, "secret": "s"})
    assert (settings.issuer, settings.audience, settings.has_key_material) == (None, None, True)


def test_each_request_gets_its_own_caller_of_a_key() -> None:
    """The caller handed to LiteLLM is one request's: what LiteLLM changes in place on it (its lists and
    dicts) never reaches the next request's, nor the key store's own object."""
    from litellm.proxy._types import UserAPIKeyAuth

    from plugin.host import key_caller
    from plugin.limits.keys import VirtualKey

    (key,) = config_keys([{"key": A, "models": ["fake"], "metadata": {"team": "a"}}]).values()
    first = key_caller(key)
    first.models.append("fake-dear")
    first.metadata["mpilot_reservation"] = "r1"
    second = key_caller(key)
    assert second is not first
    # Each request's settlement has a name of its own, which the plugin chose (not LiteLLM's call id).
    settlements = (first.metadata.pop("mpilot_call"), second.metadata.pop("mpilot_call"))
    assert settlements[0] != settlements[1] and all(len(name) == 32 for name in settlements)
    assert (second.models, second.metadata, second.token) == (["fake"], {"team": "a", "mpilot_key": key.key_id},
                                                              key.key_id)
    (changed,) = config_keys([{"key": A, "models": ["fake-b"]}]).values()  # the same key, new settings
    assert key_caller(changed).models == ["fake-b"]

    stored = UserAPIKeyAuth(token="hashed-in-store", models=["fake"], metadata={"x": 1}, max_budget=5.0)
    caller = key_caller(VirtualKey(key_id=key_id_of(A), source="proxy", stored=stored))
    caller.models.append("fake-dear")
    caller.metadata["mpilot_reservation"] = "r1"
    assert caller.token == key_id_of(A) and caller.max_budget is None  # no database: the ledger's budget
    assert (stored.token, stored.models, stored.metadata, stored.max_budget) == ("hashed-in-store", ["fake"],
                                                                                 {"x": 1}, 5.0)
