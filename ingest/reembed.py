"""Re-embedding a tenant's chunks after the embedding model changes.

Search compares only chunks of the active model, so until this runs a tenant's
older chunks are simply not found. Work goes in batches, one transaction each
(the audit event included); rows are claimed with SKIP LOCKED, so the command is
safe to interrupt, re-run, or run beside the worker.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from sqlalchemy import func, select, update

from core.db import Database
from embeddings.base import Embedder
from models.audit import Actor, write_audit_event
from models.chunk import DocumentChunk


async def stale_chunk_count(db: Database, tenant_id: uuid.UUID, model_id: str) -> int:
    async with db.tenant_session(tenant_id) as session:
        count = await session.scalar(
            select(func.count()).where(DocumentChunk.tenant_id == tenant_id, DocumentChunk.embedding_model != model_id)
        )
    return int(count or 0)


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
            rows = (
                await session.execute(
                    select(DocumentChunk.id, DocumentChunk.text)
                    .where(DocumentChunk.tenant_id == tenant_id, DocumentChunk.embedding_model != embedder.model_id)
                    .order_by(DocumentChunk.id)
                    .limit(batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return done
            vectors = await asyncio.to_thread(embedder.embed_documents, [row.text for row in rows])
            for row, vector in zip(rows, vectors, strict=True):
                await session.execute(
                    update(DocumentChunk)
                    .where(DocumentChunk.tenant_id == tenant_id, DocumentChunk.id == row.id)
                    .values(embedding=vector, embedding_model=embedder.model_id)
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
