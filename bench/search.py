"""Search benchmark: latency, recall@10 and RLS overhead of tenant-scoped vector search.

Run by hand: `make bench-search` (options: `python -m bench.search --help`); never in CI. A fresh
embedded stack (bench/stack.py) gets 100,000 synthetic chunks x 1024-d over 100 tenants of Zipf
sizes, loaded by the owner with COPY while the HNSW index is dropped, then the index is rebuilt
from the migration's own definition (timed). Then:

* db path: queries spread over tenants in proportion to their size run as `phivault_app` through
  `Database.tenant_session` and `search.service.run_vector_query` (what POST /v1/search runs,
  minus the query embedding and the audit write); recall@10 against a brute-force top 10 of the
  tenant's rows;
* the same queries as the owner (a superuser, so no RLS) with the same explicit tenant filter,
  interleaved with the app-role runs, for the RLS overhead;
* an ef_search sweep (40/100/200/400), each plan forced per tenant size band, and
* POST /v1/search through the running API, which embeds the query with the real model.

Figures go to bench/results/search.json and a latency/recall plot to
bench/results/search_latency_recall.svg (drawn by hand: matplotlib is not a dependency).

The synthetic corpus (also used by tests/search/test_recall.py): 200 topic centres in a 64-d latent
space, chunks scattered around them, projected to 1024-d with a little full-rank noise and
normalised (text embeddings have a low intrinsic dimension; isotropic 1024-d noise would make
every in-topic neighbour a near tie). Topic popularity is uneven (weights 1/rank**popularity) and
each tenant draws from a few topics, so small tenants share their busy topics with large ones.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import numpy.typing as npt
from pgvector.asyncpg import register_vector
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from bench.stack import Stack, running_stack
from core.db import Database, create_engine, to_libpq_url
from core.security import mint_token
from core.settings import Settings
from search.repository import Plan, Scope
from search.service import run_vector_query

DIM = 1024
SYNTHETIC_MODEL = "synthetic"
HNSW_INDEX = "ix_document_chunks_embedding_hnsw"
RESULTS = Path(__file__).parent / "results"
K = 10

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]


# --- synthetic corpus (shared with tests/search/test_recall.py) -------------------------------


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
    projection: Floats  # (latent_dim, DIM)
    jitter: float
    embeddings: Floats  # (rows, DIM), unit length

    @property
    def rows(self) -> int:
        return int(self.embeddings.shape[0])


def _unit(x: Floats) -> Floats:
    return np.asarray(x / np.linalg.norm(x, axis=-1, keepdims=True), dtype=np.float32)


def _embed(latent: Floats, projection: Floats, jitter: float, rng: np.random.Generator) -> Floats:
    """Project latent points to the stored dimension, add a little full-rank noise, normalise."""
    out = np.empty((latent.shape[0], DIM), dtype=np.float32)
    for first in range(0, latent.shape[0], 10_000):
        part = latent[first : first + 10_000]
        noise = rng.standard_normal((part.shape[0], DIM), dtype=np.float32) / np.sqrt(DIM)
        out[first : first + 10_000] = _unit(part @ projection + jitter * noise)
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
) -> Corpus:
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, topics + 1) ** popularity
    weights /= weights.sum()
    projection = (rng.standard_normal((latent_dim, DIM), dtype=np.float32) / np.sqrt(DIM)).astype(np.float32)
    centres = _unit(rng.standard_normal((topics, latent_dim), dtype=np.float32))
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


@dataclass(frozen=True)
class LoadTimes:
    copy_seconds: float
    index_seconds: float  # 0 when the index was kept and filled row by row


async def load_corpus(
    conn: asyncpg.Connection, corpus: Corpus, *, model_id: str = SYNTHETIC_MODEL, drop_index: bool = True
) -> LoadTimes:
    """COPY the corpus in as the owner (a superuser: RLS does not apply to it).

    With `drop_index` the HNSW index is dropped first and recreated afterwards from its own catalog
    definition (the migration's), which is much faster than filling it row by row. Documents are
    `ready` with `chunk_count` set, so the plan choice sees the real tenant sizes.
    """
    await register_vector(conn)
    index_def = await conn.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = $1", HNSW_INDEX)
    if index_def is None:
        raise RuntimeError(f"index {HNSW_INDEX} not found: is the database migrated?")
    started = time.perf_counter()
    if drop_index:
        await conn.execute(f"DROP INDEX {HNSW_INDEX}")
    await conn.copy_records_to_table(
        "tenants",
        records=[(t, f"Synthetic {i}", f"synthetic-{i}-{t.hex[:8]}") for i, t in enumerate(corpus.tenant_ids)],
        columns=["id", "name", "slug"],
    )
    document_columns = ["id", "tenant_id", "filename", "content_type", "size_bytes", "sha256", "storage_key"]
    await conn.copy_records_to_table(
        "documents",
        records=[
            (
                d,
                t,
                f"doc-{d.hex[:8]}.txt",
                "text/plain",
                1000 * n,
                hashlib.sha256(d.bytes).hexdigest(),
                f"x/{d}",
                "ready",
                n,
            )
            for t, d, n in corpus.documents
        ],
        columns=[*document_columns, "status", "chunk_count"],
    )
    tenant_of_row = np.empty(corpus.rows, dtype=np.int64)
    for i, rows in enumerate(corpus.tenant_rows):
        tenant_of_row[rows] = i
    next_index: dict[uuid.UUID, int] = {}
    records = []
    for row in range(corpus.rows):
        document = corpus.document_ids[row]
        chunk_index = next_index.get(document, 0)
        next_index[document] = chunk_index + 1
        tenant = corpus.tenant_ids[int(tenant_of_row[row])]
        records.append(
            (corpus.chunk_ids[row], tenant, document, chunk_index, f"chunk {row}", 2, corpus.embeddings[row], model_id)
        )
    await conn.copy_records_to_table(
        "document_chunks",
        records=records,
        columns=[
            "id",
            "tenant_id",
            "document_id",
            "chunk_index",
            "text",
            "token_count",
            "embedding",
            "embedding_model",
        ],
    )
    copy_seconds = time.perf_counter() - started
    index_seconds = 0.0
    if drop_index:
        started = time.perf_counter()
        await conn.execute(index_def)
        index_seconds = time.perf_counter() - started
    await conn.execute("ANALYZE tenants, documents, document_chunks")
    return LoadTimes(copy_seconds, index_seconds)


# --- measurement ------------------------------------------------------------------------------


@dataclass
class Query:
    tenant: int
    vector: Floats
    truth: set[uuid.UUID]


@dataclass
class Sample:
    plan: Plan
    ms: float  # run_vector_query: chunk counter, plan settings, search statement
    transaction_ms: float  # the whole tenant transaction: BEGIN, tenant context, query, COMMIT
    recall: float
    returned: int


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def latency(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 50), 2),
        "p95_ms": round(percentile(values, 95), 2),
        "p99_ms": round(percentile(values, 99), 2),
        "mean_ms": round(float(np.mean(values)), 2),
    }


def summary(samples: Sequence[Sample]) -> dict[str, Any]:
    if not samples:
        return {"queries": 0}
    recalls = [s.recall for s in samples]
    return {
        "queries": len(samples),
        **latency([s.ms for s in samples]),
        "recall_at_10": round(float(np.mean(recalls)), 4),
        "recall_at_10_p5": round(percentile(recalls, 5), 2),
        "short_results": sum(1 for s in samples if s.returned < K),
    }


def allocate(sizes: Sequence[int], total: int) -> list[int]:
    """Queries per tenant in proportion to its rows, at least one each."""
    return [max(1, round(total * size / sum(sizes))) for size in sizes]


def make_query_set(corpus: Corpus, counts: Sequence[int], seed: int) -> list[Query]:
    rng = np.random.default_rng(seed)
    queries = [
        Query(tenant, vector, set(exact_top_k(corpus, tenant, vector, K)))
        for tenant, count in enumerate(counts)
        for vector in make_queries(corpus, tenant, count, rng)
    ]
    random.Random(seed).shuffle(queries)
    return queries


_NOOP = text("SELECT 1")


class Runner:
    def __init__(self, corpus: Corpus, settings: Settings, app: Database, owner: Database, model_id: str) -> None:
        self.corpus = corpus
        self.settings = settings
        self.app = app
        self.owner_sessions = async_sessionmaker(owner.engine, expire_on_commit=False, autoflush=False)
        self.model_id = model_id

    def _scope(self, query: Query) -> Scope:
        return Scope(tenant_id=self.corpus.tenant_ids[query.tenant], model_id=self.model_id)

    def _sample(self, query: Query, plan: Plan, hits: Sequence[Any], ms: float, started: float) -> Sample:
        found = {hit.chunk_id for hit in hits}
        return Sample(plan, ms, (time.perf_counter() - started) * 1000, len(found & query.truth) / K, len(hits))

    async def as_app(self, query: Query, settings: Settings | None = None, plan: Plan | None = None) -> Sample:
        started = time.perf_counter()
        async with self.app.tenant_session(self.corpus.tenant_ids[query.tenant]) as session:
            t0 = time.perf_counter()
            used, hits = await run_vector_query(
                session, self._scope(query), query.vector.tolist(), K, settings or self.settings, plan=plan
            )
            ms = (time.perf_counter() - t0) * 1000
        return self._sample(query, used, hits, ms, started)

    async def as_owner(self, query: Query) -> Sample:
        """The same statements as the superuser owner: no tenant context, no RLS, the explicit filter only."""
        started = time.perf_counter()
        async with self.owner_sessions() as session, session.begin():
            await session.execute(_NOOP)  # the round trip tenant_session spends on the tenant context
            t0 = time.perf_counter()
            used, hits = await run_vector_query(session, self._scope(query), query.vector.tolist(), K, self.settings)
            ms = (time.perf_counter() - t0) * 1000
        return self._sample(query, used, hits, ms, started)


def size_band(rows: int) -> str:
    for limit, name in ((1_000, "<=1k"), (2_500, "1k-2.5k"), (5_000, "2.5k-5k"), (10_000, "5k-10k")):
        if rows <= limit:
            return name
    return ">10k"


BANDS = ["<=1k", "1k-2.5k", "2.5k-5k", "5k-10k", ">10k"]

QUERY_TEXTS = [
    "{t} treatment options",
    "latest lab results for {t}",
    "follow-up plan for {t} in the outpatient clinic",
    "medication changes for {t} and side effects",
    "examination findings consistent with {t}",
]
TOPICS = ["hypertension", "type 2 diabetes", "asthma", "heart failure", "pneumonia", "migraine", "sepsis", "depression"]


async def http_latency(
    base_url: str, settings: Settings, corpus: Corpus, counts: Sequence[int], embed: Any
) -> dict[str, Any]:
    """POST /v1/search end to end (query embedding included), and the embedding alone in this process."""
    rng = random.Random(11)
    texts = [template.format(t=topic) for template in QUERY_TEXTS for topic in TOPICS]
    tenants = [t for t, count in enumerate(counts) for _ in range(count)]
    tokens = {
        t: mint_token(settings, subject="bench-reader", role="viewer", tenant_id=corpus.tenant_ids[t])
        for t in set(tenants)
    }
    walls: list[float] = []
    took: list[float] = []
    results = 0
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        for i, tenant in enumerate([*tenants[:20], *tenants]):  # the first 20 warm up and are not counted
            body = {"query": f"{rng.choice(texts)} {i}", "k": K}
            t0 = time.perf_counter()
            response = await client.post("/v1/search", json=body, headers={"Authorization": f"Bearer {tokens[tenant]}"})
            wall = (time.perf_counter() - t0) * 1000
            response.raise_for_status()
            if i >= 20:
                walls.append(wall)
                took.append(float(response.json()["took_ms"]))
                results += len(response.json()["results"])
    embed_ms = []
    for query_text in texts * 3:
        t0 = time.perf_counter()
        embed(query_text)
        embed_ms.append((time.perf_counter() - t0) * 1000)
    return {
        "queries": len(walls),
        "query_embedding": "included",
        "wall": latency(walls),
        "server_took_ms": latency(took),
        "embedding_only_in_process": latency(embed_ms[len(texts) :]),
        "mean_results": round(results / max(1, len(walls)), 2),
        "note": "real model query vectors against synthetic chunks: the database work is representative in "
        "cost, not in relevance; each request also checks the tenant, provisions the user and writes an audit row",
    }


def svg_plot(sweep: list[dict[str, Any]], path: Path) -> None:
    """Recall@10 against p95 latency for each ef_search: all queries, and the HNSW-plan ones."""
    width, height, left, right, top, bottom = 640, 420, 70, 30, 40, 60
    series = [
        ("all queries (chosen plan)", "p95_ms", "recall_at_10", "#1f77b4"),
        ("HNSW-plan queries", "hnsw_p95_ms", "hnsw_recall_at_10", "#d62728"),
    ]
    xs = [float(row[key]) for row in sweep for _, key, _, _ in series]
    ys = [float(row[key]) for row in sweep for _, _, key, _ in series]
    x_max = max(xs) * 1.15
    y_min = min(0.9, float(np.floor(min(ys) * 100)) / 100 - 0.01)

    def px(x: float) -> float:
        return left + (width - left - right) * x / x_max

    def py(y: float) -> float:
        return top + (height - top - bottom) * (1.0 - (y - y_min) / (1.0 - y_min))

    base, mid_y = height - bottom, (top + height - bottom) / 2
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="14">'
        "Recall@10 vs p95 latency by hnsw.ef_search</text>",
        f'<line x1="{left}" y1="{base}" x2="{width - right}" y2="{base}" stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{base}" stroke="black"/>',
        f'<text x="{(left + width - right) / 2}" y="{height - 18}" text-anchor="middle">'
        "p95 latency in the database (ms)</text>",
        f'<text x="18" y="{mid_y}" text-anchor="middle" transform="rotate(-90 18 {mid_y})">recall@10</text>',
    ]
    for i in range(6):
        x = x_max * i / 5
        parts.append(f'<line x1="{px(x):.1f}" y1="{base}" x2="{px(x):.1f}" y2="{base + 5}" stroke="black"/>')
        parts.append(f'<text x="{px(x):.1f}" y="{base + 18}" text-anchor="middle">{x:.1f}</text>')
        y = y_min + (1.0 - y_min) * i / 5
        parts.append(f'<line x1="{left - 5}" y1="{py(y):.1f}" x2="{left}" y2="{py(y):.1f}" stroke="black"/>')
        parts.append(f'<text x="{left - 8}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.3f}</text>')
        parts.append(f'<line x1="{left}" y1="{py(y):.1f}" x2="{width - right}" y2="{py(y):.1f}" stroke="#eee"/>')
    for n, (label, x_key, y_key, colour) in enumerate(series):
        points = [(px(float(row[x_key])), py(float(row[y_key])), row["ef_search"]) for row in sweep]
        path_d = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y, _) in enumerate(points))
        parts.append(f'<path d="{path_d}" fill="none" stroke="{colour}" stroke-opacity="0.4"/>')
        for i, (x, y, ef) in enumerate(points):
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>')
            label_y = y - 6 if i % 2 == 0 else y + 16  # alternate above and below: close points stay legible
            parts.append(f'<text x="{x + 6:.1f}" y="{label_y:.1f}" fill="{colour}">ef {ef}</text>')
        parts.append(f'<circle cx="{width - 220}" cy="{height - bottom - 40 + 16 * n}" r="4" fill="{colour}"/>')
        parts.append(f'<text x="{width - 210}" y="{height - bottom - 36 + 16 * n}">{label}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


async def run(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    from embeddings.sentence_transformer import get_embedder  # torch: only the benchmark needs it

    began = time.perf_counter()
    settings = stack.settings
    embedder = get_embedder(settings)
    sizes = zipf_sizes(args.chunks, args.tenants, exponent=args.zipf)
    corpus = make_corpus(sizes, seed=args.seed, popularity=args.popularity)
    print(f"corpus: {corpus.rows} chunks, tenants {sizes[0]}..{sizes[-1]} rows", flush=True)

    conn = await asyncpg.connect(to_libpq_url(stack.services.owner_url))
    try:
        await conn.execute(f"SET maintenance_work_mem = '{args.maintenance_work_mem}'")
        loaded = await load_corpus(conn, corpus, model_id=embedder.model_id)
        server = {
            "postgres": await conn.fetchval("SHOW server_version"),
            "pgvector": await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'"),
            "shared_buffers": await conn.fetchval("SHOW shared_buffers"),
            "maintenance_work_mem_for_build": args.maintenance_work_mem,
            "max_parallel_maintenance_workers": await conn.fetchval("SHOW max_parallel_maintenance_workers"),
        }
        sizes_mb = await conn.fetchrow(
            "SELECT pg_relation_size('document_chunks') / 1048576.0 AS heap, "
            "pg_table_size('document_chunks') / 1048576.0 AS heap_and_toast, "
            "pg_relation_size($1::regclass) / 1048576.0 AS hnsw",
            HNSW_INDEX,
        )
        assert sizes_mb is not None
        index_def = await conn.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = $1", HNSW_INDEX)
    finally:
        await conn.close()
    print(f"loaded: copy {loaded.copy_seconds:.1f}s, index build {loaded.index_seconds:.1f}s", flush=True)

    app = Database(create_engine(stack.services.app_url, settings))
    owner = Database(create_engine(stack.services.owner_url, settings))
    runner = Runner(corpus, settings, app, owner, embedder.model_id)
    counts = allocate(sizes, args.queries)
    queries = make_query_set(corpus, counts, args.seed + 1)
    try:
        for query in queries[:200]:  # warm-up: caches, connections, prepared plans
            await runner.as_app(query)
            await runner.as_owner(query)

        # 1. The app role through tenant_session: each query once, as the API would run it.
        app_samples = [await runner.as_app(query) for query in queries]
        print(f"db path: {summary(app_samples)}", flush=True)

        # 2. RLS overhead: the same queries as the app role and as the owner, back to back, the
        # order alternating so that neither side always finds the other's pages in the cache.
        rls_app: list[Sample] = []
        owner_samples: list[Sample] = []
        for i, query in enumerate(queries):
            if i % 2:
                owner_samples.append(await runner.as_owner(query))
                rls_app.append(await runner.as_app(query))
            else:
                rls_app.append(await runner.as_app(query))
                owner_samples.append(await runner.as_owner(query))

        # 3. ef_search sweep on the chosen plans.
        sweep = []
        for ef in (40, 100, 200, 400):
            swept = settings.model_copy(update={"search_ef_search": ef})
            samples = [await runner.as_app(query, swept) for query in queries]
            hnsw = [s for s in samples if s.plan == "hnsw"]
            row = {"ef_search": ef, **summary(samples)}
            row.update({f"hnsw_{key}": value for key, value in summary(hnsw).items()})
            sweep.append(row)
            print(f"ef_search {ef}: {row}", flush=True)

        # 4. Each plan forced, by tenant size band (the same few queries per tenant).
        per_tenant = make_query_set(corpus, [args.forced_per_tenant] * len(sizes), args.seed + 2)
        forced: dict[str, dict[str, Any]] = {}
        for plan in ("exact", "hnsw"):
            by_band: dict[str, list[Sample]] = {band: [] for band in BANDS}
            for query in per_tenant:
                by_band[size_band(sizes[query.tenant])].append(await runner.as_app(query, plan=plan))
            forced[plan] = {band: summary(samples) for band, samples in by_band.items()}
            print(f"forced {plan}: {forced[plan]}", flush=True)
    finally:
        await app.dispose()
        await owner.dispose()

    # 5. Through HTTP, with the real query embedding.
    http = await http_latency(
        stack.base_url, settings, corpus, allocate(sizes, args.http_queries), embedder.embed_query
    )
    print(f"http: {http}", flush=True)

    db_path = summary(app_samples)
    plans = {plan: sum(1 for s in app_samples if s.plan == plan) for plan in ("exact", "hnsw")}
    app_ms = [s.ms for s in rls_app]
    owner_ms = [s.ms for s in owner_samples]
    app_tx = [s.transaction_ms for s in rls_app]
    owner_tx = [s.transaction_ms for s in owner_samples]
    rls_p50 = round(percentile(app_ms, 50) / percentile(owner_ms, 50), 3)
    rls: dict[str, Any] = {
        "measured": "the same queries as phivault_app (tenant_session, RLS) and as the owner (superuser, no RLS, "
        "explicit tenant filter only), back to back in alternating order; ratios of app to owner",
        "app": summary(rls_app),
        "owner": summary(owner_samples),
        "p50_ratio": rls_p50,
        "p95_ratio": round(percentile(app_ms, 95) / percentile(owner_ms, 95), 3),
        "mean_ratio": round(float(np.mean(app_ms) / np.mean(owner_ms)), 3),
        "transaction_p50_ratio": round(percentile(app_tx, 50) / percentile(owner_tx, 50), 3),
        "transaction_mean_ratio": round(float(np.mean(app_tx) / np.mean(owner_tx)), 3),
    }
    return {
        "machine": {"cpus": os.cpu_count(), **server},
        "corpus": {
            "chunks": corpus.rows,
            "dim": DIM,
            "tenants": len(sizes),
            "zipf_exponent": args.zipf,
            "largest_tenant_rows": sizes[0],
            "smallest_tenant_rows": sizes[-1],
            "tenants_above_exact_max_rows": sum(1 for size in sizes if size > settings.search_exact_max_rows),
            "topics": 200,
            "topic_popularity_exponent": args.popularity,
            "latent_dim": 64,
        },
        "index": {
            "definition": index_def,
            "copy_seconds": round(loaded.copy_seconds, 1),
            "build_seconds": round(loaded.index_seconds, 1),
            "heap_mb": round(float(sizes_mb["heap"]), 1),
            "heap_and_toast_mb": round(float(sizes_mb["heap_and_toast"]), 1),
            "hnsw_mb": round(float(sizes_mb["hnsw"]), 1),
        },
        "settings": {
            "search_ef_search": settings.search_ef_search,
            "search_exact_max_rows": settings.search_exact_max_rows,
            "search_max_scan_tuples": settings.search_max_scan_tuples,
            "iterative_scan": "relaxed_order",
        },
        "db_path": {
            "query_embedding": "excluded",
            "measured": "run_vector_query inside tenant_session as phivault_app (chunk counter, plan settings, "
            "search statement), client side over the unix socket",
            "plans": plans,
            **db_path,
            "hnsw": summary([s for s in app_samples if s.plan == "hnsw"]),
            "exact": summary([s for s in app_samples if s.plan == "exact"]),
            "transaction": latency([s.transaction_ms for s in app_samples]),
        },
        "rls_overhead": rls,
        "ef_search_sweep": sweep,
        "forced_plan_by_tenant_rows": {"queries_per_tenant": args.forced_per_tenant, **forced},
        "http": http,
        "targets": {
            "db_p95_le_20ms": db_path["p95_ms"] <= 20.0,
            "recall_at_10_ge_0_95": db_path["recall_at_10"] >= 0.95,
            "rls_overhead_le_1_10": rls_p50 <= 1.10,
        },
        "seconds": round(time.perf_counter() - began, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--zipf", type=float, default=1.0, help="tenant size exponent")
    parser.add_argument("--popularity", type=float, default=0.5, help="topic popularity exponent")
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--forced-per-tenant", type=int, default=5)
    parser.add_argument("--http-queries", type=int, default=200)
    parser.add_argument("--maintenance-work-mem", default="1GB")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    started = time.perf_counter()
    with running_stack() as stack:
        results = asyncio.run(run(stack, args))
    results["seconds_with_stack"] = round(time.perf_counter() - started, 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "search.json").write_text(json.dumps(results, indent=2) + "\n")
    svg_plot(results["ef_search_sweep"], RESULTS / "search_latency_recall.svg")
    print(json.dumps(results["targets"]), f"in {results['seconds_with_stack']}s")


if __name__ == "__main__":
    main()
