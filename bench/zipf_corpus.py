"""The synthetic multi-tenant vector corpus of the search benchmarks (and tests/search/test_recall.py).

Tenant sizes follow a Zipf law (`zipf_sizes`). Chunks (`make_corpus`): 200 topic centres in a 64-d
latent space, chunks scattered around them, projected to 1024-d with a little full-rank noise and
normalised (text embeddings have a low intrinsic dimension; isotropic 1024-d noise would make
every in-topic neighbour a near tie). Vectors have `native_dim` dimensions (384 by default, the
shipped model's) zero-padded to the stored 1024, as a real model's are, so the search reads the
compact 384-d column and its index (migration 0006). Topic popularity is uneven (weights 1/rank**popularity) and
each tenant draws from a few topics, so small tenants share their busy topics with large ones.
Queries are noisy copies of a tenant's chunks, judged against the brute-force top k of its rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

DIM = 1024
NATIVE_DIM = 384

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]


def zipf_sizes(total: int, tenants: int, *, exponent: float | None = None, smallest: int | None = None) -> list[int]:
    """Tenant sizes proportional to 1 / rank**s, largest first, summing to `total`.

    Give `exponent` (s), or `smallest` (rows of the smallest tenant): s is then solved so that the
    smallest tenant holds that many rows.
    """
    ranks = np.arange(1, tenants + 1, dtype=np.float64)

    def shares(s: float) -> npt.NDArray[np.float64]:
        weights = ranks**-s
        return np.asarray(weights / weights.sum(), dtype=np.float64)

    if exponent is None:
        if smallest is None:
            raise ValueError("give exponent or smallest")
        low, high = 0.0, 5.0  # the smallest share falls as s grows
        for _ in range(100):
            mid = (low + high) / 2
            low, high = (mid, high) if shares(mid)[-1] * total > smallest else (low, mid)
        exponent = (low + high) / 2
    sizes = np.maximum(np.floor(shares(exponent) * total).astype(np.int64), 1)
    if smallest is not None:
        sizes[-1] = smallest
    sizes[0] += total - int(sizes.sum())
    return [int(s) for s in sizes]


@dataclass
class Corpus:
    """Synthetic chunks: unit vectors around topic centres, each tenant drawing from a few topics."""

    tenant_ids: list[uuid.UUID]
    sizes: list[int]
    chunk_ids: list[uuid.UUID]
    document_ids: list[uuid.UUID]  # of each row
    documents: list[tuple[uuid.UUID, uuid.UUID, int]]  # (tenant, document, chunk count)
    tenant_rows: list[Ints]  # row numbers of each tenant
    latent: Floats  # (rows, latent_dim)
    projection: Floats  # (latent_dim, native_dim)
    jitter: float
    embeddings: Floats  # (rows, DIM), unit length, zero past native_dim

    @property
    def native_dim(self) -> int:
        return int(self.projection.shape[1])

    @property
    def rows(self) -> int:
        return int(self.embeddings.shape[0])


def unit(x: Floats) -> Floats:
    return np.asarray(x / np.linalg.norm(x, axis=-1, keepdims=True), dtype=np.float32)


def _embed(latent: Floats, projection: Floats, jitter: float, rng: np.random.Generator) -> Floats:
    """Project latent points to the native dimension, add a little full-rank noise, normalise, pad to `DIM`."""
    native = projection.shape[1]
    out = np.zeros((latent.shape[0], DIM), dtype=np.float32)
    for first in range(0, latent.shape[0], 10_000):
        part = latent[first : first + 10_000]
        noise = rng.standard_normal((part.shape[0], native), dtype=np.float32) / np.sqrt(native)
        out[first : first + 10_000, :native] = unit(part @ projection + jitter * noise)
    return out


def make_corpus(
    sizes: Sequence[int],
    *,
    seed: int = 7,
    topics: int = 200,
    popularity: float = 0.5,
    latent_dim: int = 64,
    spread: float = 0.6,
    jitter: float = 0.05,
    chunks_per_document: int = 20,
    native_dim: int = NATIVE_DIM,
) -> Corpus:
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, topics + 1) ** popularity
    weights /= weights.sum()
    projection = (rng.standard_normal((latent_dim, native_dim), dtype=np.float32) / np.sqrt(native_dim)).astype(
        np.float32
    )
    centres = unit(rng.standard_normal((topics, latent_dim), dtype=np.float32))
    total = sum(sizes)
    topic_of_row = np.empty(total, dtype=np.int64)

    def new_id() -> uuid.UUID:
        return uuid.UUID(bytes=rng.bytes(16), version=4)

    tenant_ids = [new_id() for _ in sizes]
    chunk_ids: list[uuid.UUID] = []
    document_ids: list[uuid.UUID] = []
    documents: list[tuple[uuid.UUID, uuid.UUID, int]] = []
    tenant_rows: list[Ints] = []
    start = 0
    for tenant, size in zip(tenant_ids, sizes, strict=True):
        own = rng.choice(topics, size=max(3, min(40, size // 50)), replace=False, p=weights)
        topic_of_row[start : start + size] = rng.choice(own, size=size, p=weights[own] / weights[own].sum())
        tenant_rows.append(np.arange(start, start + size, dtype=np.int64))
        for first in range(0, size, chunks_per_document):
            count = min(chunks_per_document, size - first)
            document = new_id()
            documents.append((tenant, document, count))
            document_ids.extend([document] * count)
        chunk_ids.extend(new_id() for _ in range(size))
        start += size
    scatter = rng.standard_normal((total, latent_dim), dtype=np.float32) * np.float32(spread / np.sqrt(latent_dim))
    latent = np.asarray(centres[topic_of_row] + scatter, dtype=np.float32)
    embeddings = _embed(latent, projection, jitter, rng)
    return Corpus(
        tenant_ids=tenant_ids,
        sizes=list(sizes),
        chunk_ids=chunk_ids,
        document_ids=document_ids,
        documents=documents,
        tenant_rows=tenant_rows,
        latent=latent,
        projection=projection,
        jitter=jitter,
        embeddings=embeddings,
    )


def make_queries(corpus: Corpus, tenant: int, count: int, rng: np.random.Generator, noise: float = 0.3) -> Floats:
    """Noisy copies of randomly chosen chunks of the tenant (what a query near its data looks like)."""
    picks = rng.choice(corpus.tenant_rows[tenant], size=count)
    latent = corpus.latent[picks]
    moved = latent + noise * rng.standard_normal(latent.shape, dtype=np.float32) / np.float32(np.sqrt(latent.shape[1]))
    return _embed(np.asarray(moved, dtype=np.float32), corpus.projection, corpus.jitter, rng)


def exact_top_k(corpus: Corpus, tenant: int, query: Floats, k: int) -> list[uuid.UUID]:
    """Brute-force cosine top k among the tenant's rows (unit vectors: cosine = dot product)."""
    rows = corpus.tenant_rows[tenant]
    scores = corpus.embeddings[rows] @ query.astype(np.float32)
    order = np.argsort(-scores, kind="stable")[:k]
    return [corpus.chunk_ids[int(rows[i])] for i in order]


def allocate(sizes: Sequence[int], total: int) -> list[int]:
    """Queries per tenant in proportion to its rows, at least one each."""
    return [max(1, round(total * size / sum(sizes))) for size in sizes]


def size_band(rows: int) -> str:
    for limit, name in ((1_000, "<=1k"), (2_500, "1k-2.5k"), (5_000, "2.5k-5k"), (10_000, "5k-10k")):
        if rows <= limit:
            return name
    return ">10k"


BANDS = ["<=1k", "1k-2.5k", "2.5k-5k", "5k-10k", ">10k"]
