"""What a budgeted key's call reserves: LiteLLM's own estimate near the budget's end, and far from it a
bound that needs no tokenizer (`host.text_token_bound`), which must never be less than LiteLLM's count.

The bound is checked against LiteLLM's own token counter on generated chat requests (hypothesis); the
choice between the two against the auth hook with the plugin's SQLite ledger, the proxy's lookups stubbed
(the same hook through a real proxy: test_limits_under_concurrency, test_shared_redis)."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import litellm
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugin import host
from plugin.auth.hook import BOUND_ROOM, MPilotAuth, Refused
from plugin.host.cost import text_token_bound
from plugin.limits.ledger import SqliteLedger

# Tokenizers LiteLLM has offline: o200k (gpt-4o), cl100k (gpt-3.5, and its default for unknown models),
# Anthropic's.
COUNTED_AS = ("gpt-4o", "gpt-3.5-turbo", "claude-3-5-sonnet-20240620", "some-unknown-model")

text = st.text(st.characters(codec="utf-8"), max_size=300)
part = st.one_of(text, st.fixed_dictionaries({"type": st.just("text"), "text": text}))
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "tool"]),
     "content": st.one_of(st.none(), text, st.lists(part, max_size=4))},
    optional={"name": st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
              "tool_call_id": st.from_regex(r"call_[a-z0-9]{1,20}", fullmatch=True),
              "tool_calls": st.lists(st.fixed_dictionaries(
                  {"id": st.from_regex(r"call_[a-z0-9]{1,8}", fullmatch=True), "type": st.just("function"),
                   "function": st.fixed_dictionaries({"name": st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
                                                      "arguments": text})}), max_size=2)})
schema = st.recursive(st.fixed_dictionaries({"type": st.sampled_from(["string", "integer", "boolean"])},
                                            optional={"description": text}),
                      lambda inner: st.fixed_dictionaries(
                          {"type": st.just("object"),
                           "properties": st.dictionaries(st.from_regex(r"[a-zA-Z_]{1,16}", fullmatch=True), inner,
                                                         max_size=4)}),
                      max_leaves=6)
tool = st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries(
    {"name": st.from_regex(r"[a-zA-Z_]{1,24}", fullmatch=True), "description": text, "parameters": schema})})
chat = st.fixed_dictionaries({"messages": st.lists(message, min_size=1, max_size=6)},
                             optional={"tools": st.lists(tool, min_size=1, max_size=3),
                                       "tool_choice": st.sampled_from(["auto", "required", "none"])})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=chat)
def test_the_bound_is_never_less_than_litellms_count(body: dict[str, Any]) -> None:
    bound = text_token_bound(body)
    assert bound is not None and bound & (bound - 1) == 0  # a power of two
    for model in COUNTED_AS:  # the count every supported release's estimate makes of a chat request
        counted = litellm.token_counter(model=model, messages=body["messages"], tools=body.get("tools"),
                                        tool_choice=body.get("tool_choice"))
        assert counted <= bound, (model, counted, bound)


@pytest.mark.parametrize("content", [
    [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}],
    [{"type": "text", "text": "hi"}, {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}],
    [{"type": "file", "file": {"file_id": "file-1"}}],
    [{"type": "text", "text": "hi", "image_url": "https://example.com/a.png"}],
    {"type": "text", "text": "not a list"},
])
def test_a_request_with_more_than_text_has_no_bound(content: Any) -> None:
    """An image counts in tokens unrelated to its bytes (LiteLLM: 85 and up for a short URL)."""
    assert text_token_bound({"messages": [{"role": "user", "content": content}]}) is None
    assert text_token_bound({"input": ["embed me"]}) is None


COHERE_RAG = {"model": "command-a", "messages": [
    {"role": "user", "content": "What do the notes say?"},
    {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                                          "function": {"name": "notes", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "call_1",
     "content": [{"type": "document", "document": {"id": "note", "data": {"text": "tool " * 300}}}]}],
    "documents": [{"id": "doc-1", "data": {"text": "word " * 400}}, "plain " * 300]}


@pytest.mark.parametrize("model", COUNTED_AS)
def test_a_cohere_chat_is_counted_with_its_documents(model: str) -> None:
    """LiteLLM counts a chat's messages and tools only: the Cohere route shows its estimate (and the bound)
    the body it sends, with documents and tool results' documents in the messages."""
    from plugin.routes.chat import PATH, VIEWS

    view = VIEWS[PATH]
    sent = view.body(COHERE_RAG)
    assert view.route == "/v1/chat/completions" and sent is not None
    counted = litellm.token_counter(model=model, messages=sent["messages"])
    assert counted >= 1000  # 400 + 300 words of documents, 300 of the tool's
    assert counted <= text_token_bound(sent)  # type: ignore[operator]
    assert view.body({"model": "command-a"}) is None  # not a chat: the route refuses it itself


# --- which one the hook reserves -------------------------------------------------------------------------

KEY = "sk-bf-bound-0123456789abcdef0123456789abcdef"
ESTIMATE, BOUND = 1_000, 4_000  # nano-dollars


class Lookups:
    """The proxy's lookups the hook makes, stubbed; records which cost it asked for."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, bound: int | None = BOUND) -> None:
        self.asked: list[str] = []
        self.bound = bound

        async def requested_models(request: Any) -> list[str]:
            return ["priced"]

        async def may_call_model(caller: Any, model: str) -> bool:
            return True

        async def estimate_cost_nanos(request: Any, models: list[str], default_max_tokens: int,
                                      team_id: str | None = None) -> int:
            self.asked.append("estimate")
            return ESTIMATE

        async def bound_cost_nanos(request: Any, models: list[str], default_max_tokens: int) -> int | None:
            self.asked.append("bound")
            return self.bound

        for name, stub in {"requested_models": requested_models, "may_call_model": may_call_model,
                           "estimate_cost_nanos": estimate_cost_nanos, "bound_cost_nanos": bound_cost_nanos,
                           "key_caller": lambda key: host.Caller(api_key=key.key_id, token=key.key_id),
                           "route_of": lambda request: "/litellm/cohere/v2/chat",
                           "route_spends": lambda route: True}.items():
            monkeypatch.setattr(host, name, stub)


def hook(tmp_path: Path, budget_nanos: int, rpm: int | None = None, batch: int = 1) -> MPilotAuth:
    """The hook on a SQLite ledger; one admission per step unless `batch` (tests/test_allowance.py)."""
    entry: dict[str, Any] = {"key": KEY, "max_budget": budget_nanos / 1e9}
    if rpm is not None:
        entry["rpm_limit"] = rpm
    auth = MPilotAuth({"virtual_keys": [entry]})
    auth._ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    auth.batch = batch
    return auth


def held(tmp_path: Path) -> list[int]:
    with sqlite3.connect(tmp_path / "ledger.sqlite3") as db:
        return sorted(row[0] for row in db.execute("SELECT nanos FROM holds"))


def admit_times(auth: MPilotAuth, times: int) -> None:
    async def run() -> None:
        key = auth.keys[next(iter(auth.keys))]
        for _ in range(times):
            await auth.admit(key, request=None)  # type: ignore[arg-type]  # the stubs do not read it
    asyncio.run(run())


def test_far_from_the_end_the_bound_is_reserved_after_the_first_call(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    lookups = Lookups(monkeypatch)
    auth = hook(tmp_path, budget_nanos=10 * BOUND_ROOM * BOUND)
    admit_times(auth, 3)
    assert lookups.asked == ["estimate", "bound", "bound"]  # a budget this process has not seen: LiteLLM's
    assert held(tmp_path) == [ESTIMATE, BOUND, BOUND]


def test_near_the_end_litellms_estimate_is_reserved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Room for fewer than BOUND_ROOM bounds: calls in flight must hold only what they may cost, or fewer
    would be admitted at once than the budget fits."""
    lookups = Lookups(monkeypatch)
    auth = hook(tmp_path, budget_nanos=BOUND_ROOM * BOUND + 2 * ESTIMATE)
    admit_times(auth, 3)  # after the first: room BOUND_ROOM * BOUND + ESTIMATE, enough for one bound more
    assert lookups.asked == ["estimate", "bound", "estimate"]  # then not even a bound is made
    assert held(tmp_path) == [ESTIMATE, ESTIMATE, BOUND]


def test_a_request_without_a_bound_gets_litellms_estimate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lookups = Lookups(monkeypatch, bound=None)
    auth = hook(tmp_path, budget_nanos=10 * BOUND_ROOM * BOUND)
    admit_times(auth, 2)
    assert held(tmp_path) == [ESTIMATE, ESTIMATE]
    assert lookups.asked == ["estimate", "bound", "estimate"]


def test_a_bound_that_no_longer_fits_falls_back_to_litellms_estimate(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Another worker spent the budget down since this one looked: the bound is refused, LiteLLM's
    estimate still fits and is admitted; the refused try does not count against the key's rpm."""
    lookups = Lookups(monkeypatch)
    auth = hook(tmp_path, budget_nanos=10 * BOUND_ROOM * BOUND, rpm=2)
    admit_times(auth, 1)
    spender = SqliteLedger(tmp_path / "ledger.sqlite3")  # another worker's connection to the same file
    key = auth.keys[next(iter(auth.keys))]
    counter = key.spend_counter(datetime.now(UTC))
    asyncio.run(spender.settle(None, 10 * BOUND_ROOM * BOUND - 2 * ESTIMATE, [(counter, 3600)]))  # room: 1 estimate
    admit_times(auth, 1)
    assert lookups.asked == ["estimate", "bound", "estimate"]
    assert held(tmp_path) == [ESTIMATE, ESTIMATE]
    with sqlite3.connect(tmp_path / "ledger.sqlite3") as db:
        assert db.execute("SELECT SUM(amount) FROM rate").fetchone()[0] == 2  # two requests, not three


def test_a_refusal_names_the_estimate_it_was_refused_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bound refused, then LiteLLM's estimate too: the 402 says what the estimate needed, not the bound."""
    Lookups(monkeypatch)
    auth = hook(tmp_path, budget_nanos=10 * BOUND_ROOM * BOUND, rpm=5)
    admit_times(auth, 1)
    key = auth.keys[next(iter(auth.keys))]
    counter = key.spend_counter(datetime.now(UTC))
    spender = SqliteLedger(tmp_path / "ledger.sqlite3")
    asyncio.run(spender.settle(None, 10 * BOUND_ROOM * BOUND - ESTIMATE - ESTIMATE // 2, [(counter, 3600)]))
    with pytest.raises(Refused) as refusal:
        admit_times(auth, 1)
    assert refusal.value.status == 402
    assert "may cost up to $0.000001:" in refusal.value.message, refusal.value.message
