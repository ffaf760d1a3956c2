"""OpenAI chat-completion chunks -> Cohere v2 stream events, one chunk at a time.

A `CohereStream` is made per request and holds that stream's state: which content block or tool
call is open, and the finish reason and usage seen so far. Nothing is buffered beyond that: each
chunk's events are returned as soon as the chunk is fed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .citations import CitationMarkup, Source, Span, cohere_citation
from .response import finish_reason, logprob_items, spans_from_cohere_citations, usage
from .wire import dumps

Event = dict[str, Any]


class CohereStream:
    def __init__(self, stop_sequences: Sequence[str] | None = None, with_logprobs: bool = False,
                 sources: Mapping[str, Source] | None = None, native_citations: bool = False) -> None:
        """`sources`: what the answer may cite. The model marks its citations in the text (the default), or,
        with `native_citations`, its provider reports them (Cohere's, in each delta's provider fields)."""
        self._stop_sequences = stop_sequences
        self._with_logprobs = with_logprobs
        self._sources = sources or {}
        self._native = native_citations
        self._markup = CitationMarkup(set(self._sources)) if sources and not native_citations else None
        self._citations = 0  # citation events sent
        self._text_index = 0  # the content index of the text block, which citations point into
        self.started = False
        self.ended = False
        self._block_type: str | None = None  # "text" or "thinking" while a content block is open
        self._block_index = -1
        self._tool_index = -1  # the Cohere index of the open tool call
        self._tool_call_open = False
        self._openai_tool_index: int | None = None
        self._openai_finish: str | None = None
        self._matched_stop: object = None
        self._usage: Mapping[str, Any] | None = None

    def feed(self, chunk: Mapping[str, Any]) -> list[Event]:
        events: list[Event] = []
        if not self.started:
            events.append(self._message_start(chunk.get("id") or ""))
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            thinking = delta.get("reasoning_content") or delta.get("reasoning")
            if thinking:
                events.extend(self._content("thinking", thinking, None))
            # Cohere's own models plan their tool calls aloud, and cite natively; LiteLLM keeps both in the
            # delta's provider fields (`host.read_cohere_sse_streams`).
            provider_fields = delta.get("provider_specific_fields") or {}
            plan = provider_fields.get("tool_plan")
            if isinstance(plan, str) and plan:
                events.append({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": plan}}})
            text = delta.get("content")
            if text:
                logprobs = logprob_items(choice.get("logprobs")) if self._with_logprobs else []
                events.extend(self._text(text, logprobs))
            for call in delta.get("tool_calls") or ():
                events.extend(self._tool_call(call))
            if self._native and provider_fields.get("citations"):
                events.extend(self._citations_of(spans_from_cohere_citations(provider_fields["citations"],
                                                                             self._sources)))
            if choice.get("finish_reason"):
                self._openai_finish = choice["finish_reason"]
                provider_fields = choice.get("provider_specific_fields") or {}
                self._matched_stop = choice.get("stop_reason", provider_fields.get("stop_reason"))
        return events

    def finish(self) -> list[Event]:
        """The closing events once the upstream stream has ended normally."""
        reason = finish_reason(self._openai_finish, self._matched_stop, self._stop_sequences)
        if self._tool_index >= 0 and reason == "COMPLETE":
            reason = "TOOL_CALL"
        return self._end({"finish_reason": reason, "usage": usage(self._usage)})

    def fail(self, message: str, timed_out: bool = False) -> list[Event]:
        """The closing events for an upstream failure after the stream has started."""
        return self._end({
            "finish_reason": "TIMEOUT" if timed_out else "ERROR",
            "error": message,
            "usage": usage(self._usage),
        })

    def _text(self, text: str, logprobs: list[dict[str, Any]] | None) -> list[Event]:
        if self._markup is None:
            return self._content("text", text, logprobs)
        clean, spans = self._markup.feed(text)
        return self._grounded(clean, spans, logprobs)

    def _grounded(self, clean: str, spans: list[Span], logprobs: list[dict[str, Any]] | None) -> list[Event]:
        """Clean text, then the citations that closed in it: a citation follows the text it covers."""
        events = self._content("text", clean, logprobs) if clean else []
        return events + self._citations_of(spans)

    def _citations_of(self, spans: list[Span]) -> list[Event]:
        events: list[Event] = []
        for span in spans:
            citation = cohere_citation(span, self._sources, self._text_index)
            events.append({"type": "citation-start", "index": self._citations,
                           "delta": {"message": {"citations": citation}}})
            events.append({"type": "citation-end", "index": self._citations})
            self._citations += 1
        return events

    def _end(self, delta: dict[str, Any]) -> list[Event]:
        if self.ended:
            return []
        events = [] if self.started else [self._message_start("")]
        if self._markup is not None:  # text held back for a tag that never completed
            events.extend(self._grounded(*self._markup.finish(), None))
        events.extend(self._close_open())
        events.append({"type": "message-end", "delta": delta})
        self.ended = True
        return events

    def _message_start(self, message_id: str) -> Event:
        self.started = True
        return {"type": "message-start", "id": message_id, "delta": {"message": {"role": "assistant"}}}

    def _content(self, block_type: str, text: str, logprobs: list[dict[str, Any]] | None) -> list[Event]:
        events: list[Event] = []
        if self._block_type != block_type:
            events.extend(self._close_open())
            self._block_index += 1
            self._block_type = block_type
            if block_type == "text":
                self._text_index = self._block_index
            events.append({
                "type": "content-start",
                "index": self._block_index,
                "delta": {"message": {"content": {"type": block_type, block_type: ""}}},
            })
        event: Event = {
            "type": "content-delta",
            "index": self._block_index,
            "delta": {"message": {"content": {block_type: text}}},
        }
        if logprobs:
            event["logprobs"] = _merge_logprobs(logprobs)
        events.append(event)
        return events

    def _tool_call(self, call: Mapping[str, Any]) -> list[Event]:
        events: list[Event] = []
        function = call.get("function") or {}
        openai_index = call.get("index", 0)
        starts_new = call.get("id") or (self._tool_call_open and openai_index != self._openai_tool_index) \
            or not self._tool_call_open
        if starts_new:
            events.extend(self._close_open())
            self._tool_index += 1
            self._tool_call_open = True
            self._openai_tool_index = openai_index
            events.append({
                "type": "tool-call-start",
                "index": self._tool_index,
                "delta": {"message": {"tool_calls": {
                    "id": call.get("id") or f"call_{self._tool_index}",
                    "type": "function",
                    "function": {"name": function.get("name") or "", "arguments": ""},
                }}},
            })
        arguments = function.get("arguments")
        if arguments:
            events.append({
                "type": "tool-call-delta",
                "index": self._tool_index,
                "delta": {"message": {"tool_calls": {"function": {"arguments": arguments}}}},
            })
        return events

    def _close_open(self) -> list[Event]:
        if self._block_type is not None:
            self._block_type = None
            return [{"type": "content-end", "index": self._block_index}]
        if self._tool_call_open:
            self._tool_call_open = False
            return [{"type": "tool-call-end", "index": self._tool_index}]
        return []


def _merge_logprobs(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A content delta carries one logprob item: the chunk's tokens joined."""
    return {
        "text": "".join(item["text"] for item in items),
        "token_ids": [],
        "logprobs": [value for item in items for value in item["logprobs"]],
    }


def sse(event: Event) -> bytes:
    """The wire frame of one event: `event:` + `data:` lines, as Cohere sends them."""
    return b"event: " + event["type"].encode() + b"\ndata: " + dumps(event) + b"\n\n"
