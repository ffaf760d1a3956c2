"""MPilot JWT verification against a real JWKS server on loopback, with a controllable clock."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from plugin.auth.tokens import JwtSettings, MPilotJwtVerifier, TokenRejected

from .jwt_issuer import AUDIENCE, ISSUER, JwksServer, claims, ec_key, ed_key, rsa_key

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
