"""The 404 for unknown paths under /litellm/cohere/ sits behind every route of the plugin, whenever those
were mounted, and ahead of the proxy's own routes (which include catch-alls of their own)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from litellm.proxy import proxy_server

from plugin import host
from plugin.routes import chat, key_info, not_found


def test_the_catch_all_stays_behind_plugin_routes_mounted_before_and_after_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    app = FastAPI()

    @app.api_route("/{anything:path}", methods=["GET", "POST"])
    async def proxys_own_catch_all() -> dict[str, Any]:  # as LiteLLM's pass-through routes are
        return {"proxy": True}

    monkeypatch.setattr(proxy_server, "app", app)
    host.mount(key_info.router)
    host.mount_after_plugin_routes(not_found.router)
    host.mount(chat.router)  # e.g. the embed and rerank routes, mounted after it
    host.mount_after_plugin_routes(not_found.router)  # again: LiteLLM may load the plugin twice

    paths = [[getattr(r, "path", None) for r in host.app._routes_in(entry)] for entry in app.router.routes]
    flat = [path for entry in paths for path in entry]
    catch_all = flat.index("/litellm/cohere/{rest:path}")
    assert flat.count("/litellm/cohere/{rest:path}") == 1
    assert flat.index("/litellm/cohere/v2/chat") < catch_all and flat.index("/mpilot/key/info") < catch_all
    assert catch_all < flat.index("/{anything:path}")

    client = TestClient(app)
    missing = client.get("/litellm/cohere/v1/nothing")
    assert missing.status_code == 404
    assert "no Cohere endpoint GET /litellm/cohere/v1/nothing here; served: POST /litellm/cohere/v2/chat" \
        in missing.json()["message"]
    assert client.get("/somewhere/else").json() == {"proxy": True}



def test_mounting_a_router_twice_serves_it_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """LiteLLM runs a config-referenced module once per reference (and FastAPI 0.165 wraps included routers)."""
    app = FastAPI()
    monkeypatch.setattr(proxy_server, "app", app)
    host.mount(chat.router)
    host.mount(chat.router)
    flat = [getattr(r, "path", None) for entry in app.router.routes for r in host.app._routes_in(entry)]
    assert flat.count("/litellm/cohere/v2/chat") == 1
