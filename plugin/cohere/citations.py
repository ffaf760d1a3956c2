"""Grounded answers for models without Cohere's native citations.

The model is given each source with an id and asked to wrap what it cites in Cohere's own
grounding markup, `<co: doc_0,doc_1>cited text</co: doc_0,doc_1>` (`</co>` closes too). `CitationMarkup`
removes the markup from the answer as it streams, chunk by chunk, and reports each citation's span
in the clean text. Whatever the chunking, the clean text and the citations are the same as for the
whole answer at once. Malformed or unclosed markup never loses text: an unclosed citation is
dropped, a tag that is not one is kept as text, ids that name no source are dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .schema import ChatRequest, Document, ToolMessage

OPEN = "<co:"
CLOSE = "</co"
MAX_TAG = 256  # characters from `<` to `>`; longer is not a tag, and bounds what a stream holds back

Source = dict[str, Any]  # {"type": "document", "id", "document"} or {"type": "tool", "id", "tool_output"}

INSTRUCTIONS = (
    "Cite your sources. Each source above starts with its id in square brackets. Wrap every part of "
    "your answer that uses a source in <co: ID>...</co: ID>, with the ids of the sources it uses, "
    "separated by commas, for example: <co: doc_0>Paris is the capital of France</co: doc_0>. "
    "Use only ids given above and no other markup for citations."
)


@dataclass(frozen=True)
class Span:
    """A citation found in the answer: `text == clean_answer[start:end]`, citing `ids`."""

    start: int
    end: int
    text: str
    ids: tuple[str, ...]


class CitationMarkup:
    """Per-answer state: feed text as it arrives, get clean text and the citations closed so far."""

    def __init__(self, known_ids: frozenset[str] | set[str]) -> None:
        self._known = frozenset(known_ids)
        self._pending = ""  # text that may be the beginning of a tag
        self._length = 0  # characters of clean text emitted so far
        self._open: tuple[int, tuple[str, ...], list[str]] | None = None  # start, ids, cited text parts

    def feed(self, text: str) -> tuple[str, list[Span]]:
        return self._scan(self._pending + text, final=False)

    def finish(self) -> tuple[str, list[Span]]:
        """The rest once the answer has ended; an unclosed citation is dropped (its text was kept)."""
        clean, spans = self._scan(self._pending, final=True)
        self._open = None
        return clean, spans

    def _scan(self, text: str, final: bool) -> tuple[str, list[Span]]:
        out: list[str] = []
        spans: list[Span] = []
        position = 0
        self._pending = ""
        while True:
            lt = text.find("<", position)
            if lt < 0:
                self._emit(text[position:], out)
                break
            self._emit(text[position:lt], out)
            rest = text[lt:lt + MAX_TAG]
            if rest.startswith((OPEN, CLOSE)):
                gt = rest.find(">")
                if gt >= 0:
                    self._tag(rest[:gt + 1], spans)
                    position = lt + gt + 1
                    continue
                if not final and len(text) - lt < MAX_TAG:
                    self._pending = text[lt:]  # the tag may end in the next chunk
                    break
            elif not final and len(text) - lt < len(CLOSE) and (OPEN.startswith(text[lt:])
                                                                 or CLOSE.startswith(text[lt:])):
                self._pending = text[lt:]  # "<", "<c", "</c"...: wait for the next chunk
                break
            self._emit("<", out)  # not a tag: plain text
            position = lt + 1
        return "".join(out), spans

    def _emit(self, text: str, out: list[str]) -> None:
        if text:
            out.append(text)
            self._length += len(text)
            if self._open is not None:
                self._open[2].append(text)

    def _tag(self, tag: str, spans: list[Span]) -> None:
        if tag.startswith(OPEN):
            if self._open is None:  # a citation opened inside another is ignored
                ids = tuple(dict.fromkeys(i.strip() for i in tag[len(OPEN):-1].split(",") if i.strip()))
                self._open = (self._length, ids, [])
            return
        if self._open is None:
            return  # a close without an open
        start, ids, parts = self._open
        self._open = None
        known = tuple(i for i in ids if i in self._known)
        text = "".join(parts)
        if known and text.strip():
            spans.append(Span(start, self._length, text, known))


def citation_sources(request: ChatRequest) -> dict[str, Source] | None:
    """The sources the answer may cite, by id; None when there are none or citations are off."""
    mode = request.citation_options.mode if request.citation_options else None
    if mode in ("OFF", "DISABLED"):
        return None
    return grounding_sources(request) or None


def document_sources(documents: list[str | Document]) -> dict[str, Source]:
    """The caller's `documents` by the id they are cited by: the caller's own, else `doc_<position>`."""
    sources: dict[str, Source] = {}
    for position, document in enumerate(documents):
        if isinstance(document, Document):
            doc_id = document.id or f"doc_{position}"
            data = dict(document.data)
        else:
            doc_id = f"doc_{position}"
            data = {"text": document}
        sources[doc_id] = {"type": "document", "id": doc_id, "document": {**data, "id": doc_id}}
    return sources


def tool_sources(message: ToolMessage) -> dict[str, Source]:
    """A tool result's sources, cited by its `tool_call_id` (`<id>:<n>` when it has several blocks)."""
    if isinstance(message.content, str):
        blocks: list[dict[str, Any]] = [{"text": message.content}]
    else:
        blocks = [dict(block.document.data) if block.type == "document" else {"text": block.text}
                  for block in message.content]
    if len(blocks) == 1:
        return {message.tool_call_id: {"type": "tool", "id": message.tool_call_id, "tool_output": blocks[0]}}
    return {f"{message.tool_call_id}:{n}": {"type": "tool", "id": f"{message.tool_call_id}:{n}",
                                            "tool_output": block} for n, block in enumerate(blocks)}


def grounding_sources(request: ChatRequest) -> dict[str, Source]:
    sources = document_sources(request.documents or [])
    for message in request.messages:
        if isinstance(message, ToolMessage):
            sources.update(tool_sources(message))
    return sources


def source_text(source: Source) -> str:
    """A source as the model reads it: its id in brackets, then its content."""
    data = source.get("document") or source.get("tool_output") or {}
    body = {k: v for k, v in data.items() if k != "id"}
    content = body["text"] if set(body) == {"text"} and isinstance(body["text"], str) \
        else json.dumps(body, ensure_ascii=False)
    return f"[{source['id']}] {content}"


def cohere_citation(span: Span, sources: Mapping[str, Source], content_index: int) -> dict[str, Any]:
    return {
        "start": span.start,
        "end": span.end,
        "text": span.text,
        "sources": [sources[i] for i in span.ids],
        "content_index": content_index,
        "type": "TEXT_CONTENT",
    }
