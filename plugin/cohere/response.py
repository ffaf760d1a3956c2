"""OpenAI chat-completion response (as LiteLLM returns it) -> Cohere v2 chat response."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .citations import CitationMarkup, Source, Span, cohere_citation

_FINISH_REASONS = {
    "stop": "COMPLETE",
    "length": "MAX_TOKENS",
    "tool_calls": "TOOL_CALL",
    "function_call": "TOOL_CALL",
    "content_filter": "ERROR",
}


def finish_reason(openai_reason: str | None, matched_stop: object = None,
                  stop_sequences: Sequence[str] | None = None) -> str:
    """Cohere's finish reason. OpenAI says "stop" for a natural end and a stop sequence alike;
    providers that tell them apart report the matched sequence (`stop_reason`), which we honour."""
    if openai_reason == "stop" and isinstance(matched_stop, str) and stop_sequences \
            and matched_stop in stop_sequences:
        return "STOP_SEQUENCE"
    if openai_reason == "stop_sequence":
        return "STOP_SEQUENCE"
    return _FINISH_REASONS.get(openai_reason or "stop", "COMPLETE")


def usage(openai_usage: Mapping[str, Any] | None) -> dict[str, Any]:
    openai_usage = openai_usage or {}
    prompt = int(openai_usage.get("prompt_tokens") or 0)
    completion = int(openai_usage.get("completion_tokens") or 0)
    details = openai_usage.get("prompt_tokens_details") or {}
    cached = int(details.get("cached_tokens") or openai_usage.get("cache_read_input_tokens") or 0)
    tokens = {"input_tokens": prompt, "output_tokens": completion}
    return {"billed_units": dict(tokens), "tokens": tokens, "cached_tokens": cached}


def logprob_items(openai_logprobs: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """One Cohere item per token. Providers behind OpenAI's format report token text, not ids."""
    if not openai_logprobs:
        return []
    return [
        {"text": token.get("token", ""), "token_ids": [], "logprobs": [token.get("logprob", 0.0)]}
        for token in openai_logprobs.get("content") or []
    ]


def tool_call(openai_call: Mapping[str, Any]) -> dict[str, Any]:
    function = openai_call.get("function") or {}
    return {
        "id": openai_call.get("id") or "",
        "type": "function",
        "function": {"name": function.get("name") or "", "arguments": function.get("arguments") or ""},
    }


def reasoning_text(message: Mapping[str, Any]) -> str:
    """The model's thinking, from LiteLLM's `reasoning_content` or its Anthropic-style blocks."""
    text = message.get("reasoning_content") or message.get("reasoning")
    if text:
        return text
    blocks = message.get("thinking_blocks") or []
    return "".join(block.get("thinking") or "" for block in blocks if isinstance(block, Mapping))


def spans_from_annotations(annotations: Sequence[Mapping[str, Any]], text: str,
                           sources: Mapping[str, Source]) -> list[Span]:
    """A native provider's citations, as LiteLLM reports them (`url_citation` annotations, one per
    source, `url` = `source:<id>`), grouped back into spans over our text, with our sources."""
    grouped: dict[tuple[int, int], list[str]] = {}
    for annotation in annotations:
        cited = annotation.get("url_citation") or {}
        start, end = cited.get("start_index"), cited.get("end_index")
        url = str(cited.get("url") or "")
        source_id = _source_id(url.removeprefix("source:"), sources) if url.startswith("source:") else None
        if not isinstance(start, int) or not isinstance(end, int) or not 0 <= start < end <= len(text) \
                or source_id is None:
            continue
        ids = grouped.setdefault((start, end), [])
        if source_id not in ids:
            ids.append(source_id)
    return [Span(start, end, text[start:end], tuple(ids)) for (start, end), ids in sorted(grouped.items())]


def spans_from_cohere_citations(citations: Sequence[Any], sources: Mapping[str, Source]) -> list[Span]:
    """Cohere's own citations (a native stream's, which LiteLLM hands on in the delta's provider fields),
    with our sources: those whose span and sources are readable, each source re-attached to ours."""
    spans = []
    for citation in citations:
        if not isinstance(citation, Mapping):
            continue
        start, end, text = citation.get("start"), citation.get("end"), citation.get("text")
        ids: list[str] = []
        for source in citation.get("sources") or ():
            source_id = _source_id(str(source.get("id") or ""), sources) if isinstance(source, Mapping) else None
            if source_id is not None and source_id not in ids:
                ids.append(source_id)
        if isinstance(start, int) and isinstance(end, int) and 0 <= start < end and isinstance(text, str) and ids:
            spans.append(Span(start, end, text, tuple(ids)))
    return spans


def _source_id(cited: str, sources: Mapping[str, Source]) -> str | None:
    """Cohere names a tool result's block `<tool_call_id>:<n>`; ours is the tool call id alone when
    the result has one block."""
    if cited in sources:
        return cited
    base = cited.rsplit(":", 1)[0]
    return base if base in sources else None


def _without_markup(text: str, sources: Mapping[str, Source]) -> tuple[str, list[Span]]:
    markup = CitationMarkup(set(sources))
    clean, spans = markup.feed(text)
    rest, more = markup.finish()
    return clean + rest, spans + more


def to_cohere_response(openai: Mapping[str, Any], stop_sequences: Sequence[str] | None = None,
                       with_logprobs: bool = False, sources: Mapping[str, Source] | None = None,
                       native_citations: bool = False) -> dict[str, Any]:
    """`sources`: what the answer may cite. The model either marked its citations in the text
    (the default), or, with `native_citations`, its provider reported them (LiteLLM's annotations)."""
    choice = (openai.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    text = message.get("content") or ""
    calls = message.get("tool_calls") or []
    spans: list[Span] = []
    if sources and native_citations:
        spans = spans_from_annotations(message.get("annotations") or [], text, sources)
    elif sources:  # the model marked what it cites: clean text, and where the citations are
        text, spans = _without_markup(text, sources)

    content: list[dict[str, Any]] = []
    thinking = reasoning_text(message)
    if thinking:
        content.append({"type": "thinking", "thinking": thinking})
    cohere_message: dict[str, Any] = {"role": "assistant"}
    if calls:
        # Text beside tool calls is the model's plan for them: Cohere's `tool_plan`.
        if text:
            cohere_message["tool_plan"] = text
        cohere_message["tool_calls"] = [tool_call(call) for call in calls]
    elif text or not thinking:
        content.append({"type": "text", "text": text})
        if spans:
            cohere_message["citations"] = [cohere_citation(span, sources or {}, len(content) - 1) for span in spans]
    if content:
        cohere_message["content"] = content

    provider_fields = choice.get("provider_specific_fields") or {}
    matched_stop = choice.get("stop_reason", provider_fields.get("stop_reason"))
    reason = finish_reason(choice.get("finish_reason"), matched_stop, stop_sequences)
    if calls and reason == "COMPLETE":
        reason = "TOOL_CALL"
    response: dict[str, Any] = {
        "id": openai.get("id") or "",
        "finish_reason": reason,
        "message": cohere_message,
        "usage": usage(openai.get("usage")),
    }
    if with_logprobs:
        response["logprobs"] = logprob_items(choice.get("logprobs"))
    return response
