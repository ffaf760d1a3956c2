"""The reservation's cost estimate: LiteLLM's own `estimate_request_max_cost`, remembered by the plugin
(`plugin.host.cost._max_cost`). Each answer must equal LiteLLM's for the same request, follow every field LiteLLM reads,
and change as soon as the router's prices do."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litellm import Router
from litellm.proxy import proxy_server
from litellm.proxy.spend_tracking.budget_reservation import estimate_request_max_cost

from plugin.host import cost

ROUTE = "/litellm/cohere/v2/chat"


def deployment(name: str, input_price: float, output_price: float) -> dict[str, Any]:
    return {"model_name": name,
            "litellm_params": {"model": f"openai/{name}", "api_base": "http://127.0.0.1:9/v1", "api_key": "x"},
            "model_info": {"input_cost_per_token": input_price, "output_cost_per_token": output_price}}


@pytest.fixture
def router(monkeypatch: pytest.MonkeyPatch) -> Iterator[Router]:
    router = Router(model_list=[deployment("priced", 1e-6, 2e-6)])
    monkeypatch.setattr(proxy_server, "llm_router", router)
    monkeypatch.setattr(cost, "_max_costs", {})
    yield router


def litellm_estimate(router: Router, body: dict[str, Any], counts: dict[str, int]) -> float | None:
    return estimate_request_max_cost(request_body=body, route=ROUTE, llm_router=router, input_token_counts=counts)


@pytest.mark.parametrize("fields", [{"max_tokens": 8}, {"max_tokens": 100}, {"max_completion_tokens": 50},
                                    {"max_tokens": 8, "n": 3}, {"max_tokens": 8, "best_of": 2},
                                    {"inferenceConfig": {"maxTokens": 40}}, {}])
def test_a_remembered_estimate_is_litellms_for_every_field_it_reads(router: Router, fields: dict[str, Any]) -> None:
    counts = {"priced": 17}
    for other in ({"max_tokens": 8}, {"max_tokens": 9000, "n": 5}):  # fill the memory with other requests first
        cost._max_cost({"model": "priced", **other}, ROUTE, "priced", counts)
    body = {"model": "priced", **fields}
    first = cost._max_cost(body, ROUTE, "priced", counts)
    assert first == litellm_estimate(router, body, counts)
    assert cost._max_cost(dict(body), ROUTE, "priced", counts) == first


def test_the_input_count_is_part_of_what_is_remembered(router: Router) -> None:
    body = {"model": "priced", "max_tokens": 8}
    assert cost._max_cost(body, ROUTE, "priced", {"priced": 10}) != cost._max_cost(body, ROUTE, "priced",
                                                                                  {"priced": 1000})


def test_new_prices_are_used_as_soon_as_the_router_has_them(router: Router) -> None:
    body, counts = {"model": "priced", "max_tokens": 8}, {"priced": 17}
    before = cost._max_cost(body, ROUTE, "priced", counts)
    assert before == pytest.approx(17 * 1e-6 + 8 * 2e-6)
    router.set_model_list([deployment("priced", 1e-5, 2e-5)])
    assert cost._max_cost(body, ROUTE, "priced", counts) == pytest.approx(10 * before)


def test_a_request_with_large_cost_fields_is_estimated_but_not_remembered(router: Router) -> None:
    """The memory stays bounded in bytes: a client's large `inferenceConfig` is not kept as a key."""
    body, counts = {"model": "priced", "inferenceConfig": {"maxTokens": 40, "note": "x" * 10_000}}, {"priced": 17}
    assert cost._max_cost(body, ROUTE, "priced", counts) == litellm_estimate(router, body, counts)
    assert cost._max_costs == {}
    small = {"model": "priced", "inferenceConfig": {"maxTokens": 40}}
    cost._max_cost(small, ROUTE, "priced", counts)
    remembers = cost._cached_group_info(router, "priced") is not None  # LiteLLM 1.100's router keeps no group info
    assert len(cost._max_costs) == (1 if remembers else 0)
