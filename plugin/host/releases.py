"""Adapters for LiteLLM releases whose behaviour the plugin must change: LiteLLM's Cohere provider's stream
reader, and the finish reason LiteLLM fills in for a stream its provider cut off.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from litellm.llms.base_llm.base_model_iterator import BaseModelResponseIterator
from litellm.llms.cohere.common_utils import CohereError as CohereProviderError
from litellm.types.utils import ChatCompletionUsageBlock, GenericStreamingChunk

from .calls import _stream_end


def served_by_cohere(model: str) -> bool:
    """Whether every deployment of `model` goes to Cohere's v2 chat API through LiteLLM's Cohere
    provider, which takes Cohere's own `documents` and reports its citations."""
    from litellm.proxy import proxy_server as proxy

    router = proxy.llm_router
    deployments = [d for d in (router.model_list if router else []) if d.get("model_name") == model]

    def cohere_v2(deployment: Any) -> bool:
        params = deployment.get("litellm_params") or {}
        name = str(params.get("model") or "")
        provider = params.get("custom_llm_provider") or name.split("/", 1)[0]
        return provider in ("cohere", "cohere_chat") and "v1/" not in name

    return bool(deployments) and all(cohere_v2(d) for d in deployments)


# --- adapters for LiteLLM releases -----------------------------------------------------------------------


def read_cohere_sse_streams() -> bool:
    """Make LiteLLM's Cohere v2 chat provider (`cohere/...` and `cohere_chat/...` models) read Cohere's
    real stream. True when the plugin's reader is in place, False when the release reads it itself.

    Needed by LiteLLM 1.100 up to 1.110.2 at least (1.108.7 pinned): the reader its
    `CohereV2ChatConfig.get_model_response_iterator` makes, `CohereV2ModelResponseIterator`
    (`litellm/llms/cohere/common_utils.py`), runs `json.loads` on every raw line, so Cohere's SSE (an
    `event:` and a `data:` line per event, a blank line after) fails on the first line ("Error parsing
    chunk ... Received chunk: event: message-start"). Its `chunk_parser` also looks for the tool plan,
    citations and message-end under an `event` key Cohere's events do not have (they carry `type`),
    for tool-call arguments under `delta.tool_calls` (Cohere: `delta.message.tool_calls`), never reads a
    tool call's id and name (`tool-call-start`), and gives a tool call's index as the choice's.

    The one method replaced makes sync and async streams' readers. Untouched: Cohere's v1 chat
    (`.../v1/...` models: `CohereChatConfig`, newline-delimited JSON, which its reader reads), non-stream
    answers, and the `/cohere` pass-through's logging. A release whose own reader reads a sample Cohere
    stream correctly keeps it. Idempotent: LiteLLM runs a config-referenced module once per reference.
    """
    from litellm.llms.cohere.chat.v2_transformation import CohereV2ChatConfig

    if CohereV2ChatConfig.__dict__.get("get_model_response_iterator") is _cohere_sse_reader:
        return True
    if _reads_cohere_sse(CohereV2ChatConfig()):
        return False
    CohereV2ChatConfig.get_model_response_iterator = _cohere_sse_reader  # type: ignore[method-assign]
    return True


def notice_cut_off_streams() -> None:
    """Let `complete` tell a stream its provider cut off from one it finished.

    LiteLLM ends every stream it relays with a finish reason: when the provider sent none (an empty or an
    HTML 200, an SSE body without `data:` lines, a Cohere stream without its message-end),
    `CustomStreamWrapper.finish_reason_handler` fills in "stop" (1.100 to 1.110.2; since 1.109 LiteLLM raises
    instead, but only for OpenAI-format streams that sent a chunk), and the cut-off answer looks complete. The
    stream our route is handed cannot tell: the router wraps the provider's wrapper in one of its own
    (1.110: `_AsyncChatStream`), whose finish reasons stay empty. So the handler is wrapped to note, for our
    route's requests only (`_stream_end` is set), that it filled one in; it still fills it in, so every other
    route is unchanged. Idempotent: LiteLLM runs a config-referenced module once per reference.
    """
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper

    fill_in = CustomStreamWrapper.finish_reason_handler
    if getattr(fill_in, "_mpilot_notices", False):
        return

    @functools.wraps(fill_in)
    def finish_reason_handler(self: Any, *args: Any, **kwargs: Any) -> Any:
        stream_end = _stream_end.get()
        if stream_end is not None and self.received_finish_reason is None \
                and self.intermittent_finish_reason is None and not _is_mock(self):  # LiteLLM's own test
            stream_end.filled_in = True
        return fill_in(self, *args, **kwargs)

    finish_reason_handler._mpilot_notices = True  # type: ignore[attr-defined]
    CustomStreamWrapper.finish_reason_handler = finish_reason_handler  # type: ignore[method-assign]


def _is_mock(stream: Any) -> bool:
    """A stream of LiteLLM's `mock_response` (no provider; it never carries a finish reason): flagged by
    LiteLLM since 1.109 (`is_mock`), known by its generator before."""
    if getattr(stream, "is_mock", False):
        return True
    generator = getattr(stream, "completion_stream", None)
    code = getattr(generator, "ag_code", None) or getattr(generator, "gi_code", None)
    return getattr(code, "co_name", "").endswith("mock_completion_streaming_obj")


def _cohere_sse_reader(self: Any, streaming_response: Any, sync_stream: bool, json_mode: bool | None = False) -> Any:
    """`CohereV2ChatConfig.get_model_response_iterator`, the plugin's (see `read_cohere_sse_streams`)."""
    return CohereSSEReader(streaming_response=streaming_response, sync_stream=sync_stream, json_mode=json_mode)


# One stream with text, a tool call and the end: what a release must read to keep its own reader.
_SAMPLE_COHERE_STREAM = [
    line
    for event in (
        {"type": "message-start", "id": "probe", "delta": {"message": {"role": "assistant"}}},
        {"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}},
        {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Hi"}}}},
        {"type": "content-end", "index": 0},
        {"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": {
            "id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": ""}}}}},
        {"type": "tool-call-delta", "index": 0,
         "delta": {"message": {"tool_calls": {"function": {"arguments": "{}"}}}}},
        {"type": "tool-call-end", "index": 0},
        {"type": "message-end", "delta": {"finish_reason": "TOOL_CALL", "usage": {
            "billed_units": {"input_tokens": 1, "output_tokens": 2},
            "tokens": {"input_tokens": 3, "output_tokens": 2}}}},
    )
    for line in (f"event: {event['type']}", f"data: {json.dumps(event)}", "")
]


def _reads_cohere_sse(config: Any) -> bool:
    """Whether `config`'s own stream reader gets the sample's text, tool call, finish reason and usage,
    as LiteLLM's generic stream chunks (what its Cohere reader has always yielded)."""
    try:
        chunks = list(config.get_model_response_iterator(streaming_response=iter(_SAMPLE_COHERE_STREAM),
                                                         sync_stream=True))
        text = "".join(chunk.get("text") or "" for chunk in chunks)
        calls = [chunk["tool_use"] for chunk in chunks if chunk.get("tool_use")]
        call = (calls[0]["id"], calls[0]["function"]["name"], "".join(c["function"]["arguments"] or "" for c in calls))
        usage = next(chunk["usage"] for chunk in chunks if chunk.get("usage"))
        finish = next(chunk["finish_reason"] for chunk in chunks if chunk.get("is_finished"))
    except Exception:  # noqa: BLE001  # any failure to read it means the release cannot
        return False
    return (text, call, finish, usage.get("prompt_tokens")) == ("Hi", ("call_0", "get_weather", "{}"), "tool_calls", 3)


# Cohere's finish reasons in OpenAI's words. ERROR and TIMEOUT end a stream with an error instead.
_OPENAI_FINISH = {"COMPLETE": "stop", "STOP_SEQUENCE": "stop", "MAX_TOKENS": "length", "TOOL_CALL": "tool_calls"}


class CohereSSEReader(BaseModelResponseIterator):
    """Cohere's v2 chat stream, SSE lines in, LiteLLM's generic stream chunks out; one per stream.

    A LiteLLM base iterator, as its other providers' readers are (its Cohere reader is not): LiteLLM's
    HTTP handler then hands it the HTTP response, which its `close`/`aclose` release."""

    def __next__(self) -> GenericStreamingChunk:
        for line in self.response_iterator:
            chunk = self.chunk_for(line)
            if chunk is not None:
                return chunk
        raise StopIteration

    async def __anext__(self) -> GenericStreamingChunk:
        async for line in self.async_response_iterator:
            chunk = self.chunk_for(line)
            if chunk is not None:
                return chunk
        raise StopAsyncIteration

    def chunk_for(self, line: str | bytes) -> GenericStreamingChunk | None:
        """The chunk one line of the stream makes; None for lines and events that carry nothing for
        LiteLLM (`event:` lines, since the type is in the JSON too; blank lines; `:` comments;
        message-start, content-start/end, tool-call-end, citation-end)."""
        text = line.decode() if isinstance(line, bytes) else line
        if text.startswith("data:"):
            payload = text[5:].strip()
        elif text.lstrip().startswith("{"):
            payload = text  # one JSON object a line, which LiteLLM's own reader took: kept working
        else:
            return None
        try:
            event = json.loads(payload)
        except ValueError:
            raise ValueError(f"Cohere stream: a data line is not JSON: {payload[:200]!r}") from None
        return self.chunk_parser(event) if isinstance(event, dict) else None

    def chunk_parser(self, chunk: dict) -> GenericStreamingChunk | None:  # type: ignore[override]
        """One Cohere stream event (its `type` inside) as LiteLLM's generic chunk. The tool plan and
        citations go where LiteLLM's own parser puts them, in `provider_specific_fields` (`tool_plan`,
        `citations`: a list of Cohere's citation objects), which LiteLLM hands on in each delta's
        `provider_specific_fields`."""
        kind = chunk.get("type")
        delta = chunk.get("delta") or {}
        message = delta.get("message") or {}
        if kind == "content-delta":
            content = message.get("content")
            text = content.get("text") if isinstance(content, dict) else None  # thinking deltas: not read
            return _generic(text=text) if text else None
        if kind == "tool-plan-delta":
            plan = message.get("tool_plan")
            return _generic(provider_specific_fields={"tool_plan": plan}) if plan else None
        if kind in ("tool-call-start", "tool-call-delta"):
            call = message.get("tool_calls") or {}
            function = call.get("function") or {}
            starts = kind == "tool-call-start"
            if not starts and not function.get("arguments"):
                return None
            # `index` counts Cohere's tool calls, as OpenAI's tool-call index does; the choice is always 0.
            return _generic(tool_use={"id": call.get("id") if starts else None, "type": "function",
                                      "function": {"name": function.get("name") if starts else None,
                                                   "arguments": function.get("arguments") or ""},
                                      "index": int(chunk.get("index") or 0)})
        if kind == "citation-start":
            citation = message.get("citations")
            return _generic(provider_specific_fields={"citations": [citation]}) if citation else None
        if kind == "message-end":
            reason = str(delta.get("finish_reason") or "COMPLETE")
            if reason in ("ERROR", "TIMEOUT") or delta.get("error"):
                # A stream Cohere broke off is a failure, not an answer that ended well.
                error = f"Cohere ended the stream with {reason}" + (f": {delta['error']}" if delta.get("error") else "")
                raise CohereProviderError(status_code=504 if reason == "TIMEOUT" else 500, message=error)
            return _generic(is_finished=True, finish_reason=_OPENAI_FINISH.get(reason, "stop"),
                            usage=_cohere_usage(delta.get("usage")))
        return None


def _generic(**fields: Any) -> GenericStreamingChunk:
    chunk = GenericStreamingChunk(text="", tool_use=None, is_finished=False, finish_reason="", usage=None, index=0,
                                  provider_specific_fields=None)
    chunk.update(fields)  # type: ignore[typeddict-item]
    return chunk


def _cohere_usage(usage: Any) -> ChatCompletionUsageBlock | None:
    """Cohere's counted tokens, as LiteLLM's non-stream Cohere answers report them (not the billed units)."""
    tokens = usage.get("tokens") if isinstance(usage, dict) else None
    if not isinstance(tokens, dict):
        return None
    prompt, completion = int(tokens.get("input_tokens") or 0), int(tokens.get("output_tokens") or 0)
    block = ChatCompletionUsageBlock(prompt_tokens=prompt, completion_tokens=completion,
                                     total_tokens=prompt + completion)
    if usage.get("cached_tokens"):
        block["prompt_tokens_details"] = {"cached_tokens": int(usage["cached_tokens"])}
    return block
