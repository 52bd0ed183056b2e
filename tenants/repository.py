"""SQL for tenants and their users. Every statement runs in a `tenant_session` of the tenant it names, except
the directory functions (`tenant_ids`, `tenant_page`): the only reads across tenants the app role has."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, case, delete, func, select, text, true, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from core.db import Database, written
from models.access_grant import AccessGrant
from models.audit import AuditLog
from models.chunk import DocumentChunk
from models.document import Document
from models.tenant import Tenant
from models.user import User


async def get_tenant(session: AsyncSession, tenant_id: uuid.UUID, *, for_update: bool = False) -> Tenant | None:
    """The tenant row, deleted or not (the caller decides what a deleted one means)."""
    query = select(Tenant).where(Tenant.id == tenant_id)
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def insert_tenant(session: AsyncSession, tenant: Tenant) -> Tenant:
    session.add(tenant)
    return await written(session, tenant)


async def tenant_exists(session: AsyncSession, tenant_id: uuid.UUID) -> bool:
    return await session.scalar(select(Tenant.id).where(Tenant.id == tenant_id)) is not None


async def tenant_ids(db: Database) -> list[uuid.UUID]:
    """Every tenant's id, through the one directory function the app role may call (migration 0002)."""
    async with db.engine.connect() as conn:
        ids = list((await conn.scalars(text("SELECT phivault_tenant_ids()"))).all())
        await conn.rollback()
    return ids


_TENANT_PAGE = text(
    "SELECT * FROM phivault_tenant_page(CAST(:status AS text), CAST(:after_created_at AS timestamptz), "
    "CAST(:after_id AS uuid), :limit)"
)


async def tenant_page(
    session: AsyncSession, *, status: str | None, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[RowMapping]:
    """Up to `limit` live tenants newest first, after `after` (created_at, id), through the listing function
    (migration 0005): the non-secret columns only, in whatever tenant context the session has."""
    after_created_at, after_id = after if after is not None else (None, None)
    result = await session.execute(
        _TENANT_PAGE, {"status": status, "after_created_at": after_created_at, "after_id": after_id, "limit": limit}
    )
    return list(result.mappings().all())


async def insert_user_once(
    session: AsyncSession, tenant_id: uuid.UUID, subject: str, role: str, seen_at: datetime
) -> bool:
    """Insert the tenant's live user for `subject` unless one exists; True when this call inserted it."""
    inserted = await session.scalar(
        insert(User)
        .values(tenant_id=tenant_id, subject=subject, role=role, last_seen_at=seen_at)
        .on_conflict_do_nothing(index_elements=[User.tenant_id, User.subject], index_where=User.deleted_at.is_(None))
        .returning(User.id)
    )
    return inserted is not None


async def get_live_user_access(
    session: AsyncSession, tenant_id: uuid.UUID, subject: str, now: datetime
) -> tuple[User, AccessGrant | None] | None:
    """The tenant's live user for `subject` and its strongest grant active at `now`, in one statement."""
    active = (
        select(AccessGrant)
        .where(
            AccessGrant.tenant_id == tenant_id,
            AccessGrant.user_id == User.id,
            AccessGrant.revoked_at.is_(None),
            AccessGrant.expires_at > now,
        )
        .order_by(case((AccessGrant.role == "admin", 0), else_=1), AccessGrant.expires_at.desc())
        .limit(1)
        .lateral()
    )
    grant = aliased(AccessGrant, active)
    row = (
        await session.execute(
            select(User, grant)
            .outerjoin(grant, true())
            .where(User.tenant_id == tenant_id, User.subject == subject, User.deleted_at.is_(None))
        )
    ).one_or_none()
    return None if row is None else (row[0], row[1])


async def set_query_key_once(session: AsyncSession, tenant_id: uuid.UUID, wrapped: bytes) -> bytes:
    """Store `wrapped` as the tenant's audit query key unless one is set; the key that is set now.

    Two first searches racing: the second `UPDATE` waits for the first to commit, then matches no row,
    and the `SELECT` (a new snapshot) reads the winner's key, so both end with one key."""
    won: bytes | None = await session.scalar(
        update(Tenant)
        .where(Tenant.id == tenant_id, Tenant.query_key_wrapped.is_(None))
        .values(query_key_wrapped=wrapped)
        .returning(Tenant.query_key_wrapped)
    )
    if won is not None:
        return won
    stored = await session.scalar(select(Tenant.query_key_wrapped).where(Tenant.id == tenant_id))
    if stored is None:
        raise LookupError(f"tenant {tenant_id} not found")
    return stored


# --- Tenant lifecycle: offboarding and key rotation (migration 0008) ---------------------------------------------


async def tenants_due_for_purge(db: Database) -> list[uuid.UUID]:
    """Tenants whose offboarding deadline has passed and which are not purged yet (migration 0008)."""
    async with db.engine.connect() as conn:
        ids = list((await conn.scalars(text("SELECT phivault_tenants_due_for_purge()"))).all())
        await conn.rollback()
    return ids


async def document_ids_after(
    session: AsyncSession, tenant_id: uuid.UUID, after: uuid.UUID | None, limit: int
) -> list[uuid.UUID]:
    """The tenant's document ids (deleted ones too: their objects remain until purged) in id order, after `after`."""
    query = select(Document.id).where(Document.tenant_id == tenant_id).order_by(Document.id).limit(limit)
    if after is not None:
        query = query.where(Document.id > after)
    return list((await session.scalars(query)).all())


async def lock_document(session: AsyncSession, tenant_id: uuid.UUID, document_id: uuid.UUID) -> Document | None:
    """The document row, locked until the transaction ends (None once purged)."""
    return await session.scalar(
        select(Document).where(Document.tenant_id == tenant_id, Document.id == document_id).with_for_update()
    )


async def count_documents(session: AsyncSession, tenant_id: uuid.UUID, *, through: uuid.UUID | None = None) -> int:
    """The tenant's document rows, or only those with an id up to `through`."""
    query = select(func.count()).select_from(Document).where(Document.tenant_id == tenant_id)
    if through is not None:
        query = query.where(Document.id <= through)
    return int(await session.scalar(query) or 0)


async def count_chunks(session: AsyncSession, tenant_id: uuid.UUID) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(DocumentChunk).where(DocumentChunk.tenant_id == tenant_id)
        )
        or 0
    )


async def delete_all_documents(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Every document row of the tenant; their chunks go with them (ON DELETE CASCADE)."""
    await session.execute(delete(Document).where(Document.tenant_id == tenant_id))


async def latest_event_metadata(session: AsyncSession, tenant_id: uuid.UUID, action: str) -> dict[str, Any] | None:
    """The metadata of the tenant's latest audit event `action`, or None."""
    return await session.scalar(
        select(AuditLog.metadata_)
        .where(AuditLog.tenant_id == tenant_id, AuditLog.action == action)
        .order_by(AuditLog.id.desc())
        .limit(1)
    )
