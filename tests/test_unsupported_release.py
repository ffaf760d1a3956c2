"""On a LiteLLM release the plugin does not support, the proxy still starts, one line says why, and the
plugin fails closed: MPilot tokens and sk-bf- keys are refused with 503, the Cohere route answers a
Cohere-shaped 503, and LiteLLM's own keys keep working."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from plugin import release

from .fake_upstream import FakeUpstream
from .harness import MASTER_KEY, REPO, ProxyProcess, proxy_config_for, virtual_key

COHERE_ROUTE = "/litellm/cohere/v2/chat"
CHAT = {"model": "fake", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(("running", "reason"), [
    ("1.107.0", "LiteLLM 1.107.0 was withdrawn after a supply-chain compromise"),
    ("1.99.4", "LiteLLM 1.99.4 is not supported"),
    ("1.111.0", "LiteLLM 1.111.0 is not supported"),
    ("2.0.0", "LiteLLM 2.0.0 is not supported"),
    ("unknown", "LiteLLM unknown is not a release the plugin knows"),
    ("1.100.0", None), ("1.104.9", None), ("1.107.1", None), ("1.110.2", None), ("1.110.3.dev1", None),
])
def test_which_releases_are_supported(running: str, reason: str | None) -> None:
    assert release.unsupported_reason(running) == reason


def test_a_plugin_that_cannot_load_gives_way_to_its_stand_ins(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(release, "_loaded", None)
    monkeypatch.setitem(sys.modules, "plugin.entry", None)  # importing it raises ImportError, as a moved symbol does
    auth, callback = release.load_plugin()
    assert auth.__name__ == "refuse_mpilot_tokens" and type(callback).__name__ == "UnsupportedRelease"
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("MPilot plugin:")]
    assert line.startswith(f"MPilot plugin: the plugin cannot load on LiteLLM {release.running_release()} "
                           "(ModuleNotFoundError: ")
    assert "(supported: 1.100.x to 1.110.x, never 1.107.0)" in line


@pytest.fixture(scope="module", params=["1.99.4", "1.107.0"])
def pretending(request: pytest.FixtureRequest, upstream: FakeUpstream,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ProxyProcess]]:
    """A proxy whose plugin reads LiteLLM's release as an unsupported one (tests/pretend_release)."""
    pretended = request.param
    proxy = ProxyProcess(proxy_config_for(upstream), Path(tmp_path_factory.mktemp(f"release-{pretended}")),
                         env={"MPILOT_TEST_LITELLM_RELEASE": pretended,
                              "PYTHONPATH": f"{REPO / 'tests' / 'pretend_release'}:{REPO}"}).start()
    try:
        yield pretended, proxy
    finally:
        proxy.stop()


def test_one_line_says_why(pretending: tuple[str, ProxyProcess]) -> None:
    pretended, proxy = pretending
    lines = [line for line in proxy.log().splitlines() if line.startswith("MPilot plugin:")]
    assert lines == [f"MPilot plugin: {release.unsupported_reason(pretended)} (supported: 1.100.x to 1.110.x, "
                     "never 1.107.0); MPilot tokens and sk-bf- keys are refused with 503 and "
                     "/litellm/cohere/v2/chat answers 503 until the proxy runs a supported release"]
    assert "Traceback" not in proxy.log()


@pytest.mark.parametrize("token", [virtual_key("cfg", "open"), jwt.encode({"vk": "a" * 64}, "s" * 32, "HS256"),
                                   jwt.encode({"role": "admin", "sub": "ops"}, "s" * 32, "HS256")],
                         ids=["sk-bf", "vk-jwt", "admin-jwt"])
def test_mpilot_tokens_are_refused_on_every_route(pretending: tuple[str, ProxyProcess], fake: FakeUpstream,
                                                  token: str) -> None:
    _, proxy = pretending
    headers = {"Authorization": f"Bearer {token}"}
    openai = httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT, headers=headers, timeout=30)
    assert openai.status_code == 503, openai.text
    assert "MPilot plugin does not support" in openai.text
    cohere = httpx.post(f"{proxy.url}{COHERE_ROUTE}", json=CHAT, headers=headers, timeout=30)
    assert cohere.status_code == 503
    assert fake.requests == []


def test_the_cohere_route_answers_503_in_cohere_shape(pretending: tuple[str, ProxyProcess],
                                                      fake: FakeUpstream) -> None:
    pretended, proxy = pretending
    answer = httpx.post(f"{proxy.url}{COHERE_ROUTE}", json=CHAT, headers={"Authorization": f"Bearer {MASTER_KEY}"},
                        timeout=30)
    assert answer.status_code == 503
    body = answer.json()
    assert set(body) == {"type", "message", "code", "id"} and body["code"] == "service_unavailable"
    assert body["message"] == (f"the MPilot plugin does not serve on this proxy's LiteLLM release ({pretended}); "
                               "its operator's log says why")
    for path, request in (("/litellm/cohere/v2/embed", {"model": "fake-embed", "input_type": "search_query",
                                                        "texts": ["hi"]}),
                          ("/litellm/cohere/v2/rerank", {"model": "fake-rerank", "query": "hi", "documents": ["hi"]}),
                          ("/litellm/cohere/v1/embed", {"model": "fake-embed", "texts": ["hi"]})):
        answer = httpx.post(f"{proxy.url}{path}", json=request, headers={"Authorization": f"Bearer {MASTER_KEY}"},
                            timeout=30)
        assert answer.status_code == 503 and answer.json()["message"] == body["message"], answer.text
    assert fake.requests == []


@pytest.mark.parametrize(("method", "path"), [("GET", "/litellm/cohere/v1/models"),
                                              ("GET", "/litellm/cohere/v1/models/fake"),
                                              ("POST", "/litellm/cohere/v1/tokenize")])
def test_the_cohere_models_and_tokenizer_routes_answer_503_too(pretending: tuple[str, ProxyProcess],
                                                              method: str, path: str) -> None:
    _, proxy = pretending
    answer = httpx.request(method, proxy.url + path, json={"text": "hi", "model": "fake"},
                           headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30)
    assert answer.status_code == 503, answer.text
    assert answer.json()["code"] == "service_unavailable"


def test_litellms_own_keys_keep_working(pretending: tuple[str, ProxyProcess], fake: FakeUpstream) -> None:
    _, proxy = pretending
    answer = httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT,
                        headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert len(fake.requests) == 1
