"""SQL for tenants and their users. Every statement runs in a `tenant_session` of the tenant it names."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, text
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
