"""Cohere's v1 chat (`cohere.Client.chat`, `chat_stream`) through the real proxy, for a model behind the
router (the fake OpenAI upstream): what reaches the model, the v1 answer and stream, tools over two
turns, documents and citations, the fields refused by name, and the same limits as v2."""

from __future__ import annotations

import json

import cohere
import httpx
import pytest

from plugin.cohere.v1_chat import json_schema_of

from .fake_upstream import FakeUpstream, Reply
from .harness import MASTER_KEY, ProxyProcess, virtual_key

PATH = "/litellm/cohere/v1/chat"
WEATHER = {"name": "get_weather", "description": "Current weather for a city",
           "parameter_definitions": {"city": {"description": "the city", "type": "str", "required": True},
                                     "days": {"type": "List[int]", "required": False}}}


@pytest.fixture
def v1(proxy: ProxyProcess) -> cohere.Client:
    return cohere.Client(api_key=MASTER_KEY, base_url=f"{proxy.url}/litellm/cohere", timeout=30)


def post(proxy: ProxyProcess, body: dict, token: str = MASTER_KEY) -> httpx.Response:
    return httpx.post(proxy.url + PATH, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_chat_with_preamble_and_history_reaches_the_model_as_one_conversation(v1: cohere.Client,
                                                                             fake: FakeUpstream) -> None:
    fake.script(Reply(text="Paris.", prompt_tokens=30, completion_tokens=2))
    history = [{"role": "User", "message": "Hi"}, {"role": "Chatbot", "message": "Hello!", "tool_calls": None},
               {"role": "SYSTEM", "message": "Be brief."}]
    response = v1.chat(model="fake", message="Capital of France?", preamble="You are a geographer.",
                       chat_history=history, temperature=0.2, max_tokens=20, k=5, p=0.5, seed=7,
                       stop_sequences=["END"], frequency_penalty=0.1, presence_penalty=0.2)
    assert response.text == "Paris." and response.finish_reason == "COMPLETE"
    assert response.generation_id and response.response_id
    assert response.meta.api_version.version == "1"
    assert (response.meta.tokens.input_tokens, response.meta.billed_units.output_tokens) == (30, 2)
    assert [(m.role, m.message) for m in response.chat_history] == [
        ("USER", "Hi"), ("CHATBOT", "Hello!"), ("SYSTEM", "Be brief."), ("USER", "Capital of France?"),
        ("CHATBOT", "Paris.")]
    sent = fake.last
    assert sent["messages"] == [
        {"role": "system", "content": "You are a geographer."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}, {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"}]
    assert (sent["temperature"], sent["max_tokens"], sent["seed"], sent["stop"]) == (0.2, 20, 7, ["END"])
    assert (sent["frequency_penalty"], sent["presence_penalty"], sent["top_p"]) == (0.1, 0.2, 0.5)


def test_chat_stream_is_json_lines_that_the_sdk_reads_ending_with_the_whole_answer(
        v1: cohere.Client, proxy: ProxyProcess, fake: FakeUpstream) -> None:
    fake.script(Reply(text="Streaming in v1 works.", completion_tokens=5))
    events = list(v1.chat_stream(model="fake", message="Say it"))
    kinds = [event.event_type for event in events]
    assert kinds[0] == "stream-start" and kinds[-1] == "stream-end"
    assert set(kinds[1:-1]) == {"text-generation"}
    text = "".join(event.text for event in events if event.event_type == "text-generation")
    assert text == "Streaming in v1 works."
    end = events[-1]
    assert end.finish_reason == "COMPLETE" and end.response.text == text
    assert end.response.generation_id == events[0].generation_id
    assert [m.role for m in end.response.chat_history] == ["USER", "CHATBOT"]
    assert end.response.meta.tokens.output_tokens == 5
    assert fake.last["stream"] is True
    fake.script(Reply(text="raw"))
    with httpx.stream("POST", proxy.url + PATH, json={"model": "fake", "message": "hi", "stream": True},
                      headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30) as raw:
        assert raw.headers["content-type"].startswith("application/stream+json")
        lines = [line for line in raw.iter_lines() if line]
    assert all(json.loads(line)["event_type"] for line in lines)  # every line one whole JSON event


def test_tools_over_two_turns_reach_the_model_as_a_valid_tool_turn(v1: cohere.Client, fake: FakeUpstream) -> None:
    fake.script(Reply(text="I will look it up.", tool_calls=[
        {"id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}]))
    first = v1.chat(model="fake", message="Weather in Paris?", tools=[WEATHER])
    assert [(call.name, call.parameters) for call in first.tool_calls] == [("get_weather", {"city": "Paris"})]
    assert first.text == "I will look it up."
    tools = fake.last["tools"]
    assert tools == [{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "the city"},
            "days": {"type": "array", "items": {"type": "integer"}}}, "required": ["city"]}}}]
    assert [m.role for m in first.chat_history] == ["USER", "CHATBOT"]
    assert first.chat_history[-1].tool_calls[0].name == "get_weather"

    fake.script(Reply(text="It is sunny in Paris."))
    second = v1.chat(model="fake", message="", tools=[WEATHER], chat_history=first.chat_history,
                     tool_results=[{"call": {"name": "get_weather", "parameters": {"city": "Paris"}},
                                    "outputs": [{"temperature": 21, "sky": "sunny"}]}])
    assert second.text == "It is sunny in Paris."
    assert [m.role for m in second.chat_history] == ["USER", "CHATBOT", "TOOL", "CHATBOT"]
    messages = [m for m in fake.last["messages"] if m["role"] != "system"]  # (how to cite the results)
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    (call,) = messages[1]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert messages[2]["tool_call_id"] == call["id"]  # the result answers the call it matches
    assert "sunny" in json.dumps(messages[2]["content"])


def test_tool_calls_stream_as_chunks_then_one_generation(v1: cohere.Client, fake: FakeUpstream) -> None:
    fake.script(Reply(text="", tool_calls=[{"id": "call_9", "name": "get_weather", "arguments": '{"city": "Rome"}'}]))
    events = list(v1.chat_stream(model="fake", message="Weather in Rome?", tools=[WEATHER]))
    kinds = [event.event_type for event in events]
    assert "tool-calls-chunk" in kinds and kinds[-2:] == ["tool-calls-generation", "stream-end"]
    assert all(isinstance(event.text, str) for event in events if event.event_type.startswith("tool-calls"))
    generated = events[-2]
    assert [(call.name, call.parameters) for call in generated.tool_calls] == [("get_weather", {"city": "Rome"})]
    assert events[-1].response.tool_calls[0].parameters == {"city": "Rome"}


def test_documents_are_cited_by_their_ids(v1: cohere.Client, fake: FakeUpstream) -> None:
    fake.script(Reply(text='Emperor penguins are the tallest <co: penguins>at 1.2 m</co: penguins>.'))
    documents = [{"id": "penguins", "title": "Tall penguins", "snippet": "Emperor penguins are 1.2 m tall."},
                 {"title": "Other", "snippet": "Unrelated."}]
    response = v1.chat(model="fake", message="Which penguins are tallest?", documents=documents)
    assert response.text == "Emperor penguins are the tallest at 1.2 m."
    (citation,) = response.citations
    assert (citation.start, citation.end, citation.text) == (33, 41, "at 1.2 m")
    assert citation.document_ids == ["penguins"]
    assert [document["id"] for document in response.documents] == ["penguins"]
    assert response.documents[0]["title"] == "Tall penguins"
    prompt = json.dumps(fake.last["messages"])
    assert "Emperor penguins are 1.2 m tall." in prompt and "Unrelated." in prompt

    fake.script(Reply(text='Tallest: <co: doc_1>none</co: doc_1>'))
    streamed = list(v1.chat_stream(model="fake", message="Which?", documents=documents))
    cited = [event for event in streamed if event.event_type == "citation-generation"]
    assert [c.document_ids for event in cited for c in event.citations] == [["doc_1"]]
    assert streamed[-1].response.citations[0].document_ids == ["doc_1"]


@pytest.mark.parametrize(("body", "named"), [
    ({"connectors": [{"id": "web-search"}]}, "connectors"),
    ({"search_queries_only": True}, "search_queries_only"),
    ({"conversation_id": "abc"}, "conversation_id"),
    ({"raw_prompting": True}, "raw_prompting"),
    ({"prompt_truncation": "AUTO"}, "prompt_truncation"),
    ({"max_input_tokens": 100}, "max_input_tokens"),
    ({"temperature": 1.5}, "temperature"),
    ({"chat_history": [{"role": "ROBOT", "message": "x"}]}, "chat_history"),
    ({"tools": [{"name": "f", "parameter_definitions": {"x": {"type": "complex"}}}]},
     "tools[0].parameter_definitions.x.type"),
    ({"message": ""}, "message"),
    ({"model": None}, "model"),
])
def test_bad_or_removed_fields_are_a_400_naming_the_field(proxy: ProxyProcess, body: dict, named: str) -> None:
    response = post(proxy, {"model": "fake", "message": "hi", **body})
    assert response.status_code == 400, response.text
    assert named in response.json()["message"], response.json()


def test_nulls_are_absent_and_roles_any_case(proxy: ProxyProcess, fake: FakeUpstream) -> None:
    fake.script(Reply(text="ok"))
    response = post(proxy, {"model": "fake", "message": "hi", "preamble": None, "temperature": None,
                            "chat_history": [{"role": "user", "message": "before", "tool_calls": None}],
                            "connectors": None, "conversation_id": None, "prompt_truncation": "OFF"})
    assert response.status_code == 200, response.text
    assert [m["role"] for m in fake.last["messages"]] == ["user", "user"]


def test_v1_chat_is_held_to_a_keys_limits(proxy: ProxyProcess, fake: FakeUpstream) -> None:
    assert post(proxy, {"model": "fake", "message": "hi"}, virtual_key("cfg", "broke")).status_code == 402
    refused = post(proxy, {"model": "fake-b", "message": "hi"}, virtual_key("cfg", "models"))
    assert refused.status_code == 403 and "fake-b" in refused.json()["message"]
    assert post(proxy, {"model": "fake", "message": "hi"}, "sk-bf-nobody-0123456789abcdef0123456789ab").status_code \
        == 401


@pytest.mark.parametrize(("python_type", "schema"), [
    ("str", {"type": "string"}), ("int", {"type": "integer"}), ("float", {"type": "number"}),
    ("bool", {"type": "boolean"}), ("list", {"type": "array"}), ("dict", {"type": "object"}),
    ("List[str]", {"type": "array", "items": {"type": "string"}}),
    ("list[float]", {"type": "array", "items": {"type": "number"}}),
    ("Dict[str, int]", {"type": "object", "additionalProperties": {"type": "integer"}}),
    ("Optional[bool]", {"type": "boolean"}), ("string", {"type": "string"}),
    ("complex", None), ("List[complex]", None), ("Dict[str, bogus]", None),
])
def test_parameter_types_map_to_json_schema(python_type: str, schema: dict | None) -> None:
    assert json_schema_of(python_type) == schema


@pytest.mark.parametrize("source", ["cfg", "store"])
def test_a_keys_tool_allow_list_guards_v1_tools_too(proxy: ProxyProcess, fake: FakeUpstream, source: str) -> None:
    """LiteLLM's `metadata.allowed_tools` reads OpenAI-shaped tools: v1's are checked as the chat they become."""
    token = virtual_key(source, "tools")
    sent = len(fake.requests)
    tools = [WEATHER, {**WEATHER, "name": "delete_everything"}]
    refused = post(proxy, {"model": "fake", "message": "hi", "tools": tools}, token)
    assert refused.status_code == 403 and "delete_everything" in refused.json()["message"], refused.text
    assert len(fake.requests) == sent
    fake.script(Reply(text="ok"))
    assert post(proxy, {"model": "fake", "message": "hi", "tools": [WEATHER]}, token).status_code == 200


def test_a_budget_of_three_answers_gives_three_through_v1(proxy: ProxyProcess, fake: FakeUpstream) -> None:
    """Each v1 call is reserved and settled in the ledger as a v2 call is: a budget of three answers lets three
    through and records exactly their spend."""
    token = virtual_key("store", "v1-three")
    statuses = [post(proxy, {"model": "fake", "message": "hi"}, token).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 402, 402], statuses
    info = httpx.get(f"{proxy.url}/mpilot/key/info", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert info.json()["spend"] == pytest.approx(0.000075, abs=1e-12)
