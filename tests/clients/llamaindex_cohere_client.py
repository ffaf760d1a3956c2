"""Drives LlamaIndex's Cohere LLM (llama-index-llms-cohere, its own venv, .cache/clients/llamaindex) against
the proxy for tests/test_clients.py, and prints what it made of the answers as one JSON document:
    .cache/clients/llamaindex/bin/python tests/clients/llamaindex_cohere_client.py <base_url> <token> <model>
It calls `chat` (Cohere's v1 chat), `stream_chat` (v1 chat_stream) and `complete` (v1 generate), as an
application built on LlamaIndex does. Its model name must be one LlamaIndex knows (it checks before calling).
"""

import json
import sys

import cohere
from llama_index.core.llms import ChatMessage
from llama_index.llms.cohere import Cohere

base_url, token, model = sys.argv[1:]
llm = Cohere(api_key=token, base_url=base_url, model=model, temperature=0.1)
messages = [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="earlier"),
            ChatMessage(role="assistant", content="yes"), ChatMessage(role="user", content="hi")]
chat = llm.chat(messages)
streamed = "".join(part.delta or "" for part in llm.stream_chat(messages))
completed = llm.complete("Tell a story")
print(json.dumps({"cohere": cohere.__version__, "chat": chat.message.content, "stream_chat": streamed,
                  "complete": completed.text}))
