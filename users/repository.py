"""SQL for a tenant's users and break-glass grants; every statement runs in that tenant's `tenant_session`."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from core.cursors import Cursor
from core.db import written
from models.access_grant import AccessGrant
from models.user import User


async def user_page(
    session: AsyncSession, tenant_id: uuid.UUID, *, deactivated: bool | None, after: Cursor | None, limit: int
) -> list[User]:
    """Up to `limit` live users newest first, after `after` (created_at, id); only (de)activated ones if asked."""
    query = select(User).where(User.tenant_id == tenant_id, User.deleted_at.is_(None))
    if deactivated is not None:
        query = query.where(User.deactivated_at.is_not(None) if deactivated else User.deactivated_at.is_(None))
    if after is not None:
        query = query.where(tuple_(User.created_at, User.id) < tuple_(*after))
    query = query.order_by(User.created_at.desc(), User.id.desc()).limit(limit)
    return list((await session.scalars(query)).all())


async def get_user(
    session: AsyncSession, tenant_id: uuid.UUID, user_id: uuid.UUID, *, for_update: bool = False
) -> User | None:
    query = select(User).where(User.tenant_id == tenant_id, User.id == user_id, User.deleted_at.is_(None))
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def save(session: AsyncSession, row: User | AccessGrant) -> None:
    """Write `row` now, so its server-side values (timestamps) are read back."""
    session.add(row)
    await written(session, row)


async def grant_page(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    *,
    active: bool | None,
    now: datetime,
    after: Cursor | None,
    limit: int,
) -> list[AccessGrant]:
    """Up to `limit` grants newest first, after `after`; only those active (or not) at `now` if asked."""
    query = select(AccessGrant).where(AccessGrant.tenant_id == tenant_id)
    is_active = AccessGrant.revoked_at.is_(None) & (AccessGrant.expires_at > now)
    if active is not None:
        query = query.where(is_active if active else ~is_active)
    if after is not None:
        query = query.where(tuple_(AccessGrant.created_at, AccessGrant.id) < tuple_(*after))
    query = query.order_by(AccessGrant.created_at.desc(), AccessGrant.id.desc()).limit(limit)
    return list((await session.scalars(query)).all())


async def get_grant(session: AsyncSession, tenant_id: uuid.UUID, grant_id: uuid.UUID) -> AccessGrant | None:
    return await session.scalar(
        select(AccessGrant).where(AccessGrant.tenant_id == tenant_id, AccessGrant.id == grant_id).with_for_update()
    )
