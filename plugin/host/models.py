"""The model list and tokenizers the Cohere models and tokenize routes answer from: the router's model
groups a caller may use, and LiteLLM's tokenizer for a model.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from ..cohere.errors import CohereError, redact
from .keys import Caller, may_call_model

log = logging.getLogger("mpilot")


async def model_groups(caller: Caller) -> list[Any]:
    """The router's model groups `caller` may use (LiteLLM's own model check, as the chat route's auth
    makes it), in the order of the proxy's `model_list`, as `cohere.models.ModelGroup`s. Wildcard
    groups (`openai/*`) name no model and are left out."""
    from litellm.proxy import proxy_server as proxy

    router = proxy.llm_router
    names: list[str] = []
    for deployment in (router.model_list if router else []):
        name = deployment.get("model_name")
        if isinstance(name, str) and name and "*" not in name and name not in names:
            names.append(name)
    return [_model_group(router, name) for name in names if await may_call_model(caller, name)]


def _model_group(router: Any, name: str) -> Any:
    from ..cohere.models import ModelGroup

    info = _group_info(router, name)
    deployments = [d for d in router.model_list if d.get("model_name") == name]
    max_input = getattr(info, "max_input_tokens", None)
    return ModelGroup(
        name=name,
        mode=getattr(info, "mode", None),
        max_input_tokens=int(max_input) if isinstance(max_input, int | float) and max_input > 0 else None,
        supports_function_calling=bool(getattr(info, "supports_function_calling", False)),
        supports_vision=bool(getattr(info, "supports_vision", False)),
        supports_response_schema=bool(deployments) and all(_supports_response_schema(d) for d in deployments),
    )


def _group_info(router: Any, name: str) -> Any:
    """LiteLLM's info of a model group (mode, limits, what it supports, from the deployments' model_info
    and its model map). Release adapter: `registry().group(name)` from 1.110 (which deprecates the old
    name), `get_model_group_info(name)` before."""
    try:
        if hasattr(router, "registry"):
            return router.registry().group(name)
        return router.get_model_group_info(model_group=name)
    except Exception as error:  # noqa: BLE001  # a group LiteLLM cannot describe is still listed, bare
        log.warning("MPilot models: no model info for %r (%s)", name, type(error).__name__)
        return None


def _supports_response_schema(deployment: Mapping[str, Any]) -> bool:
    """The deployment's `model_info.supports_response_schema` when set, else LiteLLM's model map (its
    model group info does not carry this one)."""
    configured = (deployment.get("model_info") or {}).get("supports_response_schema")
    if isinstance(configured, bool):
        return configured
    import litellm

    params = deployment.get("litellm_params") or {}
    try:
        return bool(litellm.supports_response_schema(model=str(params.get("model") or ""),
                                                     custom_llm_provider=params.get("custom_llm_provider")))
    except Exception:  # noqa: BLE001  # a model LiteLLM does not know supports nothing it could promise
        return False


class ModelTokenizer:
    """The tokenizer LiteLLM picks for a model group's first deployment (its token counter's): a
    HuggingFace tokenizer for some models, tiktoken for the rest. `name` says which; `warnings` say when
    it is not the model's own."""

    def __init__(self, selected: Mapping[str, Any], kind: str | None) -> None:
        self._tokenizer = selected["tokenizer"]
        self._huggingface = selected.get("type") == "huggingface_tokenizer"
        self.warnings: list[str] = []
        if self._huggingface:
            self.name = f"huggingface/{kind}" if kind else "huggingface"
        else:
            self.name = f"tiktoken/{getattr(self._tokenizer, 'name', 'default')}"
            self.warnings.append(
                f"the model's own tokenizer ({kind}, from HuggingFace) could not be loaded; tokens are counted "
                f"with {self.name} and may differ from the model's" if kind else
                f"LiteLLM has no tokenizer of this model's own; tokens are counted with its default, {self.name}, "
                "and may differ from the model's")

    def encode(self, text: str) -> tuple[list[int], list[str]]:
        """Token ids and each token's text. Without special tokens (a BOS), as Cohere's SDKs tokenize."""
        if self._huggingface:
            encoding = self._tokenizer.encode(text, add_special_tokens=False)
            # Tokens that split one character (byte-level BPE) share its span: the first carries it.
            strings, covered = [], 0
            for start, end in encoding.offsets:
                strings.append(text[max(start, covered):end])
                covered = max(covered, end)
            return list(encoding.ids), strings
        ids = self._tokenizer.encode(text, disallowed_special=())
        return ids, [self._tokenizer.decode_single_token_bytes(i).decode("utf-8", errors="replace") for i in ids]

    def decode(self, tokens: list[int]) -> str:
        """`tokens` as text; `CohereError` 400 naming the first id that is not one of this tokenizer's."""
        vocabulary = self._tokenizer.get_vocab_size() if self._huggingface else self._tokenizer.n_vocab
        for index, token in enumerate(tokens):
            if token >= vocabulary:
                raise CohereError(400, f"tokens[{index}]: {token} is not a token of {self.name} "
                                       f"(ids are below {vocabulary})", code="invalid_field")
        try:
            return self._tokenizer.decode(tokens)
        except (KeyError, ValueError) as error:  # tiktoken's vocabulary has gaps
            raise CohereError(400, f"tokens: not all are tokens of {self.name} ({redact(str(error))[:200]})",
                              code="invalid_field") from None


async def model_tokenizer(model_group: str) -> ModelTokenizer:
    """LiteLLM's tokenizer for `model_group`, picked by the model of its first deployment without the
    provider prefix (as LiteLLM's `/utils/token_counter` does). Picked in a worker thread: a tokenizer
    LiteLLM downloads from HuggingFace (Cohere's command-r, Llama) takes a network call the first time,
    and without a network, LiteLLM gives up after ~25 s of retries and picks tiktoken (then remembers)."""
    from litellm import utils
    from litellm.proxy import proxy_server as proxy

    router = proxy.llm_router
    deployment = next((d for d in (router.model_list if router else []) if d.get("model_name") == model_group), {})
    model = str((deployment.get("litellm_params") or {}).get("model") or model_group)
    model = model.split("/", 1)[1] if "/" in model else model
    # Release adapter: public `select_tokenizer` in 1.110, `_select_tokenizer` before (1.110 keeps that too).
    select = getattr(utils, "select_tokenizer", None) or utils._select_tokenizer
    kind_of = getattr(utils, "huggingface_tokenizer_kind", None)  # 1.110; earlier releases: not named
    selected = await asyncio.to_thread(select, model=model)
    return ModelTokenizer(selected, kind_of(model) if kind_of else None)
