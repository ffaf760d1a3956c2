"""`GET /mpilot/health/readiness`: whether this proxy can reach its limits store, for a load balancer
to drain one that cannot (LiteLLM's own `/health/readiness` does not ask it); `GET /mpilot/version`: the
plugin's release and LiteLLM's. Unauthenticated, as LiteLLM's health routes are; they say nothing of any key."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from .. import __version__, host
from ..auth.hook import mpilot_auth

PATH = "/mpilot/health/readiness"
VERSION_PATH = "/mpilot/version"

router = APIRouter()


@router.get(PATH, tags=["MPilot"])
async def readiness() -> JSONResponse:
    auth = mpilot_auth()
    store = auth.ledger()
    ready = await store.ready()
    body = {
        "status": "ready" if ready else "unavailable",
        "limits_store": {"kind": store.kind, "state": "up" if ready else "down", "reason": store.reason},
        "on_store_down": auth.limits.on_store_down,
        "journal": {"pending": auth.journal().pending},
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get(VERSION_PATH, tags=["MPilot"])
async def version() -> JSONResponse:
    return JSONResponse({"plugin": __version__, "litellm": host.litellm_release()})
