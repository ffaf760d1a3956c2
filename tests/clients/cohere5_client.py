"""Drives the cohere Python SDK 5.x (its own venv, .cache/clients/cohere5) against the proxy for
tests/test_clients.py, and prints what the SDK made of the answer as one JSON document:
    .cache/clients/cohere5/bin/python tests/clients/cohere5_client.py <base_url> <token> chat <model>
    .cache/clients/cohere5/bin/python tests/clients/cohere5_client.py <base_url> <token> models-list
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
else:
    raise SystemExit(f"unknown action {action}")
print(json.dumps(result))
