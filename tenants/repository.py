"""SQL for tenants and their users. Every statement runs in a `tenant_session` of the tenant it names, except
the directory functions (`tenant_ids`, `tenant_page`): the only reads across tenants the app role has."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import RowMapping, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import Database, written
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


async def get_live_user(session: AsyncSession, tenant_id: uuid.UUID, subject: str) -> User | None:
    return await session.scalar(
        select(User).where(User.tenant_id == tenant_id, User.subject == subject, User.deleted_at.is_(None))
    )
