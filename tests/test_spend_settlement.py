"""The spend callback's side of a call's end, in process: what each of LiteLLM's four hooks hands the auth
hook (`settle`, `release`) and from where in what LiteLLM gives it, which calls it leaves alone, when a
settlement is awaited before the answer and when it runs beside it, and that a store's failure is logged,
never raised. Through a real proxy: tests/test_limits_under_concurrency.py, tests/test_shared_redis.py."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from plugin.auth import spend
from plugin.auth.spend import KeySpend

KEY_ID = "0123456789abcdef0123"
RESERVATION = "hold-1@mpilot:{key:1}:nanos"


class Auth:
    """Stands in for the auth hook: records what the callback asks of it; `fail` makes each step raise."""

    def __init__(self, local: bool, fail: Exception | None = None) -> None:
        self.local, self.fail = local, fail
        self.settled: list[tuple[Any, ...]] = []
        self.released: list[str | None] = []
        self.gate = asyncio.Event()  # a Redis settlement waits on it: the test says when the round trip ends

    def ledger(self) -> SimpleNamespace:
        return SimpleNamespace(local=self.local)

    async def settle(self, *arguments: Any) -> None:
        if not self.local:
            await self.gate.wait()
        if self.fail:
            raise self.fail
        self.settled.append(arguments)

    async def release(self, reservation: str | None) -> None:
        if self.fail:
            raise self.fail
        self.released.append(reservation)


@pytest.fixture
def auth(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Auth:
    made = Auth(**getattr(request, "param", {"local": True}))
    monkeypatch.setattr(spend, "mpilot_auth", lambda: made)
    return made


def caller(key_id: str | None = KEY_ID, reservation: str | None = RESERVATION,
           settlement: str | None = "call-1") -> SimpleNamespace:
    metadata = {name: value for name, value in
                (("mpilot_key", key_id), ("mpilot_reservation", reservation), ("mpilot_call", settlement))
                if value is not None}
    return SimpleNamespace(metadata=metadata)


def answer(cost: Any = 0.0125, tokens: Any = 42) -> SimpleNamespace:
    return SimpleNamespace(_hidden_params={"response_cost": cost}, usage=SimpleNamespace(total_tokens=tokens))


def logged(cost: Any = 0.0125, tokens: Any = 42, **metadata: Any) -> dict[str, Any]:
    """What LiteLLM hands a success or failure callback."""
    key_metadata = caller(**metadata).metadata
    return {"standard_logging_object": {"response_cost": cost, "total_tokens": tokens},
            "litellm_params": {"metadata": {"user_api_key_metadata": key_metadata}}}


def test_an_answer_is_settled_with_its_cost_tokens_and_name(auth: Auth) -> None:
    asyncio.run(KeySpend().async_post_call_success_hook({}, caller(), answer()))
    assert auth.settled == [(KEY_ID, RESERVATION, 0.0125, 42, "call-1")]
    assert [type(value) for value in auth.settled[0][2:4]] == [float, int]


@pytest.mark.parametrize(("response", "cost", "tokens"), [
    (SimpleNamespace(), 0.0, 0),  # no cost, no usage
    (SimpleNamespace(_hidden_params=None, usage=None), 0.0, 0),
    (SimpleNamespace(_hidden_params={"response_cost": None}, usage=SimpleNamespace(total_tokens=None)), 0.0, 0),
    (answer(cost="0.5", tokens="7"), 0.5, 7),
    (answer(cost=3, tokens=0), 3.0, 0),
])
def test_what_an_answer_lacks_counts_as_nothing(auth: Auth, response: Any, cost: float, tokens: int) -> None:
    asyncio.run(KeySpend().async_post_call_success_hook({}, caller(), response))
    assert auth.settled == [(KEY_ID, RESERVATION, cost, tokens, "call-1")]
    assert [type(value) for value in auth.settled[0][2:4]] == [float, int]


def test_a_logged_success_is_settled_from_what_litellm_logged(auth: Auth) -> None:
    asyncio.run(KeySpend().async_log_success_event(logged(cost=0.25, tokens=9), None, None, None))
    assert auth.settled == [(KEY_ID, RESERVATION, 0.25, 9, "call-1")]


@pytest.mark.parametrize("kwargs", [
    {}, {"standard_logging_object": None, "litellm_params": None},
    {"litellm_params": {"metadata": None}}, {"litellm_params": {"metadata": {"user_api_key_metadata": None}}},
])
def test_a_logged_call_of_no_virtual_key_is_left_alone(auth: Auth, kwargs: dict[str, Any]) -> None:
    hooks = KeySpend()
    asyncio.run(hooks.async_log_success_event(kwargs, None, None, None))
    asyncio.run(hooks.async_log_failure_event(kwargs, None, None, None))
    assert (auth.settled, auth.released) == ([], [])


def test_a_logged_success_without_cost_or_tokens_counts_nothing(auth: Auth) -> None:
    kwargs = logged()
    kwargs["standard_logging_object"] = {}
    asyncio.run(KeySpend().async_log_success_event(kwargs, None, None, None))
    assert auth.settled == [(KEY_ID, RESERVATION, 0.0, 0, "call-1")]


def test_either_success_hook_settles_a_call_and_the_other_skips_it(auth: Auth) -> None:
    hooks = KeySpend()

    async def run() -> None:
        await hooks.async_log_success_event(logged(cost=0.25), None, None, None)
        await hooks.async_post_call_success_hook({}, caller(), answer(cost=0.5))
        await hooks.async_post_call_success_hook({}, caller(settlement="call-2"), answer(cost=0.5))
        await hooks.async_log_success_event(logged(cost=0.25, settlement="call-2"), None, None, None)

    asyncio.run(run())
    assert [(cost, name) for _, _, cost, _, name in auth.settled] == [(0.25, "call-1"), (0.5, "call-2")]


@pytest.mark.parametrize(("metadata", "settled"), [
    ({"settlement": None}, []),  # no name: nothing to settle it under
    ({"key_id": None, "reservation": None}, []),  # LiteLLM's own key: not the plugin's to settle
    ({"key_id": None}, [(None, RESERVATION, 0.0125, 42, "call-1")]),  # a hold of no key (an admin's)
    ({"reservation": None}, [(KEY_ID, None, 0.0125, 42, "call-1")]),  # a key with nothing held
])
def test_which_calls_are_settled(auth: Auth, metadata: dict[str, Any], settled: list[tuple[Any, ...]]) -> None:
    hooks = KeySpend()
    asyncio.run(hooks.async_post_call_success_hook({}, caller(**metadata), answer()))
    asyncio.run(hooks.async_log_success_event(logged(**metadata), None, None, None))
    assert auth.settled == settled


def test_a_sqlite_settlement_lands_before_the_hook_returns(auth: Auth) -> None:
    async def run() -> list[Any]:
        await KeySpend().async_post_call_success_hook({}, caller(), answer())
        return list(auth.settled)

    assert asyncio.run(run()) == [(KEY_ID, RESERVATION, 0.0125, 42, "call-1")]


@pytest.mark.parametrize("auth", [{"local": False}], indirect=True)
def test_a_redis_settlement_runs_beside_the_answer_and_lands(auth: Auth) -> None:
    hooks = KeySpend()

    async def run() -> list[Any]:
        returned = await hooks.async_post_call_success_hook({}, caller(), answer())
        seen = [returned, list(auth.settled), len(hooks._settling)]  # the round trip has not ended
        auth.gate.set()
        for _ in range(5):
            await asyncio.sleep(0)
        return [*seen, list(auth.settled), len(hooks._settling)]

    assert asyncio.run(run()) == [None, [], 1, [(KEY_ID, RESERVATION, 0.0125, 42, "call-1")], 0]


@pytest.mark.parametrize("auth", [{"local": True, "fail": ConnectionError("redis at 10.0.0.1:6379")}],
                         indirect=True)
def test_a_settlement_the_store_refuses_is_logged_without_secrets(auth: Auth,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    hooks = KeySpend()
    with caplog.at_level(logging.WARNING, logger="mpilot.auth"):
        asyncio.run(hooks.async_post_call_success_hook({}, caller(), answer()))
        asyncio.run(hooks.async_log_success_event(logged(settlement="call-2", key_id=None), None, None, None))
        asyncio.run(hooks.async_post_call_failure_hook({}, ValueError(), caller()))
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("mpilot.auth", logging.WARNING, f"MPilot spend not settled for key {KEY_ID[:12]}: ConnectionError"),
        ("mpilot.auth", logging.WARNING, "MPilot spend not settled for key None: ConnectionError"),
        ("mpilot.auth", logging.WARNING, "MPilot reservation not released: ConnectionError"),
    ]


def test_a_failed_call_gives_its_reservation_back(auth: Auth) -> None:
    hooks = KeySpend()

    async def run() -> None:
        await hooks.async_post_call_failure_hook({}, ValueError(), caller())
        await hooks.async_log_failure_event(logged(reservation="hold-2@x"), None, None, None)
        await hooks.async_post_call_failure_hook({}, ValueError(), caller(reservation=None))
        await hooks.async_log_failure_event(logged(reservation=None), None, None, None)

    asyncio.run(run())
    assert (auth.released, auth.settled) == ([RESERVATION, "hold-2@x"], [])
