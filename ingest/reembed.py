"""Re-embedding a tenant's chunks after the embedding model changes.

Search compares only chunks of the active model, so until this runs a tenant's
older chunks are simply not found. Work goes in batches, one transaction each
(the audit event included); rows are claimed with SKIP LOCKED, so the command is
safe to interrupt, re-run, or run beside the worker.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from core.db import Database
from embeddings.base import Embedder
from embeddings.model_thread import on_model_thread
from ingest import repository
from models.audit import Actor, write_audit_event


async def stale_chunk_count(db: Database, tenant_id: uuid.UUID, model_id: str) -> int:
    async with db.tenant_session(tenant_id) as session:
        return await repository.stale_chunk_count(session, tenant_id, model_id)


async def reembed_tenant(
    db: Database,
    embedder: Embedder,
    tenant_id: uuid.UUID,
    actor: Actor,
    *,
    batch_size: int = 64,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Re-embed every chunk of the tenant not made by `embedder`; returns how many were updated."""
    done = 0
    while True:
        async with db.tenant_session(tenant_id) as session:
            rows = await repository.stale_chunks(session, tenant_id, embedder.model_id, batch_size)
            if not rows:
                return done
            vectors = await on_model_thread(embedder.embed_documents, [row.text for row in rows])
            for row, vector in zip(rows, vectors, strict=True):
                await repository.set_chunk_embedding(
                    session, tenant_id, row.id, vector, embedder.model_id, embedder.native_dim
                )
            await write_audit_event(
                session,
                actor.event(
                    tenant_id,
                    "chunks.reembedded",
                    resource_type="tenant",
                    resource_id=tenant_id,
                    metadata={"count": len(rows), "embedding_model": embedder.model_id},
                ),
            )
        done += len(rows)
        if on_batch is not None:
            on_batch(len(rows))
