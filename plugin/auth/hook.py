"""Who may call: the proxy's `custom_auth` hook for MPilot tokens and `sk-bf-` virtual keys.

| bearer token                  | result                                                           |
|-------------------------------|------------------------------------------------------------------|
| `sk-bf-...`                   | the virtual key from `mpilot.virtual_keys` or the proxy's store  |
| MPilot JWT with `vk`          | the virtual key whose id (SHA-256 hex) `vk` names                |
| MPilot JWT with `role: admin` | a proxy admin, spend attributed to its `sub`                     |
| anything else                 | declined: LiteLLM's own auth decides (master key, UI, DB keys)   |

A virtual key is refused when blocked (403), expired (401), not allowed the requested model (403)
or over its budget (402); rpm/tpm limits are enforced by LiteLLM's rate limiter on the returned
caller (429 with Retry-After). Messages name the key by its id prefix, never the key or token.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import jwt
from fastapi import Request

from .. import host
from ..cohere.errors import redact
from .keys import KEY_PREFIX, VirtualKey, config_keys, key_id_of
from .tokens import MPilotJwtVerifier, TokenRejected, jwt_settings, looks_like_jwt

log = logging.getLogger("mpilot.auth")
KEY_INFO_PATH = "/mpilot/key/info"


class Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class MPilotAuth:
    def __init__(self, settings: dict[str, Any]) -> None:
        self.jwt = jwt_settings(settings.get("jwt"))
        self.verifier = MPilotJwtVerifier(self.jwt)
        self.keys = config_keys(settings.get("virtual_keys"))

    async def authenticate(self, request: Request, token: str) -> Any:
        """A caller for LiteLLM, or None to let LiteLLM's own auth decide."""
        if token.startswith(KEY_PREFIX):
            if host.is_master_key(token):
                return None  # an operator chose an sk-bf- master key: LiteLLM's own auth knows it
            key = await self.find_key(key_id_of(token))
            if key is None:
                raise Refused(401, "unknown virtual key")
            return await self.admit(key, request)
        if looks_like_jwt(token) and self._is_mpilot_token(token):
            try:
                claims = await self.verifier.verify(token)
            except TokenRejected as rejection:
                raise Refused(401, str(rejection)) from None
            if claims.is_admin:
                return host.admin_caller(claims.subject)
            key = await self.find_key(claims.virtual_key_id or "")
            if key is None:
                raise Refused(401, "MPilot token names an unknown virtual key")
            return await self.admit(key, request)
        return None

    def _is_mpilot_token(self, token: str) -> bool:
        """MPilot's tokens carry our issuer, a `vk` or a `role`; other JWTs (LiteLLM UI sessions,
        LiteLLM's own JWT auth) are left to LiteLLM."""
        try:
            peek = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise Refused(401, "malformed bearer token") from None
        return ("vk" in peek or "role" in peek
                or (self.jwt.issuer is not None and peek.get("iss") == self.jwt.issuer))

    async def find_key(self, key_id: str) -> VirtualKey | None:
        return self.keys.get(key_id) or await host.store_key(key_id)

    async def admit(self, key: VirtualKey, request: Request) -> Any:
        now = datetime.now(UTC)
        if key.blocked:
            raise Refused(403, f"virtual key {key.display_id} is blocked")
        if key.expired(now):
            raise Refused(401, f"virtual key {key.display_id} has expired")
        for model in await host.requested_models(request):
            if not await host.may_call_model(key, model):
                raise Refused(403, f"virtual key {key.display_id} may not use model {model!r}")
        # Only what cannot reach a model (the key's own info, model lists) stays open to a spent key.
        route = host.route_of(request)
        if key.max_budget is not None and route != KEY_INFO_PATH and host.route_spends(route):
            spend = await self.spend(key, now)
            if spend >= key.max_budget:
                raise Refused(402, f"virtual key {key.display_id} has exceeded its budget of "
                                   f"{dollars(key.max_budget)} (spent {dollars(spend)})")
        return host.key_caller(key)

    def tracks_spend(self, key: VirtualKey) -> bool:
        """Whether the plugin keeps this key's spend: always for config keys; for keys in the proxy's
        store only when LiteLLM itself does not (no database)."""
        return key.source == "config" or not host.litellm_tracks_spend()

    async def spend(self, key: VirtualKey, now: datetime) -> float:
        if self.tracks_spend(key):
            return await host.read_counter(key.spend_counter(now))
        return await host.litellm_key_spend(key)

    async def record_spend(self, key_id: str, cost: float) -> None:
        key = await self.find_key(key_id)
        if key is None or cost <= 0 or not self.tracks_spend(key):
            return
        await host.add_to_counters(key.spend_counters(datetime.now(UTC)), cost, ttl=key.counter_ttl())


def dollars(amount: float) -> str:
    """`$5.00`; small amounts keep their digits (`$0.00004`)."""
    return f"${amount:,.2f}" if amount >= 0.01 or amount == 0 else f"${amount:.8f}".rstrip("0")


_auth: MPilotAuth | None = None


def mpilot_auth() -> MPilotAuth:
    """The plugin's auth, made from `config.yaml`'s `mpilot:` section on first use."""
    global _auth
    if _auth is None:
        _auth = MPilotAuth(host.mpilot_settings())
        log.info("MPilot auth: %d config virtual keys, JWTs %s", len(_auth.keys),
                 "accepted" if _auth.jwt.issuer and _auth.jwt.has_key_material else "not configured")
    return _auth


async def user_api_key_auth(request: Request, api_key: str) -> Any:
    """`general_settings.custom_auth`. Returns a caller, or None to decline (needs
    `custom_auth_settings.mode: auto`); a refusal ends the request with its status.

    Fails closed and loudly: a broken `mpilot:` section, or anything the hook did not expect, is a
    logged 500 refusal, never a decline that would hand an MPilot token to another auth."""
    if not isinstance(api_key, str) or not api_key:
        return None  # no token: LiteLLM's own auth answers (401, or a UI session cookie)
    try:
        auth = mpilot_auth()
    except (ValueError, TypeError) as error:
        log.error("MPilot auth is misconfigured: %s", error)
        raise host.auth_refusal(500, f"MPilot auth is misconfigured: {error}") from None
    try:
        return await auth.authenticate(request, api_key)
    except Refused as refusal:
        raise host.auth_refusal(refusal.status, refusal.message, refusal.headers) from None
    except Exception as error:
        if host.is_refusal(error):
            raise
        log.error("MPilot auth failed unexpectedly (%s: %s); request refused", type(error).__name__,
                  redact(str(error)))
        raise host.auth_refusal(500, "MPilot auth could not check this request; it was refused") from None
