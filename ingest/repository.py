"""SQL for documents and their chunks. Every statement filters `tenant_id` explicitly as well as through RLS."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, Select, and_, delete, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from core.db import written
from models.chunk import DocumentChunk
from models.document import ChunkProgress, Document

CLAIMABLE = ("queued", "processing")
"""The states a worker may claim a document in: not yet done, and not failed."""


def live_documents(tenant_id: uuid.UUID) -> Select[Document]:
    return select(Document).where(Document.tenant_id == tenant_id, Document.deleted_at.is_(None))


async def get_live_document(
    session: AsyncSession, tenant_id: uuid.UUID, document_id: uuid.UUID, *, for_update: bool = False
) -> Document | None:
    query = live_documents(tenant_id).where(Document.id == document_id)
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def get_document(
    session: AsyncSession, tenant_id: uuid.UUID, document_id: uuid.UUID, *, for_update: bool = False
) -> Document | None:
    """A document whether or not it is deleted (restore, purge, the worker)."""
    query = select(Document).where(Document.tenant_id == tenant_id, Document.id == document_id)
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def find_live_by_sha256(session: AsyncSession, tenant_id: uuid.UUID, sha256: str) -> Document | None:
    return await session.scalar(live_documents(tenant_id).where(Document.sha256 == sha256))


async def list_documents(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    *,
    status: str | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[Document]:
    """Newest first; `after` is the (created_at, id) of the last row of the previous page."""
    query = live_documents(tenant_id)
    if status is not None:
        query = query.where(Document.status == status)
    if after is not None:
        created_at, document_id = after
        query = query.where(
            or_(Document.created_at < created_at, and_(Document.created_at == created_at, Document.id < document_id))
        )
    query = query.order_by(Document.created_at.desc(), Document.id.desc()).limit(limit)
    return list((await session.scalars(query)).all())


async def insert_document(session: AsyncSession, document: Document) -> Document:
    session.add(document)
    return await written(session, document)


async def documents_by_id(
    session: AsyncSession, tenant_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Document]:
    """The tenant's documents among `ids`, deleted or not (what `phivault ingest` waits on)."""
    documents = await session.scalars(select(Document).where(Document.tenant_id == tenant_id, Document.id.in_(ids)))
    return {document.id: document for document in documents}


async def document_status_counts(conn: AsyncConnection) -> dict[str, int]:
    """Live documents per status across all tenants (for `/metrics`): the one aggregate the app role may
    read past row-level security, through `phivault_document_status_counts()` (migration 0003)."""
    rows = await conn.execute(text("SELECT status, count FROM phivault_document_status_counts()"))
    return {str(status): int(count) for status, count in rows}


async def lock_claimable(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    document_id: uuid.UUID,
    *,
    attempts: int | None = None,
    include_deleted: bool = False,
) -> Document | None:
    """Lock the document and return it if a worker may act on it: not done (`CLAIMABLE`), not deleted
    unless `include_deleted`, and, given `attempts`, still held by the claim made at that attempt."""
    document = await get_document(session, tenant_id, document_id, for_update=True)
    if document is None or document.status not in CLAIMABLE:
        return None
    if document.deleted_at is not None and not include_deleted:
        return None
    if attempts is not None and document.attempts != attempts:
        return None
    return document


async def database_now(session: AsyncSession) -> datetime:
    """The database's clock, which every `updated_at` is stamped with."""
    now: datetime | None = await session.scalar(select(func.now()))
    assert now is not None
    return now


async def renew_claim(session: AsyncSession, tenant_id: uuid.UUID, document_id: uuid.UUID, attempts: int) -> bool:
    """Stamp the claim made at attempt `attempts`; False once it is no longer the document's claim."""
    renewed = await session.scalar(
        update(Document)
        .where(
            Document.tenant_id == tenant_id,
            Document.id == document_id,
            Document.status == "processing",
            Document.attempts == attempts,
        )
        .values(updated_at=func.now())
        .returning(Document.id)
        .execution_options(synchronize_session=False)
    )
    return renewed is not None


async def record_progress(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    document_id: uuid.UUID,
    attempts: int,
    progress: ChunkProgress,
) -> bool:
    """Record the progress of the claim made at attempt `attempts` (which also stamps `updated_at`, as a
    renewal does); False once it is no longer the document's claim, and then nothing changes."""
    recorded = await session.scalar(
        update(Document)
        .where(
            Document.tenant_id == tenant_id,
            Document.id == document_id,
            Document.status == "processing",
            Document.attempts == attempts,
        )
        .values(chunks_total=progress.chunks_total, chunks_embedded=progress.chunks_embedded)
        .returning(Document.id)
        .execution_options(synchronize_session=False)
    )
    return recorded is not None


async def delete_chunks(session: AsyncSession, tenant_id: uuid.UUID, document_id: uuid.UUID) -> None:
    """Every chunk of the document: a retry or a failure never leaves an earlier attempt's chunks."""
    await session.execute(
        delete(DocumentChunk).where(DocumentChunk.tenant_id == tenant_id, DocumentChunk.document_id == document_id)
    )


async def replace_chunks(
    session: AsyncSession, tenant_id: uuid.UUID, document_id: uuid.UUID, rows: list[dict[str, Any]]
) -> None:
    """The document's chunks become `rows` (column values of `document_chunks`)."""
    await delete_chunks(session, tenant_id, document_id)
    await session.execute(
        insert(DocumentChunk), [{"tenant_id": tenant_id, "document_id": document_id, **row} for row in rows]
    )


async def stale_candidates(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    *,
    queued_after: timedelta,
    processing_after: timedelta,
    include_queued: bool,
    batch: int,
) -> Sequence[Document]:
    """Live documents whose `processing` claim lapsed `processing_after` ago, and (if `include_queued`)
    those `queued` for longer than `queued_after`; locked, skipping rows another run holds."""
    queued = (Document.status == "queued") & (Document.updated_at < func.now() - queued_after)
    lapsed = (Document.status == "processing") & (Document.updated_at < func.now() - processing_after)
    return (
        await session.scalars(
            select(Document)
            .where(
                Document.tenant_id == tenant_id,
                Document.deleted_at.is_(None),
                or_(lapsed, queued) if include_queued else lapsed,
            )
            .order_by(Document.updated_at)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
    ).all()


def mark_requeued(document: Document) -> None:
    """Back to `queued`, stamped with the database's clock, so a concurrent or later run finds it fresh."""
    document.status = "queued"
    document.updated_at = func.now()


async def deleted_before(session: AsyncSession, tenant_id: uuid.UUID, cutoff: datetime, batch: int) -> list[Document]:
    """Documents deleted before `cutoff`, oldest first, locked, skipping rows another run holds."""
    return list(
        (
            await session.scalars(
                select(Document)
                .where(Document.tenant_id == tenant_id, Document.deleted_at < cutoff)
                .order_by(Document.deleted_at)
                .limit(batch)
                .with_for_update(skip_locked=True)
            )
        ).all()
    )


async def delete_documents(session: AsyncSession, tenant_id: uuid.UUID, ids: Sequence[uuid.UUID]) -> None:
    """Delete the rows (their chunks go with them: ON DELETE CASCADE)."""
    await session.execute(delete(Document).where(Document.tenant_id == tenant_id, Document.id.in_(ids)))


async def stale_chunk_count(session: AsyncSession, tenant_id: uuid.UUID, model_id: str) -> int:
    """Chunks of the tenant embedded by another model than `model_id`."""
    count = await session.scalar(
        select(func.count()).where(DocumentChunk.tenant_id == tenant_id, DocumentChunk.embedding_model != model_id)
    )
    return int(count or 0)


async def stale_chunks(
    session: AsyncSession, tenant_id: uuid.UUID, model_id: str, batch: int
) -> Sequence[Row[uuid.UUID, str]]:
    """A batch of (id, text) of chunks embedded by another model, locked, skipping rows another run holds."""
    return (
        await session.execute(
            select(DocumentChunk.id, DocumentChunk.text)
            .where(DocumentChunk.tenant_id == tenant_id, DocumentChunk.embedding_model != model_id)
            .order_by(DocumentChunk.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
    ).all()


async def set_chunk_embedding(
    session: AsyncSession, tenant_id: uuid.UUID, chunk_id: uuid.UUID, vector: list[float], model_id: str, dims: int
) -> None:
    await session.execute(
        update(DocumentChunk)
        .where(DocumentChunk.tenant_id == tenant_id, DocumentChunk.id == chunk_id)
        .values(embedding=vector, embedding_dims=dims, embedding_model=model_id)
    )
