"""MPilot JWT verification: admin JWTs and virtual-key JWTs.

Pure apart from fetching a JWKS (an injected async function). Rules:
- the issuer must be configured, and match; the audience must match when configured;
- `exp` is required, `nbf`/`iat` are honoured, with a small leeway;
- the algorithm must be one the configured key material can verify: HS256 only with the shared
  secret, asymmetric algorithms only with a public key of their own type (no `none`, no HS* with a
  public key: no algorithm confusion);
- JWKS keys are cached; an unknown `kid` refetches the set at most once per cooldown; a set older
  than its max age is refetched so removed keys stop verifying; if the JWKS endpoint is down the
  cached keys stay in use and unknown `kid`s are refused (fail closed);
- a verified token is remembered (bounded, until its own `exp`) so the hot path does not verify
  signatures again.
Rejections say what kind of problem it was, never which part of a signature check failed, and
never contain the token.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from ..sections import checked_section

log = logging.getLogger("mpilot.auth")

MAX_TOKEN_BYTES = 8192
VERIFIED_CACHE_BYTES = 16 * 2**20  # verified tokens' claims kept, in bytes (see `_remember`)
_CACHE_ENTRY_OVERHEAD = 1024  # a cached token's digest, claims object and dict slot, beyond the token's text
MAX_JWKS_BYTES = 2**20  # a JWKS document larger than this is refused (a few dozen keys take ~20 KiB)
MAX_JWKS_KEYS = 100
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256"})
_EC_ALGORITHMS = {"P-256": frozenset({"ES256"}), "P-384": frozenset({"ES384"})}


class TokenRejected(Exception):
    """The bearer token is not an acceptable MPilot JWT. The message is safe to show the caller."""


@dataclass(frozen=True)
class JwtSettings:
    issuer: str | None = None
    audience: str | None = None
    jwks_url: str | None = None
    public_key: str | None = None  # PEM
    secret: str | None = None  # HS256 shared secret
    leeway_seconds: float = 10.0
    jwks_cooldown_seconds: float = 30.0  # least time between refetches caused by an unknown kid
    jwks_max_age_seconds: float = 300.0  # a set older than this is refetched before use
    verified_cache_size: int = 10_000

    @property
    def has_key_material(self) -> bool:
        return bool(self.jwks_url or self.public_key or self.secret)


_TEXT_SETTINGS = ("issuer", "audience", "jwks_url", "public_key", "secret")
_SECONDS_SETTINGS = ("leeway_seconds", "jwks_cooldown_seconds", "jwks_max_age_seconds")


def jwt_settings(section: Any) -> JwtSettings:
    """`mpilot.jwt` checked field by field, so a typo fails at start and names the field instead of
    turning every valid token into a silent 401 later. Unset `os.environ/NAME` values count as absent."""
    section = checked_section(section, JwtSettings.__dataclass_fields__, "mpilot.jwt")
    values: dict[str, Any] = {}
    for name, value in section.items():
        if value is None or value == "" or (isinstance(value, str) and value.startswith("os.environ/")):
            continue
        if name in _TEXT_SETTINGS and not isinstance(value, str):
            raise ValueError(f"mpilot.jwt.{name} must be a string")
        if name in _SECONDS_SETTINGS and (isinstance(value, bool) or not isinstance(value, (int, float))
                                          or not 0 <= value <= 86_400):
            raise ValueError(f"mpilot.jwt.{name} must be a number of seconds from 0 to 86400, got {value!r}")
        if name == "verified_cache_size" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"mpilot.jwt.verified_cache_size must be a whole number >= 1, got {value!r}")
        values[name] = value
    return JwtSettings(**values)


@dataclass(frozen=True)
class MPilotClaims:
    subject: str
    is_admin: bool
    virtual_key_id: str | None  # SHA-256 hex of the virtual key (LiteLLM's stored `token`)
    expires_at: float
    kid: str | None = None
    claims: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


JwksFetcher = Callable[[str], Awaitable[dict[str, Any]]]


def looks_like_jwt(token: str) -> bool:
    return token.startswith("eyJ") and token.count(".") == 2


class _VerificationKey:
    def __init__(self, key: Any, algorithms: frozenset[str]) -> None:
        self.key = key
        self.algorithms = algorithms


def _algorithms_for_public_key(key: Any) -> frozenset[str]:
    if isinstance(key, rsa.RSAPublicKey):
        return _RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey):
        return _EC_ALGORITHMS.get({"secp256r1": "P-256", "secp384r1": "P-384"}.get(key.curve.name, ""), frozenset())
    if isinstance(key, ed25519.Ed25519PublicKey):
        return frozenset({"EdDSA"})
    return frozenset()


def _jwk_to_key(jwk: dict[str, Any]) -> _VerificationKey | None:
    try:
        parsed = jwt.PyJWK.from_dict(jwk)
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
        return None
    algorithms = _algorithms_for_public_key(parsed.key)
    if jwk.get("alg"):
        algorithms = algorithms & {jwk["alg"]}
    return _VerificationKey(parsed.key, algorithms) if algorithms else None


class JwksCache:
    """The signing keys of one JWKS endpoint, by `kid`."""

    def __init__(self, url: str, fetch: JwksFetcher, settings: JwtSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._url = url
        self._fetch = fetch
        self._settings = settings
        self._clock = clock
        self._keys: dict[str, _VerificationKey] = {}
        self._fetched_at: float | None = None  # of the last successful fetch
        self._tried_at: float | None = None  # of the last attempt, successful or not
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> _VerificationKey | None:
        if self._wants_refresh(kid):
            async with self._lock:
                if self._wants_refresh(kid):  # not refreshed by another request meanwhile
                    await self._refresh()
        return self._keys.get(kid)

    def _wants_refresh(self, kid: str) -> bool:
        now = self._clock()
        if self._tried_at is not None and now - self._tried_at < self._settings.jwks_cooldown_seconds:
            return False
        stale = self._fetched_at is None or now - self._fetched_at > self._settings.jwks_max_age_seconds
        return stale or kid not in self._keys

    async def _refresh(self) -> None:
        now = self._clock()
        self._tried_at = now
        try:
            document = await self._fetch(self._url)
            listed = document.get("keys", [])
            if not isinstance(listed, list) or len(listed) > MAX_JWKS_KEYS:
                raise ValueError(f"JWKS keys must be a list of at most {MAX_JWKS_KEYS}")
            keys = {jwk["kid"]: key for jwk in listed
                    if isinstance(jwk, dict) and jwk.get("kid") and (key := _jwk_to_key(jwk)) is not None}
        except Exception as error:  # noqa: BLE001  # any failure: keep the keys we have
            log.warning("MPilot JWKS fetch failed (%s); keeping %d cached keys", type(error).__name__,
                        len(self._keys))
            return
        self._keys = keys
        self._fetched_at = now


class MPilotJwtVerifier:
    def __init__(self, settings: JwtSettings, fetch_jwks: JwksFetcher | None = None,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._jwks = JwksCache(settings.jwks_url, fetch_jwks or fetch_jwks_over_http, settings, monotonic) \
            if settings.jwks_url else None
        self._public_key: _VerificationKey | None = None
        if settings.public_key:
            key = load_pem_public_key(settings.public_key.encode())
            self._public_key = _VerificationKey(key, _algorithms_for_public_key(key))
        # by the token's digest: its claims and what the entry holds in bytes (bounded both ways)
        self._verified: OrderedDict[str, tuple[MPilotClaims, int]] = OrderedDict()
        self._verified_bytes = 0

    async def verify(self, token: str) -> MPilotClaims:
        if not self.settings.issuer or not self.settings.has_key_material:
            raise TokenRejected("MPilot JWTs are not accepted by this proxy: no issuer and key material configured")
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenRejected("bearer token is too large")
        digest = hashlib.sha256(token.encode()).hexdigest()
        entry = self._verified.get(digest)
        if entry is not None:
            cached = entry[0]
            if cached.expires_at + self.settings.leeway_seconds <= self._clock():
                self._forget(digest)
                raise TokenRejected("MPilot token has expired")
            if cached.kid is not None and self._jwks is not None and await self._jwks.key(cached.kid) is None:
                self._forget(digest)
                raise TokenRejected("MPilot token could not be verified")
            self._verified.move_to_end(digest)
            return cached
        claims = await self._verify_signed(token)
        self._remember(digest, claims, len(token))
        return claims

    def _remember(self, digest: str, claims: MPilotClaims, token_bytes: int) -> None:
        """Keep a verified token's claims, the least recently used leaving first once the cache holds
        `verified_cache_size` tokens or VERIFIED_CACHE_BYTES (claims are at most the token's size)."""
        self._forget(digest)
        size = token_bytes + _CACHE_ENTRY_OVERHEAD
        self._verified[digest] = (claims, size)
        self._verified_bytes += size
        while len(self._verified) > self.settings.verified_cache_size or self._verified_bytes > VERIFIED_CACHE_BYTES:
            self._verified_bytes -= self._verified.popitem(last=False)[1][1]

    def _forget(self, digest: str) -> None:
        entry = self._verified.pop(digest, None)
        if entry is not None:
            self._verified_bytes -= entry[1]

    async def _verify_signed(self, token: str) -> MPilotClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRejected("malformed bearer token") from None
        algorithm = header.get("alg")
        kid = header.get("kid") if isinstance(header.get("kid"), str) else None
        key, used_kid = await self._key_for(algorithm, kid)
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=self.settings.issuer,
                audience=self.settings.audience,
                leeway=self.settings.leeway_seconds,
                options={"require": ["exp", "iss"], "verify_aud": self.settings.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("MPilot token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRejected("MPilot token is not valid yet") from None
        except (jwt.InvalidIssuerError, jwt.InvalidAudienceError):
            raise TokenRejected("MPilot token was not issued for this proxy") from None
        except jwt.MissingRequiredClaimError as error:
            raise TokenRejected(f"MPilot token lacks the required `{error.claim}` claim") from None
        except jwt.PyJWTError:
            raise TokenRejected("MPilot token could not be verified") from None
        return _claims(payload, used_kid)

    async def _key_for(self, algorithm: object, kid: str | None) -> tuple[Any, str | None]:
        if not isinstance(algorithm, str) or algorithm.lower() == "none":
            raise TokenRejected("MPilot token algorithm is not accepted")
        if algorithm == "HS256":
            if not self.settings.secret:
                raise TokenRejected("MPilot token algorithm is not accepted")
            return self.settings.secret, None
        if kid is not None and self._jwks is not None:
            found = await self._jwks.key(kid)
            if found is not None and algorithm in found.algorithms:
                return found.key, kid
            if self._public_key is None:
                raise TokenRejected("MPilot token could not be verified")
        if self._public_key is not None and algorithm in self._public_key.algorithms:
            return self._public_key.key, None
        raise TokenRejected("MPilot token algorithm is not accepted")


def _claims(payload: dict[str, Any], kid: str | None) -> MPilotClaims:
    subject = payload.get("sub")
    if not isinstance(subject, str) or not subject:
        raise TokenRejected("MPilot token lacks the required `sub` claim")
    is_admin = payload.get("role") == "admin"
    vk = payload.get("vk")
    if vk is not None and (not isinstance(vk, str) or len(vk) != 64
                           or any(c not in "0123456789abcdef" for c in vk)):
        raise TokenRejected("MPilot token's `vk` claim is not a key id (SHA-256 hex)")
    if not is_admin and vk is None:
        raise TokenRejected("MPilot token is neither an admin token nor bound to a virtual key")
    return MPilotClaims(subject=subject, is_admin=is_admin, virtual_key_id=vk, expires_at=float(payload["exp"]),
                        kid=kid, claims=payload)


async def fetch_jwks_over_http(url: str) -> dict[str, Any]:
    import httpx

    async with httpx.AsyncClient(timeout=5.0) as client, client.stream("GET", url) as response:
        response.raise_for_status()
        body = bytearray()
        async for part in response.aiter_bytes():
            body += part
            if len(body) > MAX_JWKS_BYTES:
                raise ValueError(f"JWKS is larger than {MAX_JWKS_BYTES} bytes")
    document = json.loads(body)
    if not isinstance(document, dict):
        raise ValueError("JWKS is not a JSON object")
    return document
