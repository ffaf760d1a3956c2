"""MPilot JWT verification against a real JWKS server on loopback, with a controllable clock."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from plugin.auth import tokens
from plugin.auth.tokens import JwtSettings, MPilotJwtVerifier, TokenRejected, jwt_settings, looks_like_jwt

from .jwt_issuer import AUDIENCE, ISSUER, JwksServer, SigningKey, claims, ec_key, ed_key, rsa_key

VK = hashlib.sha256(b"sk-bf-example-key").hexdigest()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rsa_signer() -> Any:
    return rsa_key("rsa-1")


@pytest.fixture
def ec_signer() -> Any:
    return ec_key("ec-1")


@pytest.fixture
def jwks(rsa_signer: Any, ec_signer: Any) -> Iterator[JwksServer]:
    server = JwksServer(rsa_signer, ec_signer).start()
    yield server
    server.stop()


def verifier(jwks: JwksServer | None = None, monotonic: Clock | None = None, **settings: Any) -> MPilotJwtVerifier:
    base = {"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": jwks.url if jwks else None}
    return MPilotJwtVerifier(JwtSettings(**{**base, **settings}), monotonic=monotonic or Clock())


def verify(v: MPilotJwtVerifier, token: str) -> Any:
    return asyncio.run(v.verify(token))


def rejected(v: MPilotJwtVerifier, token: str) -> str:
    with pytest.raises(TokenRejected) as raised:
        verify(v, token)
    return str(raised.value)


def test_rsa_and_ec_keys_from_jwks(jwks: JwksServer, rsa_signer: Any, ec_signer: Any) -> None:
    v = verifier(jwks)
    admin = verify(v, rsa_signer.sign(claims(role="admin", sub="alice")))
    assert (admin.is_admin, admin.subject, admin.virtual_key_id) == (True, "alice", None)
    bound = verify(v, ec_signer.sign(claims(vk=VK)))
    assert (bound.is_admin, bound.virtual_key_id) == (False, VK)


@pytest.mark.parametrize("algorithm", ["RS384", "RS512", "PS256"])
def test_other_rsa_algorithms(algorithm: str) -> None:
    signer = rsa_key("r", algorithm)
    server = JwksServer(signer).start()
    try:
        assert verify(verifier(server), signer.sign(claims(vk=VK))).virtual_key_id == VK
    finally:
        server.stop()


def test_es384_and_eddsa_from_jwks() -> None:
    signers = [ec_key("e384", "ES384"), ed_key("ed")]
    server = JwksServer(*signers).start()
    try:
        for signer in signers:
            assert verify(verifier(server), signer.sign(claims(vk=VK))).virtual_key_id == VK
    finally:
        server.stop()


def test_public_key_pem_and_hs256_secret(rsa_signer: Any) -> None:
    assert verify(verifier(public_key=rsa_signer.public_pem), rsa_signer.sign(claims(vk=VK))).virtual_key_id == VK
    secret = "s" * 32
    token = jwt.encode(claims(role="admin"), secret, algorithm="HS256")
    assert verify(verifier(secret=secret), token).is_admin


def test_rotation_new_kid_accepted_after_refetch(jwks: JwksServer, rsa_signer: Any) -> None:
    clock = Clock()
    v = verifier(jwks, clock, jwks_cooldown_seconds=30)
    verify(v, rsa_signer.sign(claims(vk=VK)))
    assert jwks.fetches == 1
    new = rsa_key("rsa-2")
    jwks.keys.append(new)
    clock.now += 31  # past the cooldown: the unknown kid triggers one refetch
    assert verify(v, new.sign(claims(vk=VK))).virtual_key_id == VK
    assert jwks.fetches == 2


def test_unknown_kid_refetches_at_most_once_per_cooldown(jwks: JwksServer, rsa_signer: Any) -> None:
    clock = Clock()
    v = verifier(jwks, clock, jwks_cooldown_seconds=30)
    verify(v, rsa_signer.sign(claims(vk=VK)))
    stranger = rsa_key("nobody")
    clock.now += 31
    for _ in range(5):
        rejected(v, stranger.sign(claims(vk=VK)))
    assert jwks.fetches == 2  # the first fetch, and one refetch for the unknown kid
    clock.now += 5
    rejected(v, stranger.sign(claims(vk=VK, sub="again")))
    assert jwks.fetches == 2  # within the cooldown: no new fetch
    clock.now += 30
    rejected(v, stranger.sign(claims(vk=VK, sub="later")))
    assert jwks.fetches == 3


def test_removed_kid_refused_after_cache_expiry(jwks: JwksServer, rsa_signer: Any, ec_signer: Any) -> None:
    clock = Clock()
    v = verifier(jwks, clock, jwks_max_age_seconds=60, jwks_cooldown_seconds=10)
    token = rsa_signer.sign(claims(vk=VK))
    verify(v, token)
    jwks.keys = [ec_signer]  # the RSA key is withdrawn
    clock.now += 30
    verify(v, token)  # still within the cached set's max age
    clock.now += 31
    assert "could not be verified" in rejected(v, token)  # even a token verified before
    assert "could not be verified" in rejected(v, rsa_signer.sign(claims(vk=VK, sub="fresh")))


def test_endpoint_down_keeps_cached_keys_and_refuses_unknown_kids(jwks: JwksServer, rsa_signer: Any) -> None:
    clock = Clock()
    v = verifier(jwks, clock, jwks_max_age_seconds=60, jwks_cooldown_seconds=10)
    verify(v, rsa_signer.sign(claims(vk=VK)))
    jwks.down = True
    clock.now += 120  # the cached set is stale and the refetch fails
    assert verify(v, rsa_signer.sign(claims(vk=VK, sub="later"))).subject == "later"
    assert "could not be verified" in rejected(v, rsa_key("rsa-new").sign(claims(vk=VK)))
    assert jwks.fetches >= 2


def test_endpoint_down_from_the_start_fails_closed(rsa_signer: Any) -> None:
    server = JwksServer(rsa_signer).start()
    server.down = True
    try:
        assert "could not be verified" in rejected(verifier(server), rsa_signer.sign(claims(vk=VK)))
    finally:
        server.stop()


def test_verified_token_is_not_verified_again(jwks: JwksServer, rsa_signer: Any, monkeypatch: Any) -> None:
    v = verifier(jwks)
    token = rsa_signer.sign(claims(vk=VK))
    verify(v, token)
    calls = []
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: calls.append(1))
    assert verify(v, token).virtual_key_id == VK
    assert calls == []


def test_verified_cache_is_bounded(jwks: JwksServer, rsa_signer: Any) -> None:
    v = verifier(jwks, verified_cache_size=3)
    for n in range(10):
        verify(v, rsa_signer.sign(claims(vk=VK, sub=f"user-{n}")))
    assert len(v._verified) == 3


def test_verified_cache_is_bounded_in_bytes(jwks: JwksServer, rsa_signer: Any, monkeypatch: Any) -> None:
    tokens_ = [rsa_signer.sign(claims(vk=VK, sub=f"user-{n}", note="n" * 2000)) for n in range(10)]
    entry = len(tokens_[0]) + tokens._CACHE_ENTRY_OVERHEAD
    monkeypatch.setattr(tokens, "VERIFIED_CACHE_BYTES", 3 * entry + entry // 2)
    v = verifier(jwks)
    for token in tokens_:
        verify(v, token)
    assert len(v._verified) == 3
    assert v._verified_bytes == sum(size for _, size in v._verified.values()) == 3 * entry
    assert list(v._verified) == [hashlib.sha256(t.encode()).hexdigest() for t in tokens_[-3:]]  # newest kept


def test_a_jwks_larger_than_the_limit_is_refused(rsa_signer: Any) -> None:
    server = JwksServer(rsa_signer).start()
    server.padding = tokens.MAX_JWKS_BYTES
    try:
        assert "could not be verified" in rejected(verifier(server), rsa_signer.sign(claims(vk=VK)))
        assert server.fetches == 1
        server.padding = tokens.MAX_JWKS_BYTES // 2
        assert verify(verifier(server), rsa_signer.sign(claims(vk=VK))).virtual_key_id == VK
    finally:
        server.stop()


def test_a_jwks_with_too_many_keys_is_refused(rsa_signer: Any) -> None:
    others = [SigningKey(f"other-{n}", "RS256", rsa_signer.private) for n in range(tokens.MAX_JWKS_KEYS)]
    server = JwksServer(rsa_signer, *others).start()
    try:
        assert "could not be verified" in rejected(verifier(server), rsa_signer.sign(claims(vk=VK)))
        server.keys = server.keys[:tokens.MAX_JWKS_KEYS]
        assert verify(verifier(server), rsa_signer.sign(claims(vk=VK))).virtual_key_id == VK
    finally:
        server.stop()


def test_cached_token_still_expires(rsa_signer: Any) -> None:
    wall = Clock()
    wall.now = 2_000_000_000.0
    v = MPilotJwtVerifier(JwtSettings(issuer=ISSUER, audience=AUDIENCE, public_key=rsa_signer.public_pem),
                          clock=wall)
    token = rsa_signer.sign({"iss": ISSUER, "aud": AUDIENCE, "sub": "u", "exp": 4_000_000_000, "vk": VK})
    verify(v, token)
    wall.now = 4_000_000_100.0
    assert "expired" in rejected(v, token)


# The attack table: each its own test.

def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_alg_none(rsa_signer: Any) -> None:
    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims(role='admin'))}."
    assert "algorithm" in rejected(verifier(public_key=rsa_signer.public_pem), token)


def test_hs256_signed_with_the_rsa_public_key(rsa_signer: Any) -> None:
    header = b64({"alg": "HS256", "typ": "JWT"})
    payload = b64(claims(role="admin"))
    import hmac

    signature = hmac.new(rsa_signer.public_pem.encode(), f"{header}.{payload}".encode(), "sha256").digest()
    token = f"{header}.{payload}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    assert "algorithm" in rejected(verifier(public_key=rsa_signer.public_pem), token)


def test_expired(jwks: JwksServer, rsa_signer: Any) -> None:
    assert "expired" in rejected(verifier(jwks), rsa_signer.sign(claims(vk=VK, ttl=-60)))


def test_nbf_in_the_future(jwks: JwksServer, rsa_signer: Any) -> None:
    token = rsa_signer.sign(claims(vk=VK, nbf=claims()["iat"] + 3600))
    assert "not valid yet" in rejected(verifier(jwks), token)


def test_wrong_issuer(jwks: JwksServer, rsa_signer: Any) -> None:
    assert "not issued for this proxy" in rejected(verifier(jwks), rsa_signer.sign(claims(vk=VK, iss="https://evil")))


def test_wrong_audience(jwks: JwksServer, rsa_signer: Any) -> None:
    assert "not issued for this proxy" in rejected(verifier(jwks), rsa_signer.sign(claims(vk=VK, aud="other")))


def test_no_exp(jwks: JwksServer, rsa_signer: Any) -> None:
    payload = claims(vk=VK)
    del payload["exp"]
    assert "`exp`" in rejected(verifier(jwks), rsa_signer.sign(payload))


def test_payload_edited_after_signing(jwks: JwksServer, rsa_signer: Any) -> None:
    header, _, signature = rsa_signer.sign(claims(vk=VK)).split(".")
    forged = f"{header}.{b64(claims(role='admin'))}.{signature}"
    assert "could not be verified" in rejected(verifier(jwks), forged)


def test_signed_by_another_key_with_a_known_kid(jwks: JwksServer) -> None:
    impostor = rsa_key("rsa-1")  # same kid as the real key
    assert "could not be verified" in rejected(verifier(jwks), impostor.sign(claims(role="admin")))


def test_forged_admin_role_needs_a_valid_signature(rsa_signer: Any) -> None:
    header, payload, signature = rsa_signer.sign(claims(vk=VK, role="user")).split(".")
    forged = f"{header}.{b64({**json.loads(base64.urlsafe_b64decode(payload + '==')), 'role': 'admin'})}.{signature}"
    assert "could not be verified" in rejected(verifier(public_key=rsa_signer.public_pem), forged)


def test_token_of_20_kb(rsa_signer: Any) -> None:
    token = rsa_signer.sign(claims(vk=VK, padding="x" * 20_000))
    assert "too large" in rejected(verifier(public_key=rsa_signer.public_pem), token)


@pytest.mark.parametrize("token", ["garbage", "eyJ.eyJ.", "eyJhbGciOiJSUzI1NiJ9.notjson.sig", "a.b.c"])
def test_garbage(rsa_signer: Any, token: str) -> None:
    assert rejected(verifier(public_key=rsa_signer.public_pem), token)


def test_not_accepted_without_an_issuer(rsa_signer: Any) -> None:
    v = MPilotJwtVerifier(JwtSettings(public_key=rsa_signer.public_pem))
    assert "not accepted" in rejected(v, rsa_signer.sign(claims(vk=VK)))


def test_token_granting_nothing(rsa_signer: Any) -> None:
    assert "neither" in rejected(verifier(public_key=rsa_signer.public_pem), rsa_signer.sign(claims()))


def test_vk_must_be_a_key_hash(rsa_signer: Any) -> None:
    assert "`vk`" in rejected(verifier(public_key=rsa_signer.public_pem), rsa_signer.sign(claims(vk="sk-bf-raw")))


def test_messages_never_contain_the_token(rsa_signer: Any) -> None:
    token = rsa_signer.sign(claims(vk=VK, iss="https://evil"))
    message = rejected(verifier(public_key=rsa_signer.public_pem), token)
    assert token not in message and token.split(".")[2] not in message


# Without a JWKS server: the key set is handed over by an in-memory fetcher.

def in_memory(*jwks: dict[str, Any], clock: Clock | None = None, **settings: Any) -> MPilotJwtVerifier:
    async def fetch(url: str) -> dict[str, Any]:
        return {"keys": list(jwks)}

    base = {"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": "http://jwks.invalid/keys"}
    return MPilotJwtVerifier(JwtSettings(**{**base, **settings}), fetch_jwks=fetch, clock=clock or time.time)


def test_a_jwks_keys_own_alg_binds_it(rsa_signer: Any) -> None:
    """A key published with `alg: RS256` verifies RS256 tokens only, not PS256 ones signed by the same key."""
    v = in_memory({**rsa_signer.jwk, "alg": "RS256"})
    assert verify(v, rsa_signer.sign(claims(vk=VK))).kid == "rsa-1"
    pss = SigningKey("rsa-1", "PS256", rsa_signer.private)
    assert "could not be verified" in rejected(v, pss.sign(claims(vk=VK)))
    unbound = in_memory(rsa_signer.jwk)  # without `alg`: every RSA algorithm
    assert verify(unbound, pss.sign(claims(vk=VK))).virtual_key_id == VK


def test_a_jwks_key_whose_alg_is_not_its_type_is_unusable(rsa_signer: Any) -> None:
    v = in_memory({**rsa_signer.jwk, "alg": "ES256"})
    assert "could not be verified" in rejected(v, rsa_signer.sign(claims(vk=VK)))


def test_alg_none_with_a_known_kid_is_refused_as_an_algorithm(rsa_signer: Any) -> None:
    token = f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': 'rsa-1'})}.{b64(claims(role='admin'))}."
    assert "algorithm is not accepted" in rejected(in_memory(rsa_signer.jwk), token)


def test_a_token_without_kid_when_only_a_jwks_is_configured(rsa_signer: Any) -> None:
    token = jwt.encode(claims(vk=VK), rsa_signer.private, algorithm="RS256")  # no kid in its header
    assert "algorithm is not accepted" in rejected(in_memory(rsa_signer.jwk), token)


@pytest.mark.parametrize("payload", [claims(vk=VK, sub=""), {k: v for k, v in claims(vk=VK).items() if k != "sub"}])
def test_a_token_without_a_subject_is_refused(payload: dict[str, Any]) -> None:
    secret = "s" * 32
    message = rejected(verifier(secret=secret), jwt.encode(payload, secret, algorithm="HS256"))
    assert message == "MPilot token lacks the required `sub` claim"


def test_without_a_configured_audience_any_aud_is_accepted() -> None:
    secret = "s" * 32
    v = verifier(secret=secret, audience=None)
    assert verify(v, jwt.encode(claims(vk=VK, aud="some-other-service"), secret, algorithm="HS256")).subject
    no_aud = {k: v for k, v in claims(vk=VK, sub="b").items() if k != "aud"}
    assert verify(v, jwt.encode(no_aud, secret, algorithm="HS256")).subject == "b"


def test_a_cached_token_expires_with_the_same_leeway_as_a_fresh_one() -> None:
    """PyJWT accepts a token until `exp + leeway`; the verified cache does too, and not longer."""
    secret, wall = "s" * 32, Clock()
    v = verifier(secret=secret, leeway_seconds=10)
    v._clock = wall
    token = jwt.encode(claims(vk=VK), secret, algorithm="HS256")
    expires_at = verify(v, token).expires_at
    for now, accepted in [(expires_at - 30, True), (expires_at + 9, True), (expires_at + 10, False)]:
        wall.now = now
        if accepted:
            assert verify(v, token).expires_at == expires_at
        else:
            assert "expired" in rejected(v, token)
    assert len(v._verified) == 0  # the expired token left the cache


def test_the_verified_cache_keeps_the_most_recently_used(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s" * 32
    v = verifier(secret=secret, verified_cache_size=2)
    a, b, c = (jwt.encode(claims(vk=VK, sub=name), secret, algorithm="HS256") for name in "abc")
    for token in (a, b, a, c):  # a is used again before c arrives: b is the least recently used
        verify(v, token)
    decoded: list[str] = []
    real_decode = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda *args, **kwargs: decoded.append("x") or real_decode(*args, **kwargs))
    verify(v, a)
    verify(v, c)
    assert decoded == []  # both still cached
    verify(v, b)
    assert decoded == ["x"]  # b was evicted, so verified again


def test_a_token_whose_key_was_withdrawn_leaves_the_cache(rsa_signer: Any) -> None:
    keys = [rsa_signer.jwk]

    async def fetch(url: str) -> dict[str, Any]:
        return {"keys": list(keys)}

    clock = Clock()
    v = MPilotJwtVerifier(JwtSettings(issuer=ISSUER, audience=AUDIENCE, jwks_url="http://jwks.invalid/keys",
                                      jwks_max_age_seconds=60, jwks_cooldown_seconds=10),
                          fetch_jwks=fetch, monotonic=clock)
    token = rsa_signer.sign(claims(vk=VK))
    verify(v, token)
    keys.clear()
    clock.now += 61
    assert "could not be verified" in rejected(v, token)
    assert len(v._verified) == 0


def test_the_jwks_cooldown_and_max_age_edges(rsa_signer: Any) -> None:
    """At most one refetch per cooldown (one exactly a cooldown later is allowed); a set is refetched once
    it is older than its max age (not at exactly its max age)."""
    fetches: list[float] = []
    clock = Clock()

    async def fetch(url: str) -> dict[str, Any]:
        fetches.append(clock.now)
        return {"keys": [rsa_signer.jwk]}

    v = MPilotJwtVerifier(JwtSettings(issuer=ISSUER, audience=AUDIENCE, jwks_url="http://jwks.invalid/keys",
                                      jwks_max_age_seconds=60, jwks_cooldown_seconds=10),
                          fetch_jwks=fetch, monotonic=clock)
    verify(v, rsa_signer.sign(claims(vk=VK)))
    stranger = rsa_key("unknown")
    clock.now += 9.5
    rejected(v, stranger.sign(claims(vk=VK)))
    assert fetches == [1_000.0]
    clock.now = 1_010.0
    rejected(v, stranger.sign(claims(vk=VK, sub="2")))
    assert fetches == [1_000.0, 1_010.0]
    clock.now = 1_070.0  # exactly the max age after the last fetch: the set is still used as it is
    verify(v, rsa_signer.sign(claims(vk=VK, sub="3")))
    assert len(fetches) == 2
    clock.now = 1_070.5
    verify(v, rsa_signer.sign(claims(vk=VK, sub="4")))
    assert fetches[-1] == 1_070.5


def test_the_documented_defaults() -> None:
    """docs/configuration.md: leeway 10 s, JWKS cooldown 30 s and max age 300 s, 10,000 verified tokens."""
    settings = jwt_settings({"issuer": "https://i"})
    assert (settings.leeway_seconds, settings.jwks_cooldown_seconds, settings.jwks_max_age_seconds,
            settings.verified_cache_size) == (10, 30, 300, 10_000)


def test_a_token_of_the_largest_size_is_read() -> None:
    secret = "s" * 32
    v = verifier(secret=secret)

    def token_of(length: int) -> str:
        padding = (length - len(jwt.encode(claims(vk=VK, padding=""), secret, algorithm="HS256"))) * 3 // 4 - 3
        while len(token := jwt.encode(claims(vk=VK, padding="x" * padding), secret, algorithm="HS256")) < length:
            padding += 1
        assert len(token) == length
        return token

    assert verify(v, token_of(8192)).virtual_key_id == VK
    assert "too large" in rejected(v, token_of(8193))


def test_a_public_key_of_an_unsupported_type_accepts_nothing() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed448

    private = ed448.Ed448PrivateKey.generate()
    pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    token = jwt.encode(claims(vk=VK), private, algorithm="EdDSA")
    assert "algorithm is not accepted" in rejected(verifier(public_key=pem), token)


def test_a_failing_jwks_endpoint_is_logged_without_details(caplog: pytest.LogCaptureFixture,
                                                           rsa_signer: Any) -> None:
    async def fetch(url: str) -> dict[str, Any]:
        raise ConnectionError("secret-bearing detail")

    v = MPilotJwtVerifier(JwtSettings(issuer=ISSUER, jwks_url="http://jwks.invalid/keys"), fetch_jwks=fetch)
    with caplog.at_level("WARNING", logger="mpilot.auth"):
        rejected(v, rsa_signer.sign(claims(vk=VK)))
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("mpilot.auth", "MPilot JWKS fetch failed (ConnectionError); keeping 0 cached keys")]


def test_a_jwks_that_is_not_an_object_is_an_error() -> None:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from plugin.auth.tokens import fetch_jwks_over_http

    from .loopback import LoopbackServer, free_port

    async def keys(request: Any) -> JSONResponse:
        return JSONResponse([{"kid": "k"}] if request.url.path == "/list" else {"keys": []})

    port = free_port()
    server = LoopbackServer(Starlette(routes=[Route("/list", keys), Route("/object", keys)]), port)
    server.start()
    try:
        assert asyncio.run(fetch_jwks_over_http(f"http://127.0.0.1:{port}/object")) == {"keys": []}
        with pytest.raises(ValueError, match="JWKS is not a JSON object"):
            asyncio.run(fetch_jwks_over_http(f"http://127.0.0.1:{port}/list"))
    finally:
        server.stop()


@pytest.mark.parametrize(("token", "expected"), [
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", True),
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0", False),
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln.more", False),
    ("sk-bf-" + "a" * 32, False),
    ("abc.def.ghi", False),
])
def test_looks_like_jwt(token: str, expected: bool) -> None:
    assert looks_like_jwt(token) is expected


def test_settings_and_claims_cannot_change_once_made() -> None:
    """One settings object and one cached claims object serve many requests at once."""
    import dataclasses

    secret = "s" * 32
    v = verifier(secret=secret)
    verified = verify(v, jwt.encode(claims(vk=VK, email="alice@example.com"), secret, algorithm="HS256"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        verified.is_admin = True  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.settings.issuer = "https://evil"  # type: ignore[misc]
    assert verified.claims["email"] == "alice@example.com"
    assert "alice@example.com" not in repr(verified)  # the token's other claims stay out of logs
