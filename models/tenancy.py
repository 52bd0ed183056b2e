"""The narrow platform path to the `tenants` table.

There is no role or setting that sees all tenants. Creating a tenant opens a
`tenant_session` for the new tenant's own id (generated here), so the row passes
the same row-level security policy as every other write, and the audit event is
written in that same transaction. Reading or updating one tenant works the same way.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.db import SYSTEM_TENANT_ID, Database
from core.keys import KeyProvider
from models.audit import Actor, write_audit_event
from models.tenant import Tenant

SLUG_MAX_LENGTH = 48
_SLUG_ATTEMPTS = 5


class TenantNameError(ValueError):
    """The tenant name cannot produce a usable slug."""


@dataclass(frozen=True)
class TenantKeys:
    """Key material stored on the tenant row (see core.keys)."""

    kms_key_id: str | None = None
    wrapped_key: bytes | None = None


KeyProvisioner = Callable[[uuid.UUID], Awaitable[TenantKeys]]


async def _no_keys(tenant_id: uuid.UUID) -> TenantKeys:
    return TenantKeys()


def key_provisioner(keys: KeyProvider) -> KeyProvisioner:
    """Adapt a key provider (blocking: KMS calls) to tenant creation."""

    async def provision(tenant_id: uuid.UUID) -> TenantKeys:
        ref = await asyncio.to_thread(keys.provision_tenant_key, tenant_id)
        return TenantKeys(kms_key_id=ref.kms_key_id, wrapped_key=ref.wrapped_key)

    return provision


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.strip().lower()).strip("-")[:SLUG_MAX_LENGTH].strip("-")
    if not slug:
        raise TenantNameError("a tenant name needs at least one letter or digit")
    return slug


async def create_tenant(db: Database, name: str, actor: Actor, provision_keys: KeyProvisioner = _no_keys) -> Tenant:
    """Provision the tenant's key, then insert the tenant and `tenant.created` in one transaction.

    The slug comes from the name; when taken, a short random suffix is added.
    """
    base = slugify(name)
    tenant_id = uuid.uuid4()
    keys = await provision_keys(tenant_id)
    for attempt in range(_SLUG_ATTEMPTS):
        slug = base if attempt == 0 else f"{base[: SLUG_MAX_LENGTH - 7]}-{secrets.token_hex(3)}"
        try:
            async with db.tenant_session(tenant_id) as session:
                tenant = Tenant(
                    id=tenant_id, name=name.strip(), slug=slug, kms_key_id=keys.kms_key_id, wrapped_key=keys.wrapped_key
                )
                session.add(tenant)
                await session.flush()
                await write_audit_event(
                    session, actor.event(tenant_id, "tenant.created", resource_type="tenant", resource_id=tenant_id)
                )
                await session.refresh(tenant)
            return tenant
        except IntegrityError as exc:
            if "uq_tenants_slug" not in str(exc.orig):
                raise
    raise TenantNameError("could not find a free slug for this tenant name")


async def get_tenant(db: Database, tenant_id: uuid.UUID, actor: Actor) -> Tenant | None:
    """Read one tenant (platform path); the read is audited when the tenant exists."""
    if tenant_id == SYSTEM_TENANT_ID:
        return None
    async with db.tenant_session(tenant_id) as session:
        tenant = await session.scalar(select(Tenant).where(Tenant.id == tenant_id, Tenant.deleted_at.is_(None)))
        if tenant is not None:
            await write_audit_event(
                session, actor.event(tenant_id, "tenant.viewed", resource_type="tenant", resource_id=tenant_id)
            )
        return tenant


async def set_tenant_status(db: Database, tenant_id: uuid.UUID, status: str, actor: Actor) -> Tenant | None:
    """Suspend or reactivate a tenant; its tokens are refused from the next request on."""
    if tenant_id == SYSTEM_TENANT_ID:
        return None
    async with db.tenant_session(tenant_id) as session:
        tenant = await session.scalar(
            select(Tenant).where(Tenant.id == tenant_id, Tenant.deleted_at.is_(None)).with_for_update()
        )
        if tenant is None:
            return None
        previous = tenant.status
        tenant.status = status
        await session.flush()
        await write_audit_event(
            session,
            actor.event(
                tenant_id,
                "tenant.updated",
                resource_type="tenant",
                resource_id=tenant_id,
                metadata={"status": {"from": previous, "to": status}},
            ),
        )
        await session.refresh(tenant)
        return tenant
