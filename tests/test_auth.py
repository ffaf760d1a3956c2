"""Who may call, through the real proxy: virtual keys (config and key store), MPilot JWTs, limits, spend."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from typing import Any

import cohere
import cohere.core
import cohere.errors
import httpx
import jwt as pyjwt
import pytest

from .fake_upstream import FakeUpstream, Reply
from .harness import HS_SECRET, MASTER_KEY, SOURCES, ProxyProcess, virtual_key, wait_for
from .jwt_issuer import JwksServer, claims, ec_key, rsa_key

PATH = "/litellm/cohere/v2/chat"
USER = [{"role": "user", "content": "hi"}]
MINTED: list[str] = []  # every JWT the tests send, checked against the proxy's log at the end


def key_id(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def client(proxy: ProxyProcess, token: str) -> cohere.ClientV2:
    return cohere.ClientV2(api_key=token, base_url=f"{proxy.url}/litellm/cohere", max_retries=0, timeout=30)


def chat(proxy: ProxyProcess, token: str, model: str = "fake") -> Any:
    return client(proxy, token).chat(model=model, messages=USER)


def raw_chat(proxy: ProxyProcess, token: str, model: str = "fake", **body: Any) -> httpx.Response:
    return httpx.post(proxy.url + PATH, json={"model": model, "messages": USER, **body},
                      headers={"Authorization": f"Bearer {token}"}, timeout=30)


def info(proxy: ProxyProcess, token: str, **params: str) -> dict[str, Any]:
    response = httpx.get(f"{proxy.url}/mpilot/key/info", params=params,
                         headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_spend(proxy: ProxyProcess, token: str, at_least: float, timeout: float = 10) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        spend = info(proxy, token)["spend"]
        if spend >= at_least * 0.999:  # float sums of prices
            return spend
        time.sleep(0.05)
    raise AssertionError(f"spend did not reach {at_least}")


def mint(signer: Any, **extra: Any) -> str:
    token = signer.sign(claims(**extra))
    MINTED.append(token)
    return token


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"type", "message", "code", "id"}
    return body["message"]


# --- virtual keys, from config.yaml and from the proxy's key store ---------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_open_key_answers(proxy: ProxyProcess, fake: FakeUpstream, source: str) -> None:
    token = virtual_key(source, "open")
    assert chat(proxy, token).message.content[0].text == "Hello from the fake upstream."
    described = info(proxy, token)
    assert described["key_id"] == key_id(token)[:12]
    assert described["source"] == ("config" if source == "cfg" else "proxy")
    assert token not in json.dumps(described)


def test_unknown_virtual_key_is_401(proxy: ProxyProcess) -> None:
    assert "unknown virtual key" in error_of(raw_chat(proxy, "sk-bf-no-such-key-000000"), 401)
    with pytest.raises(cohere.errors.UnauthorizedError):
        chat(proxy, "sk-bf-no-such-key-000000")


@pytest.mark.parametrize("source", SOURCES)
def test_blocked_key_is_403(proxy: ProxyProcess, source: str) -> None:
    assert "is blocked" in error_of(raw_chat(proxy, virtual_key(source, "blocked")), 403)
    with pytest.raises(cohere.errors.ForbiddenError):
        chat(proxy, virtual_key(source, "blocked"))


@pytest.mark.parametrize("source", SOURCES)
def test_expired_key_is_401(proxy: ProxyProcess, source: str) -> None:
    assert "has expired" in error_of(raw_chat(proxy, virtual_key(source, "expired")), 401)


ALLOWED_MODELS = [
    pytest.param("models", "fake", "fake-b", id="list"),
    pytest.param("group", "fake-b", "fake", id="access-group"),
    pytest.param("wildcard", "fake-b", "demo", id="wildcard"),
]


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize(("name", "allowed", "denied"), ALLOWED_MODELS)
def test_model_allow_list(proxy: ProxyProcess, fake: FakeUpstream, source: str, name: str, allowed: str,
                          denied: str) -> None:
    token = virtual_key(source, name)
    assert chat(proxy, token, allowed).finish_reason == "COMPLETE"
    with pytest.raises(cohere.errors.ForbiddenError):
        chat(proxy, token, denied)
    assert f"may not use model '{denied}'" in error_of(raw_chat(proxy, token, denied), 403)


def tool(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}}


@pytest.mark.parametrize("source", SOURCES)
def test_allowed_tools_of_the_key_apply(proxy: ProxyProcess, fake: FakeUpstream, source: str) -> None:
    """LiteLLM's own tool allow-list (`metadata.allowed_tools` of a key or team) guards this route too."""
    token = virtual_key(source, "tools")
    answer = client(proxy, token).chat(model="fake", messages=USER, tools=[tool("get_weather")])
    assert answer.finish_reason == "COMPLETE"
    assert [t["function"]["name"] for t in fake.requests[-1].body["tools"]] == ["get_weather"]
    sent = len(fake.requests)
    refused = raw_chat(proxy, token, tools=[tool("get_weather"), tool("delete_everything")])
    assert "delete_everything" in error_of(refused, 403)
    assert "get_weather'" not in refused.json()["message"]
    with pytest.raises(cohere.errors.ForbiddenError):
        client(proxy, token).chat(model="fake", messages=USER, tools=[tool("delete_everything")])
    assert len(fake.requests) == sent  # nothing refused reached the provider
    assert raw_chat(proxy, virtual_key(source, "open"), tools=[tool("delete_everything")]).status_code == 200


@pytest.mark.parametrize("source", SOURCES)
def test_budget_exhausted_is_402(proxy: ProxyProcess, fake: FakeUpstream, source: str) -> None:
    """A call is admitted only while the most it may cost fits what is left of the budget."""
    token = virtual_key(source, "budget")  # $0.00004; each answer costs $0.000025 (11 tokens in, 7 out)
    chat(proxy, token)  # reserved as at most ~$0.000024: input tokens counted, 8 output tokens by default
    assert wait_for_spend(proxy, token, 0.000025) == 0.000025  # exactly: money is counted in nano-dollars
    message = error_of(raw_chat(proxy, token), 402)  # $0.000015 left, less than the next call may cost
    assert "has $0.000015 of its $0.00004 budget left" in message and "may cost up to $0.0000" in message
    assert len(fake.requests) == 1
    # A smaller max_tokens fits; the fake upstream then bills more than it was asked for (7 tokens, not 1):
    # the overshoot is what the estimate missed.
    assert raw_chat(proxy, token, max_tokens=1).status_code == 200
    assert wait_for_spend(proxy, token, 0.00005) == 0.00005
    assert "has exceeded its budget of $0.00004 (spent $0.00005)" in error_of(raw_chat(proxy, token), 402)
    with pytest.raises(cohere.core.ApiError) as raised:
        chat(proxy, token)
    assert raised.value.status_code == 402
    assert len(fake.requests) == 2


@pytest.mark.parametrize("source", SOURCES)
def test_budget_duration_starts_a_new_window(proxy: ProxyProcess, fake: FakeUpstream, source: str) -> None:
    token = virtual_key(source, "window")  # $0.00003 per 10 s window, epoch-aligned
    if time.time() % 10 > 6:
        time.sleep(10 - time.time() % 10 + 0.2)  # start at the beginning of a window
    chat(proxy, token)
    wait_for_spend(proxy, token, 0.000025)
    error_of(raw_chat(proxy, token), 402)
    time.sleep(10 - time.time() % 10 + 0.2)  # the next window
    assert info(proxy, token)["spend"] == 0
    assert chat(proxy, token).finish_reason == "COMPLETE"


@pytest.mark.parametrize("source", SOURCES)
def test_rpm_limit_is_429_with_retry_after(proxy: ProxyProcess, fake: FakeUpstream, source: str) -> None:
    token = virtual_key(source, "rpm")  # 2 requests a minute
    chat(proxy, token)
    chat(proxy, token)
    response = raw_chat(proxy, token)
    error_of(response, 429)
    assert int(response.headers["retry-after"]) > 0
    assert token not in response.text and key_id(token) not in response.text
    with pytest.raises(cohere.errors.TooManyRequestsError):
        chat(proxy, token)


@pytest.mark.parametrize("source", SOURCES)
def test_tpm_limit_is_429(proxy: ProxyProcess, fake: FakeUpstream, source: str) -> None:
    token = virtual_key(source, "tpm")  # 25 tokens a minute; each answer uses 18
    statuses = [raw_chat(proxy, token).status_code for _ in range(4)]
    assert statuses[0] == 200
    assert 429 in statuses


@pytest.mark.parametrize("source", SOURCES)
def test_spend_is_recorded_when_the_client_disconnects_mid_stream(proxy: ProxyProcess, fake: FakeUpstream,
                                                                  source: str) -> None:
    token = virtual_key(source, "stream")
    fake.script(Reply(text="y" * 400, chunk_delay=0.05))
    with httpx.Client(base_url=proxy.url, timeout=10) as http, http.stream(
            "POST", PATH, json={"model": "fake", "messages": USER, "stream": True},
            headers={"Authorization": f"Bearer {token}"}) as response:
        for line in response.iter_lines():
            if '"content-delta"' in line:
                break
    assert wait_for_spend(proxy, token, 1e-9) > 0


@pytest.mark.parametrize("source", SOURCES)
def test_a_client_that_leaves_a_non_stream_call_cancels_it_and_pays_nothing(proxy: ProxyProcess,
                                                                            fake: FakeUpstream, source: str) -> None:
    token = virtual_key(source, "leave")
    fake.script(Reply(delay=3))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{proxy.url}{PATH}", json={"model": "fake", "messages": USER},
                   headers={"Authorization": f"Bearer {token}"}, timeout=0.5)
    # The proxy closes the upstream call long before its answer was due, and frees the reservation: the
    # key's budget fits one reservation at a time, so the next call is admitted only if it was released.
    wait_for(lambda: fake.abandoned == 1, timeout=2)
    assert info(proxy, token)["spend"] == 0
    assert raw_chat(proxy, token).status_code == 200
    assert wait_for_spend(proxy, token, 1e-9) == pytest.approx(0.000025)


def test_spend_goes_to_the_keys_user_and_team(proxy: ProxyProcess, fake: FakeUpstream) -> None:
    token = virtual_key("cfg", "open")
    response = raw_chat(proxy, token)
    call_id = response.headers["x-litellm-call-id"]
    deadline = time.monotonic() + 10
    record = None
    while record is None and time.monotonic() < deadline:
        record = next((r for r in proxy.spend_records() if r["call_id"] == call_id), None)
        time.sleep(0.05)
    assert record is not None
    assert (record["key_hash"], record["user_id"], record["team_id"]) == (key_id(token), "user-open", "team-open")
    # The plugin's own counters (no database here) carry it to the key's user and team as well.
    described = info(proxy, token)
    assert described["user_spend"] >= record["response_cost"] * 0.999
    assert described["team_spend"] >= record["response_cost"] * 0.999


def test_key_info_for_another_key_needs_an_admin(proxy: ProxyProcess) -> None:
    target = key_id(virtual_key("cfg", "budget"))
    described = info(proxy, MASTER_KEY, key_id=target)
    assert described["key_id"] == target[:12] and described["max_budget"] == 0.00004
    response = httpx.get(f"{proxy.url}/mpilot/key/info", params={"key_id": target},
                         headers={"Authorization": f"Bearer {virtual_key('cfg', 'open')}"})
    assert error_of(response, 403)


# --- MPilot JWTs ----------------------------------------------------------------------------------------


def test_admin_jwt_may_use_any_model_and_its_sub_is_charged(proxy: ProxyProcess, fake: FakeUpstream,
                                                            jwks: JwksServer) -> None:
    token = mint(jwks.keys[0], role="admin", sub="admin-alice")
    assert chat(proxy, token, "fake-b").finish_reason == "COMPLETE"
    response = raw_chat(proxy, token, "demo")
    assert response.status_code == 200
    call_id = response.headers["x-litellm-call-id"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        record = next((r for r in proxy.spend_records() if r["call_id"] == call_id), None)
        if record:
            break
        time.sleep(0.05)
    assert record and record["user_id"] == "admin-alice" and record["response_cost"] > 0
    # An admin may read any key's info, and use the proxy's admin routes.
    assert info(proxy, token, key_id=key_id(virtual_key("cfg", "open")))["key_alias"] == "cfg-open"
    admin_route = httpx.get(f"{proxy.url}/router/settings", headers={"Authorization": f"Bearer {token}"})
    assert admin_route.status_code == 200, admin_route.text


@pytest.mark.parametrize("source", SOURCES)
def test_virtual_key_jwt_acts_as_its_key(proxy: ProxyProcess, fake: FakeUpstream, jwks: JwksServer,
                                         source: str) -> None:
    token = mint(jwks.keys[1], vk=key_id(virtual_key(source, "jwt")))  # the EC key
    assert chat(proxy, token, "fake").finish_reason == "COMPLETE"
    assert "may not use model" in error_of(raw_chat(proxy, token, "fake-b"), 403)
    assert info(proxy, token)["key_alias"] == f"{source}-jwt"


def test_hs256_jwt_with_the_shared_secret(proxy: ProxyProcess, fake: FakeUpstream) -> None:
    token = pyjwt.encode(claims(vk=key_id(virtual_key("cfg", "jwt"))), HS_SECRET, algorithm="HS256")
    MINTED.append(token)
    assert chat(proxy, token).finish_reason == "COMPLETE"


@pytest.mark.parametrize(("name", "status", "fragment"), [
    ("blocked", 403, "is blocked"), ("expired", 401, "has expired")])
def test_jwt_for_a_blocked_or_expired_key(proxy: ProxyProcess, jwks: JwksServer, name: str, status: int,
                                          fragment: str) -> None:
    token = mint(jwks.keys[0], vk=key_id(virtual_key("cfg", name)))
    assert fragment in error_of(raw_chat(proxy, token), status)


def test_jwt_for_an_unknown_key(proxy: ProxyProcess, jwks: JwksServer) -> None:
    token = mint(jwks.keys[0], vk=hashlib.sha256(b"sk-bf-nobody").hexdigest())
    assert "unknown virtual key" in error_of(raw_chat(proxy, token), 401)


def test_jwt_vk_never_names_the_master_key(proxy: ProxyProcess, fake: FakeUpstream, jwks: JwksServer) -> None:
    """LiteLLM caches the master key's auth object in the key cache the hook reads: a `vk` naming it must
    not make an MPilot token a caller without limits."""
    assert chat(proxy, MASTER_KEY).finish_reason == "COMPLETE"  # now in LiteLLM's key cache
    token = mint(jwks.keys[0], vk=key_id(MASTER_KEY))
    assert "unknown virtual key" in error_of(raw_chat(proxy, token), 401)
    openai = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "fake", "messages": USER},
                        headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert openai.status_code == 401
    assert len(fake.requests) == 1  # only the master key's own call


@pytest.mark.parametrize("name", ["admin-owned", "ui-session"])
def test_store_entries_that_are_not_plain_virtual_keys_are_unknown(proxy: ProxyProcess, fake: FakeUpstream,
                                                                   jwks: JwksServer, name: str) -> None:
    """An admin's own key or a UI session in the key store is no virtual key, by `sk-bf-` or by `vk`."""
    raw = virtual_key("store", name)
    assert "unknown virtual key" in error_of(raw_chat(proxy, raw), 401)
    assert "unknown virtual key" in error_of(raw_chat(proxy, mint(jwks.keys[0], vk=key_id(raw))), 401)
    assert fake.requests == []


def test_an_unexpected_failure_in_the_hook_refuses_with_500(proxy: ProxyProcess, fake: FakeUpstream) -> None:
    """Fail closed and loudly: never a decline that hands the token to LiteLLM's own auth."""
    raw = virtual_key("store", "unreadable")  # its stored expiry is not a time
    message = error_of(raw_chat(proxy, raw), 500)
    assert "could not check this request" in message and raw not in message
    openai = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "fake", "messages": USER},
                        headers={"Authorization": f"Bearer {raw}"}, timeout=30)
    assert openai.status_code == 500 and raw not in openai.text
    assert fake.requests == []
    assert "MPilot auth failed unexpectedly" in proxy.log()


def test_new_signing_key_accepted_after_jwks_refetch(proxy: ProxyProcess, fake: FakeUpstream,
                                                     jwks: JwksServer) -> None:
    rotated = rsa_key("rsa-rotated")
    jwks.keys.append(rotated)
    time.sleep(1.1)  # the proxy's refetch cooldown is 1 s in the test config
    assert chat(proxy, mint(rotated, vk=key_id(virtual_key("cfg", "jwt")))).finish_reason == "COMPLETE"


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def attack_alg_none(jwks: JwksServer) -> str:
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims(role='admin'))}."


def attack_hs256_with_public_key(jwks: JwksServer) -> str:
    header, payload = b64({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}), b64(claims(role="admin"))
    pem = jwks.keys[0].public_pem.encode()
    signature = hmac.new(pem, f"{header}.{payload}".encode(), "sha256").digest()
    return f"{header}.{payload}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def attack_expired(jwks: JwksServer) -> str:
    return jwks.keys[0].sign(claims(role="admin", ttl=-120))


def attack_nbf_future(jwks: JwksServer) -> str:
    return jwks.keys[0].sign(claims(role="admin", nbf=int(time.time()) + 3600))


def attack_wrong_iss(jwks: JwksServer) -> str:
    return jwks.keys[0].sign(claims(role="admin", iss="https://evil.example"))


def attack_wrong_aud(jwks: JwksServer) -> str:
    return jwks.keys[0].sign(claims(role="admin", aud="someone-else"))


def attack_no_exp(jwks: JwksServer) -> str:
    payload = claims(role="admin")
    del payload["exp"]
    return jwks.keys[0].sign(payload)


def attack_edited_payload(jwks: JwksServer) -> str:
    header, _, signature = jwks.keys[0].sign(claims(vk=key_id(virtual_key("cfg", "jwt")))).split(".")
    return f"{header}.{b64(claims(role='admin'))}.{signature}"


def attack_other_key(jwks: JwksServer) -> str:
    return rsa_key("rsa-1").sign(claims(role="admin"))  # a known kid, another key


def attack_forged_admin(jwks: JwksServer) -> str:
    return ec_key("ec-unknown").sign(claims(role="admin"))


def attack_20kb(jwks: JwksServer) -> str:
    return jwks.keys[0].sign(claims(role="admin", padding="x" * 20_000))


def attack_garbage(jwks: JwksServer) -> str:
    return "eyJnot.a.jwt"


def attack_vk_names_the_master_key(jwks: JwksServer) -> str:
    """A validly signed token whose `vk` names LiteLLM's cached master-key entry, not a virtual key."""
    return jwks.keys[0].sign(claims(vk=key_id(MASTER_KEY)))


def attack_vk_names_an_admins_key(jwks: JwksServer) -> str:
    return jwks.keys[0].sign(claims(vk=key_id(virtual_key("store", "admin-owned"))))


def attack_vk_names_a_ui_session(jwks: JwksServer) -> str:
    return jwks.keys[0].sign(claims(vk=key_id(virtual_key("store", "ui-session"))))


ATTACKS = [attack_alg_none, attack_hs256_with_public_key, attack_expired, attack_nbf_future, attack_wrong_iss,
           attack_wrong_aud, attack_no_exp, attack_edited_payload, attack_other_key, attack_forged_admin,
           attack_20kb, attack_garbage, attack_vk_names_the_master_key, attack_vk_names_an_admins_key,
           attack_vk_names_a_ui_session]


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.__name__.removeprefix("attack_") for a in ATTACKS])
def test_attack_is_refused(proxy: ProxyProcess, fake: FakeUpstream, jwks: JwksServer, attack: Any) -> None:
    token = attack(jwks)
    MINTED.append(token)
    response = raw_chat(proxy, token)
    error_of(response, 401)
    assert token not in response.text
    assert fake.requests == []
    # Not on LiteLLM's own routes either: the hook guards the whole proxy.
    openai = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "fake", "messages": USER},
                        headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert openai.status_code == 401


def test_empty_bearer_is_401(proxy: ProxyProcess) -> None:
    response = httpx.post(proxy.url + PATH, json={"model": "fake", "messages": USER},
                          headers={"Authorization": "Bearer"})
    error_of(response, 401)


# --- LiteLLM's own auth still works ---------------------------------------------------------------------


def test_master_key_on_litellm_routes_and_ours(proxy: ProxyProcess, fake: FakeUpstream) -> None:
    assert chat(proxy, MASTER_KEY).finish_reason == "COMPLETE"
    response = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "fake", "messages": USER},
                          headers={"Authorization": f"Bearer {MASTER_KEY}"})
    assert response.status_code == 200
    models = httpx.get(f"{proxy.url}/v1/models", headers={"Authorization": f"Bearer {MASTER_KEY}"})
    assert {"fake", "demo"} <= {m["id"] for m in models.json()["data"]}


def test_virtual_key_cannot_use_admin_routes(proxy: ProxyProcess) -> None:
    response = httpx.get(f"{proxy.url}/router/settings",
                         headers={"Authorization": f"Bearer {virtual_key('cfg', 'open')}"})
    assert response.status_code in (401, 403)


def test_ui_page_still_loads(proxy: ProxyProcess) -> None:
    response = httpx.get(f"{proxy.url}/ui/", follow_redirects=True, timeout=10)
    assert response.status_code == 200
    assert "<html" in response.text.lower()


def test_zz_no_key_jwt_or_secret_in_the_proxy_log(proxy: ProxyProcess) -> None:
    """Runs last in this module: everything above went through the same proxy."""
    log = proxy.log()
    assert "Authentication" in log or "auth" in log.lower()  # the log did capture auth traffic
    secrets = [MASTER_KEY, HS_SECRET] + [virtual_key(s, n) for s in SOURCES for n in ("open", "rpm", "jwt")]
    secrets.append(virtual_key("store", "unreadable"))
    for token in MINTED:
        secrets.append(token)
        if token.count(".") == 2 and token.split(".")[2]:
            secrets.append(token.split(".")[2])  # the signature alone
    leaked = [s[:16] + "..." for s in secrets if s in log]
    assert leaked == [], f"secrets found in the proxy log: {leaked}"
    assert datetime.now(UTC)  # keeps the UTC import honest for readers of failures
