"""The README's first command: the shipped config.yaml, unchanged, serves the embedded `demo` model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cohere
import httpx
import pytest
import yaml

from .harness import SHIPPED_CONFIG, ProxyProcess
from .jwt_issuer import claims, rsa_key

KEY = "sk-shipped-config-check"


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    # As scripts/serve runs it: this config file in place (the plugin is found next to it).
    process = ProxyProcess(SHIPPED_CONFIG, tmp_path_factory.mktemp("shipped"),
                           env={"LITELLM_MASTER_KEY": KEY}).start()
    yield process
    process.stop()


def test_jwts_are_refused_without_an_issuer(shipped: ProxyProcess) -> None:
    token = rsa_key().sign(claims(role="admin"))
    response = httpx.post(f"{shipped.url}/litellm/cohere/v2/chat", headers={"Authorization": f"Bearer {token}"},
                          json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 401
    assert "not accepted" in response.json()["message"]


def demo_answer() -> str:
    config = yaml.safe_load(Path(SHIPPED_CONFIG).read_text())
    demo = next(m for m in config["model_list"] if m["model_name"] == "demo")
    return demo["litellm_params"]["mock_response"]


def test_demo_model_answers_through_the_sdk(shipped: ProxyProcess) -> None:
    co = cohere.ClientV2(api_key=KEY, base_url=f"{shipped.url}/litellm/cohere", max_retries=0)
    response = co.chat(model="demo", messages=[{"role": "user", "content": "hi"}])
    assert response.message.content[0].text == demo_answer()
    assert response.usage.tokens.output_tokens > 0

    events = list(co.chat_stream(model="demo", messages=[{"role": "user", "content": "hi"}]))
    text = "".join(e.delta.message.content.text for e in events if e.type == "content-delta")
    assert text == demo_answer()
    assert events[-1].type == "message-end" and events[-1].delta.finish_reason == "COMPLETE"
