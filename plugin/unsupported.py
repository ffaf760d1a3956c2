"""The plugin on a LiteLLM release it does not support (see `release.py`): it fails closed. The proxy
keeps serving LiteLLM's own keys and routes; an MPilot token or `sk-bf-` key, which the plugin cannot check
properly there, is refused with 503, and the plugin's routes answer a Cohere-shaped 503 saying why.
Touches only what every LiteLLM release has had: the proxy's app, `ProxyException`, `CustomLogger`."""

from __future__ import annotations

import uuid
from typing import Any

import jwt
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from .cohere.errors import CohereError

try:
    from litellm.integrations.custom_logger import CustomLogger
except Exception:  # noqa: BLE001  # even then the stand-in must load
    CustomLogger = object  # type: ignore[assignment,misc]

ROUTES = (("POST", "/litellm/cohere/v2/chat"), ("POST", "/litellm/cohere/v2/embed"),
          ("POST", "/litellm/cohere/v2/rerank"), ("GET", "/mpilot/key/info"), ("GET", "/litellm/cohere/v1/models"),
          ("GET", "/litellm/cohere/v1/models/{name:path}"), ("POST", "/litellm/cohere/v1/tokenize"),
          ("POST", "/litellm/cohere/v1/detokenize"), ("POST", "/litellm/cohere/v1/embed"))


def is_mpilot_token(token: str) -> bool:
    """An `sk-bf-` key, or a JWT carrying MPilot's `vk` or `role` claims (other JWTs are LiteLLM's)."""
    if token.startswith("sk-bf-"):
        return True
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return False
    return isinstance(claims, dict) and ("vk" in claims or "role" in claims)


async def refuse_mpilot_tokens(request: Request, api_key: str) -> None:
    """`general_settings.custom_auth` on an unsupported release: declines what is not MPilot's (LiteLLM's
    own auth decides) and refuses what is."""
    if not isinstance(api_key, str) or not is_mpilot_token(api_key) or api_key == _master_key():
        return None
    message = "MPilot auth is unavailable: the proxy runs a LiteLLM release the MPilot plugin does not support"
    try:
        from litellm.proxy._types import ProxyException
    except Exception:  # noqa: BLE001  # still refused: LiteLLM answers an exception from custom auth with an error
        raise RuntimeError(message) from None
    raise ProxyException(message=message, type="auth_error", param=None, code=503)


def _master_key() -> str | None:
    try:
        from litellm.proxy import proxy_server

        return getattr(proxy_server, "master_key", None)
    except Exception:  # noqa: BLE001
        return None


class UnsupportedRelease(CustomLogger):  # type: ignore[misc,valid-type]
    """`litellm_settings.callbacks` on an unsupported release: the plugin's routes answer 503."""

    def __init__(self, release: str) -> None:
        super().__init__()
        self.release = release
        try:
            from litellm.proxy.proxy_server import app
        except Exception:  # noqa: BLE001  # no app to serve from: nothing to mount
            return
        router = APIRouter()
        for method, path in ROUTES:
            router.add_api_route(path, self.unavailable, methods=[method], include_in_schema=False)
        before = len(app.router.routes)
        app.include_router(router)
        added = app.router.routes[before:]
        del app.router.routes[before:]
        app.router.routes[0:0] = added  # ahead of the proxy's catch-all routes

    async def unavailable(self, request: Request) -> Any:
        error = CohereError(503, f"the MPilot plugin does not serve on this proxy's LiteLLM release ({self.release});"
                                 " its operator's log says why")
        return JSONResponse(error.body(uuid.uuid4().hex), status_code=503)
