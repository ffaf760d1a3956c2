"""Drives LangChain's Cohere chat model, embeddings and reranker (langchain-cohere, its own venv,
.cache/clients/langchain) against the proxy for tests/test_clients.py, and prints what it made of the
answers as one JSON document:
    .cache/clients/langchain/bin/python tests/clients/langchain_cohere_client.py <base_url> <token> invoke
    ... num-tokens <text>              (the default model: GET /v1/models/{model}, then POST /v1/tokenize)
    ... structured <model> <JSON schema>   (with_structured_output: response_format with `schema`)
    ... embed <model> <texts as JSON> <query>   (CohereEmbeddings: embed_documents, embed_query; v1 embed)
    ... rerank <model> <query> <documents as JSON> <top_n>   (CohereRerank.rerank; v2 rerank)
ChatCohere is made without a model unless one is given: it asks the proxy for its default chat model.
"""

import json
import sys

from langchain_cohere import ChatCohere, CohereEmbeddings, CohereRerank

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
elif action == "embed":
    embeddings = CohereEmbeddings(base_url=base_url, cohere_api_key=token, model=args[0])
    result = {"documents": embeddings.embed_documents(json.loads(args[1])), "query": embeddings.embed_query(args[2])}
elif action == "rerank":
    reranker = CohereRerank(base_url=base_url, cohere_api_key=token, model=args[0])
    result = {"results": reranker.rerank(json.loads(args[2]), args[1], top_n=int(args[3]))}
else:
    raise SystemExit(f"unknown action {action}")
print(json.dumps(result))
