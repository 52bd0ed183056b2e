"""Users are provisioned on first sight from the token's `sub`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from models.audit import Actor, write_audit_event
from models.user import User

# last_seen_at is refreshed at most this often, so reads do not each cost a write.
LAST_SEEN_RESOLUTION = timedelta(minutes=5)


async def provision_user(session: AsyncSession, tenant_id: uuid.UUID, subject: str, role: str, actor: Actor) -> User:
    """The tenant's user for `subject`, created (and audited) the first time it is seen."""
    now = datetime.now(UTC)
    inserted = await session.scalar(
        insert(User)
        .values(tenant_id=tenant_id, subject=subject, role=role, last_seen_at=now)
        .on_conflict_do_nothing(index_elements=[User.tenant_id, User.subject], index_where=User.deleted_at.is_(None))
        .returning(User.id)
    )
    user = await session.scalar(
        select(User).where(User.tenant_id == tenant_id, User.subject == subject, User.deleted_at.is_(None))
    )
    assert user is not None
    if inserted is not None:
        await write_audit_event(
            session,
            actor.event(
                tenant_id, "user.provisioned", resource_type="user", resource_id=user.id, metadata={"role": role}
            ),
        )
    elif user.role != role or user.last_seen_at is None or now - user.last_seen_at > LAST_SEEN_RESOLUTION:
        user.role = role
        user.last_seen_at = now
    return user
