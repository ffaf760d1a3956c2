"""`GET /mpilot/key/info`: the calling virtual key's limits and spend (an admin may name any key)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from .. import host
from ..auth.hook import KEY_INFO_PATH, STORE_DOWN_MESSAGE, STORE_RETRY_SECONDS, mpilot_auth
from ..cohere.errors import CohereError
from ..limits.keys import VirtualKey, team_spend_counter, user_spend_counter
from ..limits.ledger import StoreUnavailable
from .chat import error_response

PATH = KEY_INFO_PATH

router = APIRouter()


@router.get(PATH, tags=["MPilot"])
async def key_info(
    caller: Annotated[host.Caller | CohereError, Depends(host.caller_or_refusal)],
    key_id: str | None = None,
) -> Response:
    if isinstance(caller, CohereError):
        return error_response(caller)
    auth = mpilot_auth()
    if key_id is not None:
        if not host.is_admin(caller):
            return error_response(CohereError(403, "only an admin may ask about another key's info"))
        key = await _find(key_id)
    else:
        key = await auth.find_key(caller.token or "")
        if key is None:
            return error_response(CohereError(400, "this token is not a virtual key; an admin passes ?key_id="))
    if key is None:
        return error_response(CohereError(404, "no virtual key with that id", code="key_not_found"))
    try:
        return JSONResponse(await _described(key))
    except StoreUnavailable:
        return error_response(CohereError(503, STORE_DOWN_MESSAGE, headers={"retry-after": str(STORE_RETRY_SECONDS)}))


async def _described(key: VirtualKey) -> dict[str, Any]:
    auth = mpilot_auth()
    now = datetime.now(UTC)
    described = describe(key, await auth.spend(key, now), now)
    if auth.tracks_spend(key):  # else LiteLLM keeps user and team spend in its database
        described["user_spend"] = float(await auth.counted_spend(user_spend_counter(key.user_id))) \
            if key.user_id else None
        described["team_spend"] = float(await auth.counted_spend(team_spend_counter(key.team_id))) \
            if key.team_id else None
    return described


async def _find(key_id: str) -> VirtualKey | None:
    auth = mpilot_auth()
    if len(key_id) == 64:
        return await auth.find_key(key_id.lower())
    matches = [key for key in auth.keys.values() if key.key_id.startswith(key_id.lower())]
    return matches[0] if len(key_id) >= 8 and len(matches) == 1 else None


def describe(key: VirtualKey, spend: Decimal, now: datetime) -> dict[str, Any]:
    window = key.budget_window(now)
    return {
        "key_id": key.display_id,
        "key_alias": key.alias,
        "source": key.source,
        "models": list(key.models),
        "max_budget": key.max_budget,
        "budget_duration": key.budget_duration,
        "budget_window_start": datetime.fromtimestamp(window, UTC).isoformat() if window is not None else None,
        "spend": float(spend),
        "rpm_limit": key.rpm_limit,
        "tpm_limit": key.tpm_limit,
        "expires": key.expires.isoformat() if key.expires else None,
        "blocked": key.blocked,
        "user_id": key.user_id,
        "team_id": key.team_id,
    }
