"""Drives the cohere Python SDK 5.x (its own venv, .cache/clients/cohere5) against the proxy for
tests/test_clients.py, and prints what the SDK made of the answer as one JSON document:
    .cache/clients/cohere5/bin/python tests/clients/cohere5_client.py <base_url> <token> chat <model>
    .cache/clients/cohere5/bin/python tests/clients/cohere5_client.py <base_url> <token> models-list
    ... embed <model> <texts as JSON>                     (float and int8)
    ... rerank <model> <query> <documents as JSON> <top_n>
    ... v1-chat <model> | v1-chat-stream <model> | v1-tools <model> | v1-rerank <model> <query> <documents as JSON>
    ... v1-generate <model> | v1-generate-stream <model>     (cohere.Client: Cohere's v1 API)
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
elif action.startswith("v1-"):
    v1 = cohere.Client(api_key=token, base_url=base_url, timeout=30)
    weather = {"name": "get_weather", "description": "Current weather",
               "parameter_definitions": {"city": {"type": "str", "required": True}}}
    if action == "v1-chat":
        answer = v1.chat(model=args[0], message="hi", preamble="Be kind.",
                         chat_history=[{"role": "USER", "message": "earlier"}, {"role": "CHATBOT", "message": "yes"}])
        result = {"text": answer.text, "finish_reason": answer.finish_reason,
                  "history": [m.role for m in answer.chat_history]}
    elif action == "v1-chat-stream":
        events = list(v1.chat_stream(model=args[0], message="hi"))
        result = {"kinds": [e.event_type for e in events],
                  "text": "".join(e.text for e in events if e.event_type == "text-generation"),
                  "end_text": events[-1].response.text}
    elif action == "v1-tools":
        first = v1.chat(model=args[0], message="Weather in Paris?", tools=[weather])
        calls = [{"name": c.name, "parameters": c.parameters} for c in first.tool_calls or []]
        second = v1.chat(model=args[0], message="", tools=[weather], chat_history=first.chat_history,
                         tool_results=[{"call": first.tool_calls[0], "outputs": [{"sky": "sunny"}]}])
        result = {"calls": calls, "text": second.text, "history": [m.role for m in second.chat_history]}
    elif action == "v1-rerank":
        answer = v1.rerank(model=args[0], query=args[1], documents=json.loads(args[2]), return_documents=True)
        result = {"results": [[r.index, r.relevance_score, r.document.text] for r in answer.results]}
    elif action == "v1-generate":
        answer = v1.generate(model=args[0], prompt="Tell a story")
        result = {"text": answer.generations[0].text}
    elif action == "v1-generate-stream":
        events = list(v1.generate_stream(model=args[0], prompt="Tell a story"))
        result = {"text": "".join(e.text for e in events if e.event_type == "text-generation"),
                  "end": events[-1].event_type}
    else:
        raise SystemExit(f"unknown action {action}")
    result["version"] = cohere.__version__
else:
    raise SystemExit(f"unknown action {action}")
print(json.dumps(result))
