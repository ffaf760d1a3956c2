"""Drives the cohere Python SDK 5.x (its own venv, .cache/clients/cohere5) against the proxy for
tests/test_clients.py, and prints what the SDK made of the answer as one JSON document:
    .cache/clients/cohere5/bin/python tests/clients/cohere5_client.py <base_url> <token> chat <model>
    .cache/clients/cohere5/bin/python tests/clients/cohere5_client.py <base_url> <token> models-list
    ... embed <model> <texts as JSON>                     (float and int8)
    ... rerank <model> <query> <documents as JSON> <top_n>
"""

import json
import sys

import cohere

base_url, token, action, *args = sys.argv[1:]
client = cohere.ClientV2(api_key=token, base_url=base_url, timeout=30)
if action == "chat":
    answer = client.chat(model=args[0], messages=[{"role": "user", "content": "hi"}])
    result = {"version": cohere.__version__, "text": answer.message.content[0].text,
              "finish_reason": answer.finish_reason}
elif action == "models-list":
    listed = client.models.list(page_size=1000)
    result = {"version": cohere.__version__,
              "models": [{"name": m.name, "endpoints": m.endpoints} for m in listed.models]}
elif action == "embed":
    answer = client.embed(model=args[0], texts=json.loads(args[1]), input_type="search_document",
                          embedding_types=["float", "int8"])
    result = {"version": cohere.__version__, "id": answer.id, "float": answer.embeddings.float_,
              "int8": answer.embeddings.int8, "texts": answer.texts,
              "input_tokens": answer.meta.billed_units.input_tokens}
elif action == "rerank":
    answer = client.rerank(model=args[0], query=args[1], documents=json.loads(args[2]), top_n=int(args[3]))
    result = {"version": cohere.__version__, "id": answer.id,
              "results": [[r.index, r.relevance_score] for r in answer.results],
              "search_units": answer.meta.billed_units.search_units}
else:
    raise SystemExit(f"unknown action {action}")
print(json.dumps(result))
