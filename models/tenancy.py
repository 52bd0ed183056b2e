"""The narrow platform path to the `tenants` table.

There is no role or setting that sees all tenants. Creating a tenant opens a
`tenant_session` for the new tenant's own id (generated here), so the row passes
the same row-level security policy as every other write, and the
`tenant.created` audit event is written in that same transaction.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.db import Database
from models.audit import ActorType, AuditEvent, write_audit_event
from models.tenant import Tenant

SLUG_MAX_LENGTH = 48
_SLUG_ATTEMPTS = 5


class TenantNameError(ValueError):
    """The tenant name cannot produce a usable slug."""


@dataclass(frozen=True)
class PlatformActor:
    """Who performs a platform operation, for the audit record."""

    actor_id: str
    actor_type: ActorType = "platform"
    request_id: str | None = None
    ip_address: str | None = None
    user_agent: str | None = None


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.strip().lower()).strip("-")[:SLUG_MAX_LENGTH].strip("-")
    if not slug:
        raise TenantNameError("a tenant name needs at least one letter or digit")
    return slug


async def create_tenant(db: Database, name: str, actor: PlatformActor) -> Tenant:
    """Insert a tenant and its `tenant.created` audit event in one transaction.

    The slug comes from the name; when taken, a short random suffix is added.
    """
    base = slugify(name)
    for attempt in range(_SLUG_ATTEMPTS):
        slug = base if attempt == 0 else f"{base[: SLUG_MAX_LENGTH - 7]}-{secrets.token_hex(3)}"
        tenant_id = uuid.uuid4()
        try:
            async with db.tenant_session(tenant_id) as session:
                tenant = Tenant(id=tenant_id, name=name.strip(), slug=slug)
                session.add(tenant)
                await session.flush()
                await write_audit_event(
                    session,
                    AuditEvent(
                        tenant_id=tenant_id,
                        action="tenant.created",
                        actor_id=actor.actor_id,
                        actor_type=actor.actor_type,
                        resource_type="tenant",
                        resource_id=str(tenant_id),
                        request_id=actor.request_id,
                        ip_address=actor.ip_address,
                        user_agent=actor.user_agent,
                    ),
                )
                await session.refresh(tenant)
            return tenant
        except IntegrityError as exc:
            if "uq_tenants_slug" not in str(exc.orig):
                raise
    raise TenantNameError("could not find a free slug for this tenant name")


async def get_tenant(db: Database, tenant_id: uuid.UUID) -> Tenant | None:
    async with db.tenant_session(tenant_id) as session:
        return await session.scalar(select(Tenant).where(Tenant.id == tenant_id))
