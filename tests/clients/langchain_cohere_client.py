"""Drives LangChain's Cohere chat model (langchain-cohere, its own venv, .cache/clients/langchain) against
the proxy for tests/test_clients.py, and prints what it made of the answers as one JSON document:
    .cache/clients/langchain/bin/python tests/clients/langchain_cohere_client.py <base_url> <token> invoke
    ... num-tokens <text>              (the default model: GET /v1/models/{model}, then POST /v1/tokenize)
    ... structured <model> <JSON schema>   (with_structured_output: response_format with `schema`)
ChatCohere is made without a model unless one is given: it asks the proxy for its default chat model.
"""

import json
import sys

from langchain_cohere import ChatCohere

base_url, token, action, *args = sys.argv[1:]
if action == "invoke":
    chat = ChatCohere(base_url=base_url, cohere_api_key=token)
    answer = chat.invoke("hi")
    result = {"model": chat.model_name, "text": answer.content}
elif action == "num-tokens":
    chat = ChatCohere(base_url=base_url, cohere_api_key=token)
    result = {"model": chat.model_name, "tokens": chat.get_num_tokens(args[0])}
elif action == "structured":
    chat = ChatCohere(base_url=base_url, cohere_api_key=token, model=args[0])
    result = {"answer": chat.with_structured_output(json.loads(args[1])).invoke("Where is the Eiffel tower?")}
else:
    raise SystemExit(f"unknown action {action}")
print(json.dumps(result))
