"""What a call may cost, for its reservation: LiteLLM's own estimate (remembered), and search units.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import Request

from ..limits.ledger import to_nanos
from .app import as_litellm_sees
from .keys import _parsed_body, route_of

log = logging.getLogger("mpilot")


async def estimate_cost_nanos(request: Request, models: list[str], default_max_tokens: int,
                              team_id: str | None = None) -> int:
    """The most this request may cost, for its reservation: LiteLLM's own estimate (input tokens by its
    token counter times the input price, plus max_tokens, else `default_max_tokens` capped by the
    model's output limit, times the output price), the dearest model named. 0 when no price is known."""
    from litellm.proxy import proxy_server as proxy
    body, route = await _as_estimated(request, default_max_tokens)
    dearest = 0.0
    try:
        # Each model the request names (body, path, query, fallbacks) in turn: the call may use any.
        for model in models:
            body["model"] = model
            counts = await _input_token_counts(body, route, proxy.llm_router, team_id)
            dearest = max(dearest, _max_cost(body, route, model, counts) or 0.0)
        dearest = max(dearest, search_units_cost(body, route, models))
    except Exception as error:  # noqa: BLE001  # an estimate never fails a request; the budget still holds
        log.warning("MPilot limits: no cost estimate (%s); reserving nothing for this call", type(error).__name__)
        return 0
    return to_nanos(dearest)


async def bound_cost_nanos(request: Request, models: list[str], default_max_tokens: int) -> int | None:
    """At least what `estimate_cost_nanos` gives, without a tokenizer (~0.6 ms less per request): for a
    chat request whose content is all text, its input taken as `text_token_bound` tokens, priced as
    LiteLLM prices them. None where no such bound holds (images, audio, files; calls other than chat)."""
    body, route = await _as_estimated(request, default_max_tokens)
    tokens = text_token_bound(body)
    if tokens is None:
        return None
    dearest = 0.0
    try:
        for model in models:
            body["model"] = model
            dearest = max(dearest, _max_cost(body, route, model, {model: tokens}) or 0.0)
    except Exception as error:  # noqa: BLE001  # the caller then asks for LiteLLM's own estimate
        log.warning("MPilot limits: no bound of the cost (%s)", type(error).__name__)
        return None
    return to_nanos(dearest)


async def _as_estimated(request: Request, default_max_tokens: int) -> tuple[dict[str, Any], str]:
    """A copy of the request's body, and its route, as LiteLLM's estimate reads them (see `LitellmView`),
    with `default_max_tokens` where it asks for no limit of output tokens."""
    body, route = as_litellm_sees(dict(await _parsed_body(request)), route_of(request))
    if not any(body.get(field) is not None for field in _OUTPUT_TOKEN_FIELDS):
        body["max_tokens"] = default_max_tokens
    return body, route


def text_token_bound(body: Mapping[str, Any]) -> int | None:
    """More tokens than any tokenizer makes of a chat request's messages, tools and tool choice: twice
    the UTF-8 bytes of their JSON, plus 64 (every token of a tokenizer LiteLLM counts with covers at least
    one byte of text; the JSON's quotes, braces and keys pay for the few tokens LiteLLM adds per message
    and for the way it writes tools), rounded up to a power of two so that LiteLLM's price arithmetic is
    remembered (`_max_cost`). None for anything but a chat request of text: a part that is not text
    (an image, audio, a file) counts in tokens unrelated to its bytes."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(_all_text(message) for message in messages):
        return None
    try:
        counted = json.dumps([messages, body.get("tools"), body.get("tool_choice")], ensure_ascii=False)
    except (TypeError, ValueError):
        return None
    return 1 << (2 * len(counted.encode()) + 64 - 1).bit_length()


def _all_text(message: Any) -> bool:
    if not isinstance(message, dict):
        return False
    content = message.get("content")
    if content is None or isinstance(content, str):
        return True
    return isinstance(content, list) and all(
        isinstance(part, str) or (isinstance(part, dict) and part.get("type") == "text" and set(part) <= _TEXT_PART)
        for part in content)


_TEXT_PART = {"type", "text", "cache_control"}


def _cached_group_info(router: Any, model: str) -> Any:
    """The router's cached info object of a model group (it is replaced whenever models or prices change).
    Release adapter: `registry().group(name, field="cached_info")` from 1.110 (which deprecates the
    old name), `cached_model_group_info` on 1.104-1.109; 1.100's router keeps none (None: not remembered)."""
    if hasattr(router, "registry"):
        return router.registry().group(model, field="cached_info")
    lookup = getattr(router, "cached_model_group_info", None)
    return lookup(model) if lookup is not None else None


async def _input_token_counts(body: dict, route: str, router: Any, team_id: str | None) -> Mapping[str, int]:
    """LiteLLM's input-token count per model the request names. Release adapter: 1.110 added a required
    `team_id` (a team's own names for models); earlier releases have no such parameter."""
    from litellm.proxy.spend_tracking.budget_reservation import count_request_input_tokens

    if _counts_take_team_id():
        return await count_request_input_tokens(request_body=body, route=route, llm_router=router, team_id=team_id)
    return await count_request_input_tokens(request_body=body, route=route, llm_router=router)


@functools.cache
def _counts_take_team_id() -> bool:
    from litellm.proxy.spend_tracking.budget_reservation import count_request_input_tokens

    return "team_id" in inspect.signature(count_request_input_tokens).parameters


_OUTPUT_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
_COST_FIELDS = (*_OUTPUT_TOKEN_FIELDS, "n", "best_of", "inferenceConfig")  # what LiteLLM's estimate reads
_max_costs: dict[tuple[Any, ...], tuple[Any, float | None]] = {}
_MAX_COSTS_KEPT = 4096  # entries; each at most ~1 KiB (a model name, a route, counts and these fields)
_MAX_COST_FIELDS_CHARS = 256


def _max_cost(body: dict, route: str, model: str, input_tokens: Mapping[str, int]) -> float | None:
    """LiteLLM's `estimate_request_max_cost`, remembered: it is plain arithmetic on the request's token
    counts and fields, the route and the model group's prices, but costs ~170 us a call in the runtime
    protocol checks of its number parsing. An answer is reused only while the router serves the same
    (cached) model group info: the router replaces it whenever models or prices change."""
    from litellm.proxy import proxy_server as proxy
    from litellm.proxy.spend_tracking.budget_reservation import estimate_request_max_cost

    def estimate() -> float | None:
        return estimate_request_max_cost(request_body=body, route=route, llm_router=proxy.llm_router,
                                         input_token_counts=input_tokens)

    group = _cached_group_info(proxy.llm_router, model)
    if group is None or not input_tokens:
        return estimate()  # priced from LiteLLM's model map, or its input counted inside: not remembered
    fields = repr([body.get(field) for field in _COST_FIELDS])
    if len(fields) > _MAX_COST_FIELDS_CHARS:  # e.g. a large `inferenceConfig`: not worth its memory
        return estimate()
    key = (model, route, tuple(sorted(input_tokens.items())), fields)
    known = _max_costs.get(key)
    if known is not None and known[0] is group:
        return known[1]
    if len(_max_costs) >= _MAX_COSTS_KEPT:
        _max_costs.clear()
    cost = _max_costs[key] = (group, estimate())
    return cost[1]


def search_units_cost(body: dict[str, Any], route: str, models: list[str]) -> float:
    """The most a rerank call may cost where its model is priced per search unit (`input_cost_per_query`,
    which LiteLLM's own estimate does not read): the dearest price of the models named times the call's
    search units by Cohere's definition, one per 100 documents. 0 for any other call."""
    from litellm.proxy import proxy_server as proxy

    documents = body.get("documents")
    if route != "/v1/rerank" or not isinstance(documents, list) or not documents:
        return 0.0
    prices = [_price_per_query(deployment) for deployment in (proxy.llm_router.model_list if proxy.llm_router else [])
              if deployment.get("model_name") in models]
    return max(prices, default=0.0) * -(-len(documents) // 100)


def _price_per_query(deployment: Mapping[str, Any]) -> float:
    """A deployment's price per search unit: its `model_info`'s, else LiteLLM's model map's."""
    import litellm

    price = (deployment.get("model_info") or {}).get("input_cost_per_query")
    if price is None:
        name = str((deployment.get("litellm_params") or {}).get("model") or "")
        price = (litellm.model_cost.get(name) or litellm.model_cost.get(name.partition("/")[2]) or {}) \
            .get("input_cost_per_query")
    return float(price or 0.0)
