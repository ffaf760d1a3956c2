"""Every other path under `/litellm/cohere/`: a Cohere-shaped 404 naming it and what is served (405 for a
served path asked with another method), instead of FastAPI's `{"detail": "Not Found"}`, which Cohere's SDKs
cannot read as an error of theirs."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .. import host
from ..cohere.errors import CohereError, redact
from ..cohere.wire import dumps

PREFIX = "/litellm/cohere/"
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

router = APIRouter()


@router.api_route(PREFIX + "{rest:path}", methods=METHODS, include_in_schema=False)
async def no_cohere_endpoint(request: Request) -> Response:
    """No auth: it says only what the proxy's API docs say too. A served path asked with another method is
    a 405 naming the methods it takes (in `Allow` too), as Starlette answers; any other path, a 404."""
    path = redact(request.url.path)[:200]
    allowed = host.methods_served_at(request.scope, PREFIX)
    if allowed:
        error = CohereError(405, f"{path} takes {', '.join(allowed)}, not {request.method}",
                            code="method_not_allowed", headers={"Allow": ", ".join(allowed)})
    else:
        served = ", ".join(host.served_paths(PREFIX))
        error = CohereError(404, f"no Cohere endpoint {request.method} {path} here; served: {served}",
                            code="endpoint_not_found")
    return Response(content=dumps(error.body(uuid.uuid4().hex)), status_code=error.status,
                    media_type="application/json", headers=error.headers)
