"""Cohere embed (v2, and v1 as LangChain's CohereEmbeddings still calls it) <-> OpenAI embeddings: the
request as Cohere's SDKs send it, the OpenAI-format body LiteLLM's embedding call takes, and Cohere's
answer with each asked-for embedding type.

v1 and v2 share the fields v1 has (texts, images, model, embedding_types, truncate); v1's `input_type` is
optional, and v2 added `inputs`, `output_dimension`, `max_tokens` and `priority`. Their answers differ
only in v1's float-only shape, when no embedding types are named (`embeddings_floats`).

Providers behind LiteLLM's OpenAI format answer floats only, so every other type is derived here from
the floats, per vector (the same text always gets the same codes, whatever else is in the request):

- `int8`: symmetric scalar quantisation, `round(x * 127 / max|x|)` (halves away from zero), in -127..127.
  Cohere calibrates its ranges on its side over a corpus, which a proxy cannot; one scale per vector
  uses the whole code range for that vector, keeps 0 at 0 and the signs, so cosine similarity of the
  codes follows that of the floats. Dot products of codes carry each vector's own scale: compare int8
  and uint8 embeddings by cosine.
- `uint8`: the int8 codes plus 128 (1..255), so both types rank alike.
- `ubinary`: one bit per dimension, set where the value is > 0, packed 8 to a byte, first dimension in
  the highest bit (numpy's `packbits`), 0..255; a dimension count that is not a multiple of 8 is padded
  with 0 bits. `binary`: the same bytes minus 128 (-128..127), as Cohere and sentence-transformers do.
- `base64`: the float32 little-endian bytes of the vector, base64-encoded, as Cohere's API answers it.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, Field, field_validator

from .errors import CohereError
from .schema import RequestSchema, parse_body

MAX_INPUTS = 96  # Cohere's limit per call, for texts and for inputs
EmbeddingType = Literal["float", "int8", "uint8", "binary", "ubinary", "base64"]
InputType = Literal["search_document", "search_query", "classification", "clustering", "image"]
RequestT = TypeVar("RequestT", bound="_EmbedFields")


def _data_uri(url: str) -> str:
    if not url.startswith("data:"):
        raise ValueError("must be a base64 data URI (data:image/...;base64,...)")
    return url


DataUri = Annotated[str, AfterValidator(_data_uri)]  # Cohere takes images as data URIs only


class EmbedImageUrl(RequestSchema):
    url: DataUri


class TextPart(RequestSchema):
    type: Literal["text"]
    text: str


class ImagePart(RequestSchema):
    type: Literal["image_url"]
    image_url: EmbedImageUrl


class EmbedInput(RequestSchema):
    content: list[Annotated[TextPart | ImagePart, Field(discriminator="type")]] = Field(min_length=1)

    @field_validator("content")
    @classmethod
    def _one_part(cls, content: list[TextPart | ImagePart]) -> list[TextPart | ImagePart]:
        # LiteLLM's embedding call takes one string (a text or an image's data URI) per input: parts
        # fused into one embedding cannot be passed on to any provider through it.
        if len(content) > 1:
            raise ValueError(f"has {len(content)} parts; this proxy embeds one text or one image per input "
                             "(send each part as an input of its own)")
        return content


class _EmbedFields(RequestSchema):
    """The fields Cohere's v1 and v2 embed bodies share, validated alike."""

    model: str = Field(min_length=1)
    texts: list[str] | None = Field(default=None, min_length=1, max_length=MAX_INPUTS)
    images: list[DataUri] | None = Field(default=None, min_length=1)
    embedding_types: list[EmbeddingType] | None = Field(default=None, min_length=1)
    truncate: Literal["NONE", "START", "END"] | None = None

    @field_validator("truncate", mode="before")
    @classmethod
    def _truncate_any_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    def items(self) -> list[str]:
        """What is embedded, one string per input: a text, or an image's data URI (LiteLLM's convention
        for image embeddings)."""
        return list(self.texts if self.texts is not None else self.images or [])

    def types(self) -> list[EmbeddingType]:
        """The asked-for embedding types, each once, in the order asked; floats when none are named."""
        return list(dict.fromkeys(self.embedding_types or ["float"]))


class EmbedV1Request(_EmbedFields):
    """Cohere's v1 embed body (`POST /v1/embed`), as `cohere.Client.embed` sends it."""

    input_type: InputType | None = None


class EmbedRequest(_EmbedFields):
    """Cohere's v2 embed body (`POST /v2/embed`)."""

    input_type: InputType
    inputs: list[EmbedInput] | None = Field(default=None, min_length=1, max_length=MAX_INPUTS)
    output_dimension: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    priority: int | None = Field(default=None, ge=0, le=999)

    def items(self) -> list[str]:
        if self.inputs is None:
            return super().items()
        return [part.text if isinstance(part, TextPart) else part.image_url.url
                for one in self.inputs for part in one.content]


AnyEmbedRequest = EmbedRequest | EmbedV1Request


def parse_embed_request(body: bytes) -> EmbedRequest:
    """A raw `/v2/embed` body; a bad one raises `CohereError` (400) naming the field."""
    return _one_kind_of_input(parse_body(EmbedRequest, body), ("texts", "images", "inputs"))


def parse_embed_v1_request(body: bytes) -> EmbedV1Request:
    """A raw `/v1/embed` body; a bad one raises `CohereError` (400) naming the field."""
    return _one_kind_of_input(parse_body(EmbedV1Request, body), ("texts", "images"))


def _one_kind_of_input(request: RequestT, names: tuple[str, ...]) -> RequestT:
    given = [name for name in names if getattr(request, name) is not None]
    if not given:
        raise CohereError(400, f"one of {', '.join(names[:-1])} or {names[-1]} is required", code="missing_field")
    if len(given) > 1:
        raise CohereError(400, f"send one of {', '.join(names[:-1])} or {names[-1]}, not {' and '.join(given)}",
                          code="invalid_field")
    return request


def to_openai_embedding_request(request: AnyEmbedRequest, cohere_provider: bool = False) -> dict[str, Any]:
    """The body of LiteLLM's embedding call. Floats are always asked for (every provider has them; the
    other types are derived from them). `cohere_provider`: every deployment of the model is Cohere's own
    API, which LiteLLM hands `input_type`, `truncate` and `max_tokens` on to; other providers have no
    such fields."""
    body: dict[str, Any] = {"model": request.model, "input": request.items(), "encoding_format": "float"}
    v2 = isinstance(request, EmbedRequest)  # output_dimension and max_tokens are v2's only
    if v2 and request.output_dimension is not None:
        body["dimensions"] = request.output_dimension
    if cohere_provider:
        provider_fields = {"input_type": request.input_type, "truncate": request.truncate,
                           "max_tokens": request.max_tokens if v2 else None}
        body.update({field: value for field, value in provider_fields.items() if value is not None})
    return body


def to_cohere_embed_response(openai: Mapping[str, Any], request: EmbedRequest, response_id: str) -> dict[str, Any]:
    """LiteLLM's embedding response as Cohere's v2 `EmbedByTypeResponse`."""
    vectors = _vectors(openai, request)
    body: dict[str, Any] = {
        "id": response_id,
        "embeddings": {kind: [embedding_of(kind, vector) for vector in vectors] for kind in request.types()},
    }
    if request.texts is not None:
        body["texts"] = list(request.texts)
    body["meta"] = _meta(openai, "2")
    body["response_type"] = "embeddings_by_type"
    return body


def to_cohere_embed_v1_response(openai: Mapping[str, Any], request: EmbedV1Request,
                                response_id: str) -> dict[str, Any]:
    """LiteLLM's embedding response as Cohere's v1 `EmbedResponse`: `embeddings_floats` (a list of float
    vectors) when no embedding types were named, else `embeddings_by_type`. `texts` is always there
    (required in the floats shape): the texts sent, none for images."""
    vectors = _vectors(openai, request)
    if request.embedding_types is None:
        response_type = "embeddings_floats"
        embeddings: Any = [list(vector) for vector in vectors]
    else:
        response_type = "embeddings_by_type"
        embeddings = {kind: [embedding_of(kind, vector) for vector in vectors] for kind in request.types()}
    return {"id": response_id, "response_type": response_type, "embeddings": embeddings,
            "texts": list(request.texts or []), "meta": _meta(openai, "1")}


def _vectors(openai: Mapping[str, Any], request: AnyEmbedRequest) -> list[list[float]]:
    """The provider's float vectors in input order, one per input."""
    rows = sorted(openai.get("data") or [], key=lambda row: int(row.get("index") or 0))
    vectors = [_floats(row.get("embedding")) for row in rows]
    expected = len(request.items())
    if len(vectors) != expected:
        raise CohereError(500, f"the provider of model {request.model!r} answered {len(vectors)} embeddings "
                               f"for {expected} inputs")
    return vectors


def _meta(openai: Mapping[str, Any], version: str) -> dict[str, Any]:
    usage = openai.get("usage") or {}
    return {"api_version": {"version": version},
            "billed_units": {"input_tokens": int(usage.get("prompt_tokens") or 0)}}


def _floats(embedding: Any) -> list[float]:
    """A provider's vector: floats, or (some answer so whatever was asked) base64 of float32 bytes."""
    if isinstance(embedding, str):
        raw = base64.b64decode(embedding)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    if not isinstance(embedding, list):
        raise CohereError(500, "the provider answered an embedding that is not a list of numbers")
    return [float(value) for value in embedding]


def embedding_of(kind: EmbeddingType, vector: Sequence[float]) -> Any:
    """One vector as the embedding type `kind` (see the module's docstring for each definition)."""
    if kind == "float":
        return list(vector)
    if kind == "int8":
        return int8_codes(vector)
    if kind == "uint8":
        return [code + 128 for code in int8_codes(vector)]
    if kind == "ubinary":
        return packed_bits(vector)
    if kind == "binary":
        return [byte - 128 for byte in packed_bits(vector)]
    return float32_base64(vector)


def int8_codes(vector: Sequence[float]) -> list[int]:
    if not any(vector):
        return [0] * len(vector)
    scale = 127 / max(abs(value) for value in vector)  # the peak itself is exactly ±127, so no code passes it
    return [_round_half_away(value * scale) for value in vector]


def _round_half_away(value: float) -> int:
    """Halves away from zero, so a vector and its negation get opposite codes (Python's round() goes to
    the even neighbour)."""
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def packed_bits(vector: Sequence[float]) -> list[int]:
    out = [0] * ((len(vector) + 7) // 8)
    for position, value in enumerate(vector):
        if value > 0:
            out[position // 8] |= 0x80 >> (position % 8)
    return out


def float32_base64(vector: Sequence[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
