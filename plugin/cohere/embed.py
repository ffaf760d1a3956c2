"""Cohere v2 embed <-> OpenAI embeddings: the request as Cohere's SDK sends it, the OpenAI-format body
LiteLLM's embedding call takes, and Cohere's answer with each asked-for embedding type.

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
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator

from .errors import CohereError
from .schema import RequestSchema, parse_body

MAX_INPUTS = 96  # Cohere's limit per call, for texts and for inputs
EmbeddingType = Literal["float", "int8", "uint8", "binary", "ubinary", "base64"]
InputType = Literal["search_document", "search_query", "classification", "clustering", "image"]


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


class EmbedRequest(RequestSchema):
    model: str = Field(min_length=1)
    input_type: InputType
    texts: list[str] | None = Field(default=None, min_length=1, max_length=MAX_INPUTS)
    images: list[DataUri] | None = Field(default=None, min_length=1)
    inputs: list[EmbedInput] | None = Field(default=None, min_length=1, max_length=MAX_INPUTS)
    embedding_types: list[EmbeddingType] | None = Field(default=None, min_length=1)
    truncate: Literal["NONE", "START", "END"] | None = None
    output_dimension: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    priority: int | None = Field(default=None, ge=0, le=999)

    @field_validator("truncate", mode="before")
    @classmethod
    def _truncate_any_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    def items(self) -> list[str]:
        """What is embedded, one string per input: a text, or an image's data URI (LiteLLM's convention
        for image embeddings)."""
        if self.texts is not None:
            return list(self.texts)
        if self.images is not None:
            return list(self.images)
        return [part.text if isinstance(part, TextPart) else part.image_url.url
                for one in self.inputs or [] for part in one.content]

    def types(self) -> list[EmbeddingType]:
        """The asked-for embedding types, each once, in the order asked; floats when none are named."""
        return list(dict.fromkeys(self.embedding_types or ["float"]))


def parse_embed_request(body: bytes) -> EmbedRequest:
    """A raw `/v2/embed` body; a bad one raises `CohereError` (400) naming the field."""
    request = parse_body(EmbedRequest, body)
    given = [name for name in ("texts", "images", "inputs") if getattr(request, name) is not None]
    if not given:
        raise CohereError(400, "one of texts, images or inputs is required", code="missing_field")
    if len(given) > 1:
        raise CohereError(400, f"send one of texts, images or inputs, not {' and '.join(given)}",
                          code="invalid_field")
    return request


def to_openai_embedding_request(request: EmbedRequest, cohere_provider: bool = False) -> dict[str, Any]:
    """The body of LiteLLM's embedding call. Floats are always asked for (every provider has them; the
    other types are derived from them). `cohere_provider`: every deployment of the model is Cohere's own
    API, which LiteLLM hands `input_type`, `truncate` and `max_tokens` on to; other providers have no
    such fields."""
    body: dict[str, Any] = {"model": request.model, "input": request.items(), "encoding_format": "float"}
    if request.output_dimension is not None:
        body["dimensions"] = request.output_dimension
    if cohere_provider:
        body["input_type"] = request.input_type
        for field in ("truncate", "max_tokens"):
            if getattr(request, field) is not None:
                body[field] = getattr(request, field)
    return body


def to_cohere_embed_response(openai: Mapping[str, Any], request: EmbedRequest, response_id: str) -> dict[str, Any]:
    """LiteLLM's embedding response as Cohere's `EmbedByTypeResponse`."""
    rows = sorted(openai.get("data") or [], key=lambda row: int(row.get("index") or 0))
    vectors = [_floats(row.get("embedding")) for row in rows]
    expected = len(request.items())
    if len(vectors) != expected:
        raise CohereError(500, f"the provider of model {request.model!r} answered {len(vectors)} embeddings "
                               f"for {expected} inputs")
    usage = openai.get("usage") or {}
    body: dict[str, Any] = {
        "id": response_id,
        "embeddings": {kind: [embedding_of(kind, vector) for vector in vectors] for kind in request.types()},
    }
    if request.texts is not None:
        body["texts"] = list(request.texts)
    body["meta"] = {"api_version": {"version": "2"},
                    "billed_units": {"input_tokens": int(usage.get("prompt_tokens") or 0)}}
    body["response_type"] = "embeddings_by_type"
    return body


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
