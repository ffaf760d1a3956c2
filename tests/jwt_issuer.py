"""A test MPilot token issuer: signing keys, a real JWKS server on loopback, and token minting."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .loopback import LoopbackServer, free_port

ISSUER = "https://mpilot.test/issuer"
AUDIENCE = "mpilot-gateway"


@dataclass
class SigningKey:
    kid: str
    algorithm: str
    private: Any

    @property
    def public_pem(self) -> str:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    @property
    def jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.algorithm)
        jwk = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig"}

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        return jwt.encode(claims, self.private, algorithm=self.algorithm,
                          headers={"kid": self.kid, **(headers or {})})


def rsa_key(kid: str = "rsa-1", algorithm: str = "RS256") -> SigningKey:
    return SigningKey(kid, algorithm, rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str = "ec-1", algorithm: str = "ES256") -> SigningKey:
    curve = ec.SECP256R1() if algorithm == "ES256" else ec.SECP384R1()
    return SigningKey(kid, algorithm, ec.generate_private_key(curve))


def ed_key(kid: str = "ed-1") -> SigningKey:
    return SigningKey(kid, "EdDSA", ed25519.Ed25519PrivateKey.generate())


def claims(subject: str = "user-1", ttl: float = 300, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "iat": now, "exp": now + ttl, **extra}


class JwksServer:
    """Serves `/.well-known/jwks.json` from `keys`; `down` makes it answer 503."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys = list(keys)
        self.down = False
        self.padding = 0  # characters of an extra member, to make the document large
        self.fetches = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/.well-known/jwks.json"
        app = Starlette(routes=[Route("/.well-known/jwks.json", self._jwks)])
        self._server = LoopbackServer(app, self.port)

    def start(self) -> JwksServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    async def _jwks(self, request: Request) -> JSONResponse:
        self.fetches += 1
        if self.down:
            return JSONResponse({"error": "down"}, status_code=503)
        document: dict[str, Any] = {"keys": [key.jwk for key in self.keys]}
        if self.padding:
            document["padding"] = "x" * self.padding
        return JSONResponse(document)
