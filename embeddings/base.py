"""The embedding contract: what chunking and search need from a model, and the stored vector width.

Every vector is stored in the `VECTOR(1024)` column `document_chunks.embedding` (its width,
`models.chunk.EMBEDDING_DIM`, is defined there once), whatever model made it. A model whose native
dimension is smaller is zero-padded up to `EMBEDDING_DIM`; a larger one is refused. Padding with zeros
leaves cosine similarity unchanged: the extra coordinates add nothing to the dot product of two
padded vectors and nothing to either norm, so `cos(pad(a), pad(b)) == cos(a, b)`. Vectors from
different models are not comparable, which is why chunks record the model that embedded them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from models.chunk import EMBEDDING_DIM


class EmbeddingDimensionError(ValueError):
    """A vector or model that does not fit the stored dimension."""


class Tokenizer(Protocol):
    """Splits text into the model's tokens, reporting where each token sits in the text."""

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """`(start, end)` character offsets of each token of `text`, in order, without special tokens.

        `text[start:end]` is the original text of the token (before any lowercasing or accent
        stripping the model applies), so slicing between offsets never invents characters.
        """
        ...


class QueryEmbedder(Protocol):
    """What search needs of a model: its name and native width, and one query's vector (an `Embedder`, or the
    running API's model reached over HTTP by `phivault search`)."""

    @property
    def model_id(self) -> str: ...

    @property
    def native_dim(self) -> int: ...

    def embed_query(self, text: str) -> list[float]:
        """The query's vector, zero-padded to `EMBEDDING_DIM`."""
        ...


class Embedder(Protocol):
    """Turns text into unit-length vectors of width `dim` (always `EMBEDDING_DIM`)."""

    model_id: str
    """The model name recorded on chunks (`document_chunks.embedding_model`)."""
    dim: int
    """Width of the returned vectors: always `EMBEDDING_DIM`."""
    native_dim: int
    """Width of the model's own vectors, before zero padding (at most `EMBEDDING_DIM`)."""
    max_tokens: int
    """The most content tokens (as counted by `tokenizer`) one passage may have without being truncated."""
    tokenizer: Tokenizer

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order, for storing passages."""
        ...

    def embed_query(self, text: str) -> list[float]:
        """The vector of a search query (with the model's query prefix, if it has one)."""
        ...


def check_native_dim(native_dim: int) -> None:
    """Refuse a native dimension that cannot be stored (not positive, or wider than `EMBEDDING_DIM`)."""
    if native_dim <= 0:
        raise EmbeddingDimensionError(f"embedding dimension must be positive, got {native_dim}")
    if native_dim > EMBEDDING_DIM:
        raise EmbeddingDimensionError(
            f"model produces {native_dim}-dimensional embeddings but the store holds at most {EMBEDDING_DIM}; "
            f"choose a model with at most {EMBEDDING_DIM} dimensions"
        )


def pad_to_stored_dim(vector: Sequence[float], native_dim: int) -> list[float]:
    """Return `vector` (of length `native_dim`) zero-padded to `EMBEDDING_DIM`.

    Zero padding leaves cosine similarity unchanged: dot products and norms are the same as for the
    native vectors. Raises `EmbeddingDimensionError` if `native_dim` exceeds `EMBEDDING_DIM` or the
    vector's length is not `native_dim`.
    """
    check_native_dim(native_dim)
    if len(vector) != native_dim:
        raise EmbeddingDimensionError(f"expected a {native_dim}-dimensional vector, got {len(vector)} dimensions")
    return [float(x) for x in vector] + [0.0] * (EMBEDDING_DIM - native_dim)
