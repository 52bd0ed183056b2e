"""Loading a synthetic corpus (bench/zipf_corpus.py) into PostgreSQL, the way the search benchmarks do."""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass

import asyncpg
import numpy as np
from pgvector.asyncpg import register_vector

from bench.zipf_corpus import NATIVE_DIM, Corpus
from core.keys import KeyProvider
from core.vector_indexes import shared_index_name

SYNTHETIC_MODEL = "synthetic"
HNSW_INDEX = shared_index_name(NATIVE_DIM)


@dataclass(frozen=True)
class LoadTimes:
    copy_seconds: float
    index_seconds: float  # 0 when the index was kept and filled row by row


async def load_corpus(
    conn: asyncpg.Connection,
    corpus: Corpus,
    *,
    model_id: str = SYNTHETIC_MODEL,
    drop_index: bool = True,
    keys: KeyProvider | None = None,
) -> LoadTimes:
    """COPY the corpus in as the owner (a superuser: RLS does not apply to it).

    With `keys` every tenant gets a key from that provider, as the platform path gives it, so the API can
    serve the synthetic tenants (a search derives its audit query key from the tenant key).

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
    refs = {t: keys.provision_tenant_key(t) if keys is not None else None for t in corpus.tenant_ids}
    await conn.copy_records_to_table(
        "tenants",
        records=[
            (t, f"Synthetic {i}", f"synthetic-{i}-{t.hex[:8]}", ref and ref.wrapped_key, ref and ref.kms_key_id)
            for i, (t, ref) in enumerate(refs.items())
        ],
        columns=["id", "name", "slug", "wrapped_key", "kms_key_id"],
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
            (
                corpus.chunk_ids[row],
                tenant,
                document,
                chunk_index,
                f"chunk {row}",
                2,
                corpus.embeddings[row],
                corpus.native_dim,
                model_id,
            )
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
            "embedding_dims",
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
