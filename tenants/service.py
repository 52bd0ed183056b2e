"""Tenants and the people acting in them: the platform path to the `tenants` table, what an active
tenant is, and the tenant transaction every caller acts in.

There is no role or setting that sees all tenants. Creating a tenant opens a
`tenant_session` for the new tenant's own id (generated here), so the row passes
the same row-level security policy as every other write, and the audit event is
written in that same transaction. Reading or updating one tenant works the same way.
Listing tenants goes through the listing function (migration 0005), in a transaction
of the system tenant, where the listing is audited.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.cursors import decode_cursor, encode_cursor
from core.db import SYSTEM_TENANT_ID, Database, written
from core.errors import Conflict, DomainError, InvalidInput
from core.keys import KEY_BYTES, KeyProvider, TenantKeyRef
from core.security import Principal
from models.access_grant import AccessGrant
from models.audit import ActingSession, Actor, TransactionFactory, write_audit_event
from models.tenant import Tenant
from models.user import User
from tenants import repository
from tenants.schemas import TenantOut, TenantPage, TenantStatus

SLUG_MAX_LENGTH = 48
_SLUG_ATTEMPTS = 5
LAST_SEEN_RESOLUTION = timedelta(minutes=5)
"""`users.last_seen_at` is refreshed at most this often, so reads do not each cost a write."""


class TenantNameError(InvalidInput):
    """The tenant name cannot produce a usable slug."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_name", message)


class TenantUnavailable(DomainError):
    """The tenant does not exist, was deleted, or is suspended: nobody may act in it."""


def require_active(tenant: Tenant | None) -> Tenant:
    """The one definition of a tenant that may be acted in: it exists, is not deleted, and is active."""
    if tenant is None or tenant.deleted_at is not None:
        raise TenantUnavailable("tenant_unavailable", "this tenant does not exist or was deleted")
    if tenant.status != "active":
        raise TenantUnavailable("tenant_suspended", "this tenant is suspended")
    return tenant


def refuse_if_purged(tenant: Tenant) -> None:
    """Nothing is done to a tenant whose key was destroyed (its purge may still be finishing)."""
    if tenant.purged_at is not None or tenant.purge_receipt is not None:
        raise Conflict("tenant_purged", "this tenant was offboarded and its data destroyed")


def refuse_while_offboarding(tenant: Tenant) -> None:
    """A tenant being offboarded stays suspended: it is destroyed (or its key is), or its destruction is scheduled."""
    refuse_if_purged(tenant)
    if tenant.purge_after is not None:
        raise Conflict("offboarding_scheduled", "this tenant's offboarding is scheduled; cancel it first")


def tenant_key_ref(tenant: Tenant) -> TenantKeyRef:
    """What the key provider and the object store need to know about the tenant's key."""
    return TenantKeyRef(
        tenant_id=tenant.id,
        kms_key_id=tenant.kms_key_id,
        wrapped_key=tenant.wrapped_key,
        previous_kms_key_id=tenant.previous_kms_key_id,
        previous_wrapped_key=tenant.previous_wrapped_key,
    )


DEACTIVATED = "user_deactivated"
ROLE_RANK: dict[str, int] = {"viewer": 0, "member": 1, "admin": 2}
"""Tenant roles from least to most privileged."""


class AccessRefused(DomainError):
    """The caller is known but may not do this: deactivated, or its effective role is not admitted (HTTP 403).
    `reason` is what the denial's audit row records."""

    def __init__(self, code: str, message: str, reason: str) -> None:
        super().__init__(code, message)
        self.reason = reason


@dataclass(frozen=True)
class UserAccess:
    """The caller's user row and the break-glass grant active for it now, if any (read together)."""

    user: User
    grant: AccessGrant | None

    def effective_role(self, token_role: str) -> str:
        """The lesser of the token's role and the stored one, raised to the grant's role while a grant is active."""
        if self.user.deactivated_at is not None:
            raise AccessRefused("user_deactivated", "this user was deactivated by a tenant administrator", DEACTIVATED)
        role = min(token_role, self.user.role, key=lambda r: ROLE_RANK.get(r, -1))
        if self.grant is not None and ROLE_RANK[self.grant.role] > ROLE_RANK.get(role, -1):
            role = self.grant.role
        return role

    def acting(self, actor: Actor) -> Actor:
        """`actor`, marked on every event it writes with the grant it acts under (if any)."""
        if self.grant is None:
            return actor
        return replace(actor, break_glass={"grant_id": str(self.grant.id), "reason": self.grant.reason})


@asynccontextmanager
async def acting_session(
    db: Database,
    tenant_id: uuid.UUID,
    actor: Actor,
    principal: Principal | None = None,
    roles: Collection[str] | None = None,
) -> AsyncIterator[ActingSession]:
    """One transaction in an active tenant, with who acts in it.

    With a `principal` (HTTP requests; the command line acts without one) the caller's user is read, or
    provisioned, and authorised here, inside the transaction: a deactivated user is refused, and so is one
    whose effective role (`UserAccess.effective_role`) is not in `roles`. A refusal rolls the transaction
    back, so nothing of it (not even a first-sight provisioning) is kept."""
    async with db.tenant_session(tenant_id) as session:
        tenant = require_active(await repository.get_tenant(session, tenant_id))
        user_id = None
        if principal is not None:
            access = await provision_user(session, tenant.id, principal.subject, principal.role, actor)
            role = access.effective_role(principal.role)
            if roles is not None and role not in roles:
                raise AccessRefused("forbidden", f"role {role!r} may not do this", "role_not_allowed")
            actor = access.acting(actor)
            user_id = access.user.id
        yield ActingSession(session=session, tenant=tenant, actor=actor, user_id=user_id)


def tenant_transactions(db: Database, tenant_id: uuid.UUID, actor: Actor) -> TransactionFactory:
    """`acting_session` as a factory, for services that open several transactions (an upload)."""
    return lambda: acting_session(db, tenant_id, actor)


async def provision_user(
    session: AsyncSession, tenant_id: uuid.UUID, subject: str, role: str, actor: Actor
) -> UserAccess:
    """The tenant's user for `subject` with its active grant, created (with `role`, audited) the first time
    it is seen.

    A user already known is only read (one statement, its grant with it). Its stored role is never changed
    here (only `PATCH /v1/users/{id}` changes it); it is written only when its `last_seen_at` is older than
    `LAST_SEEN_RESOLUTION`, so concurrent requests of one user do not wait on each other's row (an insert
    attempt on every request would make each wait for the previous one to commit)."""
    now = datetime.now(UTC)
    access = await repository.get_live_user_access(session, tenant_id, subject, now)
    if access is None:
        inserted = await repository.insert_user_once(session, tenant_id, subject, role, now)
        access = await repository.get_live_user_access(session, tenant_id, subject, now)
        assert access is not None
        if inserted:
            await write_audit_event(
                session,
                actor.event(
                    tenant_id,
                    "user.provisioned",
                    resource_type="user",
                    resource_id=access[0].id,
                    metadata={"role": role},
                ),
            )
            return UserAccess(*access)
    user = access[0]
    if user.last_seen_at is None or now - user.last_seen_at > LAST_SEEN_RESOLUTION:
        user.last_seen_at = now
    return UserAccess(*access)


@dataclass(frozen=True)
class TenantKeys:
    """Key material stored on the tenant row (see core.keys)."""

    kms_key_id: str | None = None
    wrapped_key: bytes | None = None
    query_key_wrapped: bytes | None = None


QUERY_KEY_PURPOSE = "audit-query-hmac"
"""What the tenant's audit query key is wrapped for (the AAD locally, the KMS encryption context's `purpose`)."""

KeyProvisioner = Callable[[uuid.UUID], Awaitable[TenantKeys]]


async def _no_keys(tenant_id: uuid.UUID) -> TenantKeys:
    return TenantKeys()


def key_provisioner(keys: KeyProvider) -> KeyProvisioner:
    """Adapt a key provider (blocking: KMS calls) to tenant creation."""

    async def provision(tenant_id: uuid.UUID) -> TenantKeys:
        ref = await asyncio.to_thread(keys.provision_tenant_key, tenant_id)
        query_key = await asyncio.to_thread(keys.wrap_secret, ref, secrets.token_bytes(KEY_BYTES), QUERY_KEY_PURPOSE)
        return TenantKeys(kms_key_id=ref.kms_key_id, wrapped_key=ref.wrapped_key, query_key_wrapped=query_key)

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
                    id=tenant_id,
                    name=name.strip(),
                    slug=slug,
                    kms_key_id=keys.kms_key_id,
                    wrapped_key=keys.wrapped_key,
                    query_key_wrapped=keys.query_key_wrapped,
                )
                await repository.insert_tenant(session, tenant)
                await write_audit_event(
                    session, actor.event(tenant_id, "tenant.created", resource_type="tenant", resource_id=tenant_id)
                )
            return tenant
        except IntegrityError as exc:
            if "uq_tenants_slug" not in str(exc.orig):
                raise
    raise TenantNameError("could not find a free slug for this tenant name")


def live(tenant: Tenant | None) -> Tenant | None:
    """The tenant unless it is missing or deleted (suspended ones included: the platform path still sees them)."""
    return tenant if tenant is not None and tenant.deleted_at is None else None


async def get_tenant(db: Database, tenant_id: uuid.UUID, actor: Actor) -> Tenant | None:
    """Read one tenant (platform path); the read is audited when the tenant exists."""
    if tenant_id == SYSTEM_TENANT_ID:
        return None
    async with db.tenant_session(tenant_id) as session:
        tenant = live(await repository.get_tenant(session, tenant_id))
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
        tenant = live(await repository.get_tenant(session, tenant_id, for_update=True))
        if tenant is None:
            return None
        if status == "active":
            refuse_while_offboarding(tenant)
        previous = tenant.status
        tenant.status = status
        await written(session, tenant)
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
        return tenant


async def list_tenants(
    db: Database, actor: Actor, *, status: TenantStatus | None, limit: int, cursor: str | None
) -> TenantPage:
    """One page of live tenants, newest first; `cursor` is the previous page's `next_cursor`.

    The listing concerns no one tenant, so `tenant.listed` (with the ids shown) is written under the
    system tenant, in the transaction that read the page."""
    after = decode_cursor(cursor) if cursor else None
    async with db.tenant_session(SYSTEM_TENANT_ID) as session:
        rows = await repository.tenant_page(session, status=status, after=after, limit=limit + 1)
        page, more = rows[:limit], len(rows) > limit
        items = [TenantOut.model_validate(row) for row in page]
        await write_audit_event(
            session,
            actor.event(
                SYSTEM_TENANT_ID,
                "tenant.listed",
                resource_type="tenant",
                metadata={"status": status, "count": len(items), "tenant_ids": [str(item.id) for item in items]},
            ),
        )
    next_cursor = encode_cursor(page[-1]["created_at"], page[-1]["id"]) if more and page else None
    return TenantPage(items=items, next_cursor=next_cursor)
