"""SQL for documents. Every query filters `tenant_id` explicitly as well as through RLS."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Select, and_, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from models.document import Document


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


async def document_status_counts(conn: AsyncConnection) -> dict[str, int]:
    """Live documents per status across all tenants (for `/metrics`): the one aggregate the app role may
    read past row-level security, through `phivault_document_status_counts()` (migration 0003)."""
    rows = await conn.execute(text("SELECT status, count FROM phivault_document_status_counts()"))
    return {str(status): int(count) for status, count in rows}
