"""Real Cohere clients, unchanged, against the proxy: the TypeScript SDK (cohere-ai), the Python SDK's
previous major (cohere 5) and LangChain's ChatCohere, CohereEmbeddings and CohereRerank, each chatting,
embedding and reranking as users do; answers checked against the fake upstream's deterministic vectors
and scores, and what reached the fake checked too. Each runs as a subprocess from what scripts/test
and scripts/setup --test install (their pins conflict with the test venv's cohere 7), and prints JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx

from .fake_upstream import FakeUpstream, Reply, embedding_for
from .harness import MASTER_KEY, REPO, ProxyProcess, virtual_key
from .test_route_embed import DOCUMENTS, TEXTS

CLIENTS = REPO / "tests" / "clients"
COHERE5 = REPO / ".cache" / "clients" / "cohere5" / "bin" / "python"
LANGCHAIN = REPO / ".cache" / "clients" / "langchain" / "bin" / "python"
LLAMAINDEX = REPO / ".cache" / "clients" / "llamaindex" / "bin" / "python"
TYPESCRIPT_SDK = REPO / ".cache" / "npm" / "node_modules" / "cohere-ai" / "package.json"
ANSWER = Reply().text  # what the fake upstream says by default
# The fake reranker scores a document by the share of the query's words in it: "blue whales" is all in the
# first document, half in the second, not in the third.
QUERY, RANKED = "blue whales", [[0, 1.0], [1, 0.5]]
OPENAI_EMBED = {"model": "text-embedding-3-fake", "input": TEXTS, "encoding_format": "float"}  # fake-embed's
RERANK_SENT = {"model": "rerank-v3.5", "query": QUERY, "documents": DOCUMENTS, "top_n": 2, "return_documents": False}


def assert_int8_of(codes: list[list[int]], texts: list[str]) -> None:
    """int8 codes are each vector's floats scaled to -127..127 by its peak (docs/endpoints.md, "Embedding types")."""
    assert len(codes) == len(texts)
    for vector, text in zip(codes, texts, strict=True):
        floats = embedding_for(text)
        peak = max(abs(value) for value in floats)
        assert max(abs(code) for code in vector) == 127
        assert all(abs(code - value * 127 / peak) <= 0.5 for code, value in zip(vector, floats, strict=True))


def run(command: list[str | Path], needs: Path) -> dict[str, Any]:
    assert needs.exists(), f"{needs} is missing: scripts/test installs it (scripts/setup --test, npm)"
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def typescript(proxy: ProxyProcess, *args: str, token: str = MASTER_KEY) -> dict[str, Any]:
    node = shutil.which("node")
    assert node, "node is missing"
    return run([node, CLIENTS / "cohere_ts.mjs", f"{proxy.url}/litellm/cohere", token, *args], TYPESCRIPT_SDK)


def cohere5(proxy: ProxyProcess, *args: str) -> dict[str, Any]:
    return run([COHERE5, CLIENTS / "cohere5_client.py", f"{proxy.url}/litellm/cohere", MASTER_KEY, *args], COHERE5)


def langchain(proxy: ProxyProcess, token: str, *args: str) -> dict[str, Any]:
    return run([LANGCHAIN, CLIENTS / "langchain_cohere_client.py", f"{proxy.url}/litellm/cohere", token, *args],
               LANGCHAIN)


# --- the TypeScript SDK ------------------------------------------------------------------------------------


def test_typescript_sdk_chats(proxy: ProxyProcess, fake: FakeUpstream) -> None:
    answer = typescript(proxy, "chat", "fake")
    assert answer["text"] == ANSWER and answer["finishReason"] == "COMPLETE"
    assert answer["usage"]["tokens"] == {"inputTokens": 11, "outputTokens": 7}


def test_typescript_sdk_streams(proxy: ProxyProcess, fake: FakeUpstream) -> None:
    streamed = typescript(proxy, "chat-stream", "fake")
    assert streamed["text"] == ANSWER and streamed["finishReason"] == "COMPLETE"
    assert streamed["events"][0] == "message-start" and streamed["events"][-1] == "message-end"


def test_typescript_sdk_lists_models(proxy: ProxyProcess) -> None:
    models = {model["name"]: model for model in typescript(proxy, "models-list")["models"]}
    assert models["demo"] == {"name": "demo", "endpoints": ["chat"], "defaultEndpoints": ["chat"]}
    assert "fake" in models and "fake-embed" not in models  # endpoint=chat


def test_typescript_sdk_embeds(proxy: ProxyProcess, fake: FakeUpstream) -> None:
    answer = typescript(proxy, "embed", "fake-embed", json.dumps(TEXTS))
    assert answer["embeddings"]["float"] == [embedding_for(text) for text in TEXTS]
    assert_int8_of(answer["embeddings"]["int8"], TEXTS)
    assert answer["texts"] == TEXTS and answer["inputTokens"] == 5 and answer["id"]
    assert fake.last == OPENAI_EMBED


def test_typescript_sdk_reranks(proxy: ProxyProcess, fake: FakeUpstream) -> None:
    answer = typescript(proxy, "rerank", "fake-rerank", QUERY, json.dumps(DOCUMENTS), "2")
    assert answer["results"] == RANKED and answer["searchUnits"] == 1 and answer["id"]
    assert fake.last == RERANK_SENT


# --- the Python SDK's previous major -----------------------------------------------------------------------


def test_cohere5_chats_and_lists_models(proxy: ProxyProcess, fake: FakeUpstream) -> None:
    answer = cohere5(proxy, "chat", "fake")
    assert answer["version"].startswith("5.") and answer["text"] == ANSWER and answer["finish_reason"] == "COMPLETE"
    models = {model["name"]: model for model in cohere5(proxy, "models-list")["models"]}
    assert models["fake-embed"]["endpoints"] == ["embed"] and models["fake"]["endpoints"] == ["chat"]


def test_cohere5_embeds_and_reranks(proxy: ProxyProcess, fake: FakeUpstream) -> None:
    answer = cohere5(proxy, "embed", "fake-embed", json.dumps(TEXTS))
    assert answer["version"].startswith("5.")
    assert answer["float"] == [embedding_for(text) for text in TEXTS]
    assert_int8_of(answer["int8"], TEXTS)
    assert answer["texts"] == TEXTS and answer["input_tokens"] == 5
    assert fake.last == OPENAI_EMBED
    ranked = cohere5(proxy, "rerank", "fake-rerank", QUERY, json.dumps(DOCUMENTS), "2")
    assert ranked["results"] == RANKED and ranked["search_units"] == 1
    assert fake.last == RERANK_SENT


def test_cohere5_v1_client_chats_streams_calls_tools_reranks_and_generates(proxy: ProxyProcess,
                                                                           fake: FakeUpstream) -> None:
    """`cohere.Client` (Cohere's v1 API) of the SDK's previous major, as code written before v2 uses it."""
    answer = cohere5(proxy, "v1-chat", "fake")
    assert answer["version"].startswith("5.") and answer["text"] == ANSWER and answer["finish_reason"] == "COMPLETE"
    assert answer["history"] == ["USER", "CHATBOT", "USER", "CHATBOT"]
    assert [m["role"] for m in fake.last["messages"]] == ["system", "user", "assistant", "user"]
    streamed = cohere5(proxy, "v1-chat-stream", "fake")
    assert streamed["kinds"][0] == "stream-start" and streamed["kinds"][-1] == "stream-end"
    assert streamed["text"] == streamed["end_text"] == ANSWER
    call = {"id": "c1", "name": "get_weather", "arguments": '{"city": "Paris"}'}
    fake.script(Reply(text="Looking.", tool_calls=[call]), Reply(text="Sunny."))
    tools = cohere5(proxy, "v1-tools", "fake")
    assert tools == {"calls": [{"name": "get_weather", "parameters": {"city": "Paris"}}], "text": "Sunny.",
                     "history": ["USER", "CHATBOT", "TOOL", "CHATBOT"], "version": tools["version"]}
    tool_turn = [m for m in fake.last["messages"] if m["role"] in ("assistant", "tool")]
    assert tool_turn[0]["tool_calls"][0]["id"] == tool_turn[1]["tool_call_id"]
    ranked = cohere5(proxy, "v1-rerank", "fake-rerank", QUERY, json.dumps(DOCUMENTS))
    assert [result[:2] for result in ranked["results"][:2]] == RANKED and ranked["results"][0][2] == DOCUMENTS[0]
    fake.script(Reply(text="A story."), Reply(text="Another story."))
    assert cohere5(proxy, "v1-generate", "fake")["text"] == "A story."
    assert cohere5(proxy, "v1-generate-stream", "fake") == {"text": "Another story.", "end": "stream-end",
                                                             "version": answer["version"]}


def test_llamaindex_cohere_llm_chats_streams_and_completes(proxy: ProxyProcess, fake: FakeUpstream) -> None:
    """LlamaIndex's Cohere LLM (llama-index-llms-cohere) calls Cohere's v1 API: chat, chat_stream and, for
    `complete`, the v1 generate."""
    fake.script(Reply(text="Chatted."), Reply(text="Streamed chat."), Reply(text="Completed."))
    answer = run([LLAMAINDEX, CLIENTS / "llamaindex_cohere_client.py", f"{proxy.url}/litellm/cohere", MASTER_KEY,
                  "command-r"], LLAMAINDEX)
    assert answer["cohere"].startswith("5.")
    assert (answer["chat"], answer["stream_chat"], answer["complete"]) == ("Chatted.", "Streamed chat.", "Completed.")
    chat, streamed, completed = (seen.body for seen in fake.requests[-3:])
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant", "user"]
    assert chat["temperature"] == 0.1 and streamed["stream"] is True
    assert completed["messages"] == [{"role": "user", "content": "Tell a story"}]


# --- LangChain's ChatCohere --------------------------------------------------------------------------------


def test_langchain_without_a_model_uses_the_keys_default_chat_model(proxy: ProxyProcess, fake: FakeUpstream) -> None:
    answer = langchain(proxy, virtual_key("cfg", "models"), "invoke")  # a key allowed only `fake`
    assert answer == {"model": "fake", "text": ANSWER}
    assert fake.requests[-1].body["model"] == "fake-upstream"


def test_langchain_counts_tokens_with_the_proxys_tokenizer(proxy: ProxyProcess, fake: FakeUpstream) -> None:
    text = "How many tokens are in this sentence, counted by the proxy?"
    counted = langchain(proxy, MASTER_KEY, "num-tokens", text)
    assert counted["model"] == "demo"  # the master key's default chat model: the first in config.yaml
    tokenized = httpx.post(f"{proxy.url}/litellm/cohere/v1/tokenize", json={"text": text, "model": "demo"},
                           headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30).json()
    assert counted["tokens"] == len(tokenized["tokens"]) > 5
    assert fake.requests == []


def test_langchain_structured_output_reaches_the_model_as_an_openai_json_schema(proxy: ProxyProcess,
                                                                               fake: FakeUpstream) -> None:
    schema = {"title": "Place", "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    fake.script(Reply(text='{"city": "Paris"}'))
    assert langchain(proxy, MASTER_KEY, "structured", "fake", json.dumps(schema)) == {"answer": {"city": "Paris"}}
    assert fake.requests[-1].body["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "response", "schema": schema}}


# --- LangChain's CohereEmbeddings (v1 embed) and CohereRerank ----------------------------------------------


def test_langchain_embeds_documents_and_a_query_through_v1_embed(proxy: ProxyProcess, fake: FakeUpstream) -> None:
    # A Cohere model behind the proxy, so what LangChain sent as input_type is seen reaching the provider.
    answer = langchain(proxy, MASTER_KEY, "embed", "fake-cohere-embed", json.dumps(TEXTS), "whales")
    assert answer == {"documents": [embedding_for(text) for text in TEXTS], "query": embedding_for("whales")}
    sent = [(seen.body["texts"], seen.body["input_type"]) for seen in fake.requests]
    assert sent == [(TEXTS, "search_document"), (["whales"], "search_query")]


def test_langchain_reranks(proxy: ProxyProcess, fake: FakeUpstream) -> None:
    answer = langchain(proxy, MASTER_KEY, "rerank", "fake-rerank", QUERY, json.dumps(DOCUMENTS), "2")
    assert answer == {"results": [{"index": index, "relevance_score": score} for index, score in RANKED]}
    assert fake.last == RERANK_SENT
