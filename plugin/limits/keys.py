"""Virtual keys: what a key may do, and the names of the counters its spend is kept in."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from ..sections import checked_section

KEY_PREFIX = "sk-bf-"
MIN_SECRET_CHARS = 32  # after the prefix: a config key must be unguessable

_DURATION = re.compile(r"^\s*(\d+)\s*(mo|s|m|h|d|w)\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800, "mo": 2_592_000}  # a month is 30 days


class KeyConfigError(ValueError):
    """A virtual key in `mpilot.virtual_keys` is not usable. Never names the key itself."""


def key_id_of(raw_key: str) -> str:
    """The id LiteLLM stores a key under (its `token`): the SHA-256 hex of the key."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def parse_duration(text: str) -> int:
    """`30s`, `10m`, `2h`, `7d`, `4w`, `1mo` -> seconds."""
    match = _DURATION.match(text)
    if not match or int(match.group(1)) == 0:
        raise KeyConfigError(f"budget_duration must look like 30s, 10m, 2h, 7d, 4w or 1mo, got {text!r}")
    return int(match.group(1)) * _SECONDS[match.group(2)]


@dataclass(frozen=True)
class VirtualKey:
    key_id: str
    source: Literal["config", "proxy"]
    alias: str | None = None
    models: tuple[str, ...] = ()
    max_budget: float | None = None
    budget_duration: str | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    expires: datetime | None = None
    blocked: bool = False
    user_id: str | None = None
    team_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    stored_spend: float = 0.0  # the key store's own figure (proxy keys)
    stored: Any = field(default=None, compare=False, repr=False)  # the key store's own key object (proxy keys)

    @property
    def display_id(self) -> str:
        """What logs and messages name the key by: a prefix of its hash."""
        return self.key_id[:12]

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and self.expires <= now

    def budget_window(self, now: datetime) -> int | None:
        """The start (epoch seconds) of the budget window `now` falls in: windows are aligned to the
        epoch so every proxy computes the same one."""
        if not self.budget_duration:
            return None
        length = parse_duration(self.budget_duration)
        return int(now.timestamp()) // length * length

    def spend_counter(self, now: datetime) -> str:
        """The ledger counter of the key's spend in the budget window `now` falls in (nano-dollars)."""
        window = self.budget_window(now)
        return f"{self._owner}:nanos" + (f":{window}" if window is not None else "")

    def spend_counters(self, now: datetime) -> list[tuple[str, int]]:
        """Every counter a request's cost is added to, with how long it must live: the key's, and its
        user's and team's."""
        ttl = self.counter_ttl()
        counters = [(self.spend_counter(now), ttl)]
        if self.user_id:
            counters.append((user_spend_counter(self.user_id), LIFETIME_TTL))
        if self.team_id:
            counters.append((team_spend_counter(self.team_id), LIFETIME_TTL))
        return counters

    @property
    def has_limits(self) -> bool:
        """Whether the ledger counts anything for this key (a budget, requests or tokens per minute)."""
        return self.max_budget is not None or self.rpm_limit is not None or self.tpm_limit is not None

    @property
    def _owner(self) -> str:
        """Every counter of the key starts so: one hash tag, so one step of the ledger is one Redis slot."""
        return f"mpilot:{{key:{self.key_id}}}"

    @property
    def requests_counter(self) -> str:
        return f"{self._owner}:rpm"

    @property
    def tokens_counter(self) -> str:
        return f"{self._owner}:tpm"

    def counter_ttl(self) -> int:
        """How long a counter must live: its window (plus a day), or ten years for a lifetime budget."""
        return parse_duration(self.budget_duration) + 86_400 if self.budget_duration else LIFETIME_TTL


LIFETIME_TTL = 10 * 365 * 86_400


def user_spend_counter(user_id: str) -> str:
    return f"mpilot:{{user:{user_id}}}:nanos"


def team_spend_counter(team_id: str) -> str:
    return f"mpilot:{{team:{team_id}}}:nanos"


EARLIER_SPEND_PREFIX = "mpilot:nanos:"  # spend counters of releases before 0.2: mpilot:nanos:<owner kind>:<id>
_EARLIER_KEY_SPEND = re.compile(r"^mpilot:nanos:key:([0-9a-f]{64})(:\d+)?$")
_EARLIER_SPEND = re.compile(r"^mpilot:nanos:(user|team):(.+)$")


def renamed_spend_counter(name: str) -> str | None:
    """The name of today's counter for a spend counter of an earlier release (None: not one)."""
    if match := _EARLIER_KEY_SPEND.match(name):
        return f"mpilot:{{key:{match.group(1)}}}:nanos" + (match.group(2) or "")
    if match := _EARLIER_SPEND.match(name):
        return (user_spend_counter if match.group(1) == "user" else team_spend_counter)(match.group(2))
    return None


def config_keys(entries: Any) -> dict[str, VirtualKey]:
    """The keys declared under `mpilot.virtual_keys`, by key id. `key` values arrive resolved
    (LiteLLM resolves `os.environ/NAME`); an entry whose key is unset is skipped. A key listed twice
    is refused: which entry wins would otherwise decide whether a blocked key gets in."""
    if entries is None:
        return {}
    if not isinstance(entries, list):
        raise KeyConfigError("mpilot.virtual_keys must be a list")
    keys: dict[str, VirtualKey] = {}
    declared_at: dict[str, str] = {}
    for position, entry in enumerate(entries):
        where = f"mpilot.virtual_keys[{position}]"
        if not isinstance(entry, dict):
            raise KeyConfigError(f"{where} must be a mapping")
        raw = entry.get("key")
        if raw is None or raw == "" or (isinstance(raw, str) and raw.startswith("os.environ/")):
            continue  # its environment variable is not set on this proxy
        if not isinstance(raw, str) or not raw.startswith(KEY_PREFIX):
            raise KeyConfigError(f"{where}.key must start with {KEY_PREFIX!r}")
        if len(raw) - len(KEY_PREFIX) < MIN_SECRET_CHARS or not raw.isprintable() or raw != raw.strip():
            raise KeyConfigError(f"{where}.key must have at least {MIN_SECRET_CHARS} printable characters "
                                 f"after {KEY_PREFIX!r}, without spaces around it")
        key = _key_from_entry(entry, key_id_of(raw), where)
        if key.key_id in declared_at:
            raise KeyConfigError(f"{where}.key repeats the key of {declared_at[key.key_id]}: list each key once")
        declared_at[key.key_id] = where
        keys[key.key_id] = key
    return keys


_KNOWN_FIELDS = frozenset({"key", "key_alias", "models", "max_budget", "budget_duration", "rpm_limit", "tpm_limit",
                           "expires", "blocked", "user_id", "team_id", "metadata"})


def _key_from_entry(entry: dict[str, Any], key_id: str, where: str) -> VirtualKey:
    checked_section(entry, _KNOWN_FIELDS, where, KeyConfigError)
    duration = _text(entry, "budget_duration", where)
    if duration is not None:
        try:
            parse_duration(duration)
        except KeyConfigError as error:
            raise KeyConfigError(f"{where}.{error}") from None
    models = entry.get("models") or []
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        raise KeyConfigError(f"{where}.models must be a list of model names")
    blocked = entry.get("blocked", False)
    if not isinstance(blocked, bool):
        raise KeyConfigError(f"{where}.blocked must be true or false, got {blocked!r}")
    metadata = entry.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise KeyConfigError(f"{where}.metadata must be a mapping")
    return VirtualKey(
        key_id=key_id,
        source="config",
        alias=_text(entry, "key_alias", where),
        models=tuple(models),
        max_budget=_number(entry, "max_budget", where),
        budget_duration=duration,
        rpm_limit=_integer(entry, "rpm_limit", where),
        tpm_limit=_integer(entry, "tpm_limit", where),
        expires=_datetime(entry.get("expires"), where),
        blocked=blocked,
        user_id=_text(entry, "user_id", where),
        team_id=_text(entry, "team_id", where),
        metadata=dict(metadata),
    )


def _text(entry: dict[str, Any], name: str, where: str) -> str | None:
    value = entry.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise KeyConfigError(f"{where}.{name} must be a non-empty string, got {value!r}")
    return value


def _number(entry: dict[str, Any], name: str, where: str) -> float | None:
    value = entry.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise KeyConfigError(f"{where}.{name} must be a number >= 0, got {value!r}")
    return float(value)


def _integer(entry: dict[str, Any], name: str, where: str) -> int | None:
    value = entry.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise KeyConfigError(f"{where}.{name} must be a whole number >= 0, got {value!r}")
    return value


def _datetime(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise KeyConfigError(f"{where}.expires must be an ISO 8601 time, got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class LimitSettings:
    """`mpilot.limits`: where the ledger lives without Redis, how a call's cost is reserved, and the
    largest request body the plugin's routes read."""

    ledger_path: str = ".mpilot-ledger.sqlite3"  # relative to the config file's folder
    reservation_ttl_seconds: int = 900  # a reservation a proxy never settled (it died) frees itself
    default_max_tokens: int = 4096  # a request without max_tokens is reserved as if it asked for this many
    max_request_bytes: int = 20 * 1024 * 1024  # larger bodies get 413 before they are read whole
    store_timeout: float = 1.0  # seconds a step of the ledger's store may take (connect + command)
    on_store_down: str = "refuse"  # limited keys while the store is down: "refuse" (503) or "local"
    journal_path: str = ".mpilot-journal"  # a folder: spend answered while the store was down, until settled
    journal_max_bytes: int = 64 * 1024 * 1024  # per process; past it, such spend is logged and not kept


STORE_DOWN_POLICIES = ("refuse", "local")


def limit_settings(section: Any) -> LimitSettings:
    section = checked_section(section, LimitSettings.__dataclass_fields__, "mpilot.limits", KeyConfigError)
    path = section.get("ledger_path", LimitSettings.ledger_path)
    if not isinstance(path, str) or not path.strip():
        raise KeyConfigError(f"mpilot.limits.ledger_path must be a file path, got {path!r}")
    values: dict[str, Any] = {"ledger_path": path}
    journal = section.get("journal_path", LimitSettings.journal_path)
    if not isinstance(journal, str) or not journal.strip():
        raise KeyConfigError(f"mpilot.limits.journal_path must be a folder path, got {journal!r}")
    values["journal_path"] = journal
    timeout = section.get("store_timeout", LimitSettings.store_timeout)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 60:
        raise KeyConfigError(f"mpilot.limits.store_timeout must be a number of seconds in (0, 60], got {timeout!r}")
    values["store_timeout"] = float(timeout)
    policy = section.get("on_store_down", LimitSettings.on_store_down)
    if policy not in STORE_DOWN_POLICIES:
        raise KeyConfigError(f"mpilot.limits.on_store_down must be one of {', '.join(STORE_DOWN_POLICIES)}, "
                             f"got {policy!r}")
    values["on_store_down"] = policy
    for name in ("reservation_ttl_seconds", "default_max_tokens", "max_request_bytes", "journal_max_bytes"):
        value = section.get(name, getattr(LimitSettings, name))
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise KeyConfigError(f"mpilot.limits.{name} must be a whole number >= 1, got {value!r}")
        values[name] = value
    return LimitSettings(**values)
