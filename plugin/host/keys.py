"""Who is calling, as the proxy knows it: the `mpilot:` config, the models a request names, the key
store, model access, LiteLLM's own spend counters, the ledger, and the callers handed to LiteLLM.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import logging
import os
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from fastapi import Request

# LitellmUserRoles: from litellm.proxy._types on every release (1.108 moved it to a module of its own)
from litellm.proxy._types import LitellmUserRoles, ProxyException, UserAPIKeyAuth
from redis.asyncio import RedisCluster
from starlette.datastructures import QueryParams

from ..limits.keys import VirtualKey
from ..limits.ledger import Ledger, RedisLedger, SqliteLedger

log = logging.getLogger("mpilot")
Caller = UserAPIKeyAuth


def mpilot_settings() -> dict[str, Any]:
    """`config.yaml`'s `mpilot:` section, `os.environ/NAME` values resolved by LiteLLM."""
    from litellm.proxy.proxy_server import proxy_config

    section = proxy_config.get_config_state().get("mpilot")
    return dict(section) if isinstance(section, dict) else {}


async def requested_models(request: Request) -> list[str]:
    """Every model a request names, wherever LiteLLM would take one from: its body (JSON, or the form
    fields of an upload, parsed once and cached by LiteLLM), its path (`/engines/{model}/...`,
    `/openai/deployments/{model}/...`, Bedrock, Azure and Google shapes), its query (`?model=`, which
    LiteLLM prefers to the body's on chat routes; also a realtime websocket's), the headers and ids
    LiteLLM reads for files and batches, and client-side fallbacks. A model check must cover them all:
    the call may use any of them."""
    from litellm.proxy import proxy_server as proxy
    from litellm.proxy.auth.auth_utils import (
        get_model_from_request,
        get_request_route,
        iter_request_fallback_targets,
    )
    try:
        body = await _parsed_body(request)
    except Exception:  # noqa: BLE001  # an unreadable body is LiteLLM's (or the route's) to answer
        body = {}
    body = body if isinstance(body, dict) else {}
    route = get_request_route(request=request)
    # Release adapter: 1.100's websocket auth hands over a request without a query string (the model of a
    # realtime call is then in the body it makes up).
    query = request.query_params if "query_string" in request.scope else QueryParams()
    named: list[object] = [body.get("model"), query.get("model"),
                           request.path_params.get("model"), request.path_params.get("model_name")]
    found = get_model_from_request(body, route, request_headers=request.headers,
                                   request_query_params=query, llm_router=proxy.llm_router,
                                   request=request)
    named.extend(found if isinstance(found, list) else [found])
    named.append(_bedrock_path_model(route))
    named.extend(_fallback_model(target) for target in iter_request_fallback_targets(body))
    models: list[str] = []
    for model in named:
        if isinstance(model, str) and model and model not in models:
            models.append(model)
    return models


async def _parsed_body(request: Request) -> dict:
    """LiteLLM's parse of a request's body (JSON, or the form fields of an upload), cached in the request.
    Release adapter: public `read_request_body` from 1.106, `_read_request_body` before."""
    from litellm.proxy.common_utils import http_parsing_utils as parsing

    read = getattr(parsing, "read_request_body", None) or parsing._read_request_body
    return await read(request)


def _bedrock_path_model(route: str) -> str | None:
    """The model of a Bedrock pass-through path, `/bedrock/[v2/]model/{model, slashes allowed}/{action}`.
    Release adapter: LiteLLM's own model lookup reads it from 1.106; 1.100-1.104 route by it unchecked."""
    match = _BEDROCK_PATH.match(route)
    return unquote(match.group(1)) if match else None


_BEDROCK_PATH = re.compile(r"^/bedrock/(?:v2/)?model/(.+)/[^/]+$", re.IGNORECASE)


def _fallback_model(target: object) -> str | None:
    """The model a client-side fallback names: a model name, or an object with one under `model` (as
    LiteLLM's `fallback_target_model_name`, which 1.100-1.104 do not have)."""
    if isinstance(target, Mapping):
        target = target.get("model")
    return target if isinstance(target, str) else None


def route_of(request: Request) -> str:
    from litellm.proxy.auth.auth_utils import get_request_route

    return get_request_route(request=request)


def route_spends(route: str) -> bool:
    """Whether a call of `route` can reach a model, and so spend: LiteLLM's own rule for budgets
    (LLM API routes except model discovery; `/health`, which calls every model the key may use, and
    realtime websockets included)."""
    from litellm.proxy.auth import auth_checks

    if hasattr(auth_checks, "route_skips_budget_checks"):
        return not auth_checks.route_skips_budget_checks(route=route)
    # Release adapter: 1.100-1.104 apply the same rule inline in `common_checks`, from the same constants.
    from litellm.proxy.auth.route_checks import RouteChecks

    return route in auth_checks.BUDGET_ENFORCED_SIDE_EFFECT_ROUTES or (
        route not in auth_checks.MODEL_DISCOVERY_ROUTES and RouteChecks.is_llm_api_route(route=route))


def share_json_body(request: Request, parsed: dict[str, Any]) -> None:
    """Make LiteLLM read our route's body as the route does (JSON, whatever the content type claims), so
    auth checks the model the route will call: a JSON body sent as a form would read as a form without a
    `model` otherwise."""
    from litellm.proxy.common_utils import http_parsing_utils as parsing

    # Release adapter: public from 1.106, `_safe_set_request_parsed_body` before.
    share = getattr(parsing, "safe_set_request_parsed_body", None) or parsing._safe_set_request_parsed_body
    share(request, parsed)


async def store_key(key_id: str) -> VirtualKey | None:
    """A virtual key from the proxy's own key store: its cache, then its database when it has one.

    LiteLLM's key cache holds more than virtual keys (the master key's auth object, admins' keys, UI
    sessions): only an entry that is a plain virtual key stored under this very id is one."""
    from litellm.proxy import proxy_server as proxy
    from litellm.proxy.auth.auth_checks import get_key_object

    found = await proxy.user_api_key_cache.async_get_cache(key=key_id, model_type=UserAPIKeyAuth)
    if found is None and proxy.prisma_client is not None:
        try:
            found = await get_key_object(hashed_token=key_id, prisma_client=proxy.prisma_client,
                                         user_api_key_cache=proxy.user_api_key_cache)
        except Exception:  # noqa: BLE001  # not in the store
            found = None
    if isinstance(found, dict):
        found = UserAPIKeyAuth(**found)
    if not isinstance(found, UserAPIKeyAuth) or not _is_virtual_key(found, key_id):
        return None
    return VirtualKey(
        key_id=key_id,
        source="proxy",
        alias=found.key_alias,
        models=tuple(found.models or ()),
        max_budget=found.max_budget,
        budget_duration=found.budget_duration,
        rpm_limit=found.rpm_limit,
        tpm_limit=found.tpm_limit,
        expires=_aware(found.expires),
        blocked=bool(found.blocked),
        user_id=found.user_id,
        team_id=found.team_id,
        metadata=dict(found.metadata or {}),
        stored_spend=float(found.spend or 0.0),
        stored=found,
    )


_ADMIN_ROLES = frozenset({LitellmUserRoles.PROXY_ADMIN, LitellmUserRoles.PROXY_ADMIN_VIEW_ONLY})


def _is_virtual_key(found: UserAPIKeyAuth, key_id: str) -> bool:
    from litellm.proxy import proxy_server as proxy
    from litellm.proxy._types import UI_TEAM_ID

    master = proxy.master_key
    if isinstance(master, str) and master and hmac.compare_digest(key_id, hashlib.sha256(master.encode()).hexdigest()):
        return False
    return (found.token == key_id
            and found.user_role not in _ADMIN_ROLES
            and found.team_id != UI_TEAM_ID
            and found.user_id != proxy.litellm_proxy_admin_name)


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def may_call_model(caller: Caller, model: str) -> bool:
    """LiteLLM's own model check for a key's caller (see `key_caller`): access groups, wildcards,
    `all-proxy-models`."""
    from litellm.proxy import proxy_server as proxy
    from litellm.proxy.auth.auth_checks import can_key_call_model

    try:
        await can_key_call_model(model=model, llm_model_list=proxy.llm_model_list, valid_token=caller,
                                 llm_router=proxy.llm_router)
    except ProxyException as denial:
        if str(denial.code) in ("401", "403"):
            return False
        raise
    return True


def litellm_tracks_spend() -> bool:
    """LiteLLM records spend itself only with its database."""
    from litellm.proxy import proxy_server as proxy

    return proxy.prisma_client is not None


async def litellm_key_spend(key: VirtualKey) -> float:
    from litellm.proxy.proxy_server import get_current_spend

    return await get_current_spend(counter_key=f"spend:key:{key.key_id}", fallback_spend=key.stored_spend,
                                   max_budget=key.max_budget)


def ledger_file(path: str) -> Path:
    """The ledger's SQLite file: `path`, relative to the folder of the proxy's config file."""
    from litellm.proxy import proxy_server as proxy

    config = proxy.user_config_file_path or os.environ.get("CONFIG_FILE_PATH")
    base = Path(config).resolve().parent if config else Path.cwd()
    return (base / path).resolve()


def redis_expected() -> bool:
    """Whether LiteLLM will coordinate through Redis: a `coordination_redis` block, or REDIS_HOST (which
    LiteLLM tries after it loads the plugin)."""
    from litellm.proxy import proxy_server as proxy

    return proxy.redis_usage_cache is not None or bool(os.environ.get("REDIS_HOST") or os.environ.get("REDIS_URL"))


def make_ledger(path: str) -> Ledger:
    """Redis when LiteLLM coordinates through one (several proxies share it), else the SQLite file every
    worker of this machine shares."""
    from litellm.proxy import proxy_server as proxy

    if proxy.redis_usage_cache is not None:
        client = _ledger_redis_client(proxy.redis_usage_cache)
        return RedisLedger(client, cluster=isinstance(client, RedisCluster))
    if redis_expected():
        log.warning("MPilot limits: REDIS_HOST is set but LiteLLM has no Redis; limits are shared by this "
                    "machine's workers only (ledger %s)", ledger_file(path))
    return SqliteLedger(ledger_file(path))


def _ledger_redis_client(usage_cache: Any) -> Any:
    """A client of the ledger's own to the Redis LiteLLM coordinates through (a server, a Sentinel's
    master or a cluster), made from LiteLLM's resolved settings. Not LiteLLM's client: LiteLLM keeps that
    in its client cache, which closes a cluster client it evicts."""
    from litellm import _redis

    settings = getattr(usage_cache, "redis_kwargs", None)
    if isinstance(settings, dict):
        try:
            # A pool that waits for a free connection (a server's; a cluster's client has its own per node):
            # redis-py's default pool raises past 100 commands at once.
            pool = _redis.get_redis_connection_pool(**settings)
            return _redis.get_redis_async_client(connection_pool=pool, **settings)
        except (TypeError, AttributeError):  # a release whose client factories differ: LiteLLM's own client
            pass
    return usage_cache.init_async_client()


RESERVATION = "mpilot_reservation"  # in a caller's metadata: the ledger reservation of this request's call
VIRTUAL_KEY = "mpilot_key"  # in a caller's metadata: the id of the virtual key it was made for
# In a caller's metadata: this request's own id, which names its settlement. Not LiteLLM's call id, which
# a client may choose (`x-litellm-call-id`) and so repeat, to have its later calls taken for settled ones.
SETTLEMENT = "mpilot_call"


def key_caller(key: VirtualKey) -> Caller:
    """What LiteLLM sees for a virtual key: its id (never the key), identity and models.

    A key from the proxy's store is LiteLLM's own key object, handed over whole: it keeps every
    restriction LiteLLM gives it (max_parallel_requests, allowed_routes, rpm/tpm limit types,
    model_max_budget, object permissions, its organization), which LiteLLM enforces on it as on its own
    keys. Its budget is the plugin's ledger's while LiteLLM keeps no spend (no database); with one, both
    hold it. A config key has the fields a config key can have. Budgets and rate limits hold in the
    plugin's ledger on top (see `MPilotAuth.admit`). Its metadata names the key (`virtual_key_of`), so
    that the call's end is settled for it, and the ends of calls of other callers are left alone."""
    if key.stored is None:
        caller = _one_request_copy(_config_caller(key))
    else:
        caller = _one_request_copy(key.stored)
        caller.api_key = caller.token = key.key_id
        if not litellm_tracks_spend():
            caller.max_budget = None  # LiteLLM would reserve against spend it never records
    caller.metadata = {**(caller.metadata or {}), VIRTUAL_KEY: key.key_id, SETTLEMENT: uuid.uuid4().hex}
    return caller


def _config_caller(key: VirtualKey) -> Caller:
    """A config key's caller, made once per key object (building one validates every field: ~50 us)."""
    made = _config_callers.get(key.key_id)
    if made is None or made[0] is not key:
        made = _config_callers[key.key_id] = (key, UserAPIKeyAuth(
            api_key=key.key_id, token=key.key_id, key_alias=key.alias, models=list(key.models),
            user_id=key.user_id, team_id=key.team_id, metadata=dict(key.metadata)))
    return made[1]


_config_callers: dict[str, tuple[VirtualKey, Caller]] = {}  # by key id: one entry per config key


def _one_request_copy(caller: Caller) -> Caller:
    """A copy of `caller` for one request, its lists, dicts and sets copied too, as LiteLLM may change
    them in place on the caller it is handed (~8 us; a deep copy costs ~100 us)."""
    return caller.model_copy(update={name: copy.copy(value) for name, value in caller.__dict__.items()
                                     if isinstance(value, (list, dict, set))})


def with_reservation(caller: Caller, reservation: str | None) -> Caller:
    """`reservation` rides in the key metadata LiteLLM hands to callbacks, so the call's end settles it."""
    if reservation is not None:
        caller.metadata = {**(caller.metadata or {}), RESERVATION: reservation}
    return caller


def reservation_of(caller: Any) -> str | None:
    """The reservation riding in a caller's metadata (see `key_caller`)."""
    return reservation_in(getattr(caller, "metadata", None))


def reservation_in(key_metadata: Any) -> str | None:
    value = key_metadata.get(RESERVATION) if isinstance(key_metadata, dict) else None
    return value if isinstance(value, str) else None


def settlement_of(caller: Any) -> str | None:
    """The id that names the settlement of a virtual key's request (see `key_caller`)."""
    return settlement_in(getattr(caller, "metadata", None))


def settlement_in(key_metadata: Any) -> str | None:
    value = key_metadata.get(SETTLEMENT) if isinstance(key_metadata, dict) else None
    return value if isinstance(value, str) else None


def virtual_key_of(caller: Any) -> str | None:
    """The id of the virtual key a caller was made for (see `key_caller`); None for LiteLLM's own."""
    return virtual_key_in(getattr(caller, "metadata", None))


def virtual_key_in(key_metadata: Any) -> str | None:
    value = key_metadata.get(VIRTUAL_KEY) if isinstance(key_metadata, dict) else None
    return value if isinstance(value, str) else None


def admin_caller(subject: str) -> Caller:
    return UserAPIKeyAuth(api_key=hashlib.sha256(f"mpilot-admin:{subject}".encode()).hexdigest(),
                          user_id=subject, user_role=LitellmUserRoles.PROXY_ADMIN)


def is_admin(caller: Caller) -> bool:
    return caller.user_role == LitellmUserRoles.PROXY_ADMIN


def auth_refusal(status: int, message: str, headers: dict[str, str] | None = None) -> ProxyException:
    """A refusal LiteLLM's auth passes on with its status (a plain exception would be a decline)."""
    return ProxyException(message=message, type="auth_error", param=None, code=status, headers=dict(headers or {}))


def is_refusal(error: BaseException) -> bool:
    """Whether `error` is a refusal LiteLLM's auth answers with its own status (not a decline)."""
    return isinstance(error, ProxyException)


def is_master_key(token: str) -> bool:
    from litellm.proxy import proxy_server as proxy

    master = proxy.master_key
    return isinstance(master, str) and bool(master) and hmac.compare_digest(token.encode(), master.encode())
