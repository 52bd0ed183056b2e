"""The people of a tenant and their access: list, change role, deactivate and reactivate; revoke one token;
grant break-glass access. Tenant administrators do this over HTTP, operators from the command line.

A deactivated user is refused from its next request on, and a lowered role bounds the token's at once,
because every request reads the stored user inside its own tenant transaction
(`tenants.service.acting_session`). An administrator may not deactivate or demote themself, so a tenant is
not locked out of its own administration by accident. Break-glass grants raise a user's role until they
expire or are revoked; every event written under one carries its id and reason (`Actor.break_glass`).
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from core.cursors import decode_cursor, encode_cursor
from core.db import SYSTEM_TENANT_ID, Database
from core.errors import Conflict, NotFound
from core.security import LEEWAY_SECONDS
from models.access_grant import AccessGrant
from models.audit import ActingSession, Actor, write_audit_event
from models.user import User
from tenants.service import ROLE_RANK
from users import repository
from users.revocations import PLATFORM_SCOPE, RevocationStore
from users.schemas import (
    GrantCreate,
    GrantOut,
    GrantPage,
    TokenRevoke,
    TokenRevoked,
    UserOut,
    UserPage,
    UserStatus,
    UserUpdate,
)


class SelfLockout(Conflict):
    def __init__(self) -> None:
        super().__init__(
            "self_lockout",
            "an administrator may not deactivate or demote themself; another administrator of the tenant can",
        )


async def list_users(tx: ActingSession, *, status: UserStatus | None, limit: int, cursor: str | None) -> UserPage:
    """One page of the tenant's users, newest first; audited as `user.listed` with the ids shown."""
    after = decode_cursor(cursor) if cursor else None
    deactivated = None if status is None else status == "deactivated"
    rows = await repository.user_page(tx.session, tx.tenant.id, deactivated=deactivated, after=after, limit=limit + 1)
    page, more = rows[:limit], len(rows) > limit
    items = [UserOut.of(user) for user in page]
    await tx.audit(
        "user.listed",
        resource_type="user",
        metadata={"status": status, "count": len(items), "user_ids": [str(item.id) for item in items]},
    )
    next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if more and page else None
    return UserPage(items=items, next_cursor=next_cursor)


async def update_user(tx: ActingSession, user_id: uuid.UUID, change: UserUpdate) -> User:
    """Change a user's stored role and/or deactivate or reactivate it.

    Audited as `user.updated` (the role's and the status's from/to), then `user.deactivated` or
    `user.reactivated` when the status changed."""
    user = await repository.get_user(tx.session, tx.tenant.id, user_id, for_update=True)
    if user is None:
        raise NotFound("user", user_id)
    demoted = change.role is not None and ROLE_RANK[change.role] < ROLE_RANK.get(user.role, -1)
    if user.id == tx.user_id and (change.active is False or demoted):
        raise SelfLockout()
    metadata: dict[str, Any] = {}
    if change.role is not None:
        metadata["role"] = {"from": user.role, "to": change.role}
        user.role = change.role
    was_active = user.deactivated_at is None
    if change.active is not None:
        metadata["active"] = {"from": was_active, "to": change.active}
        if change.active != was_active:
            user.deactivated_at = None if change.active else datetime.now(UTC)
    await repository.save(tx.session, user)
    await tx.audit("user.updated", resource_type="user", resource_id=user.id, metadata=metadata)
    if change.active is not None and change.active != was_active:
        await tx.audit(
            "user.reactivated" if change.active else "user.deactivated", resource_type="user", resource_id=user.id
        )
    return user


def revocation_ttl(expires_at: datetime, now: datetime, max_lifetime_seconds: int) -> int:
    """Seconds to hold a revocation: until the token stops being accepted (`exp` plus the verifier's leeway),
    at most the longest a token may live, and at least one second."""
    remaining = math.ceil((expires_at - now).total_seconds()) + LEEWAY_SECONDS
    return max(1, min(remaining, max_lifetime_seconds))


async def revoke_token(
    tx: ActingSession, store: RevocationStore, body: TokenRevoke, *, max_lifetime_seconds: int
) -> TokenRevoked:
    """A tenant administrator revokes one `jti` for the tokens of its tenant; audited as `token.revoked`.

    The event is written first, so a store that cannot be reached rolls it back with the request (503)."""
    now = datetime.now(UTC)
    ttl = revocation_ttl(body.expires_at, now, max_lifetime_seconds)
    await tx.audit("token.revoked", resource_type="token", resource_id=body.jti, metadata=_revoked(body, ttl, "tenant"))
    await store.revoke(str(tx.tenant.id), body.jti, ttl)
    return TokenRevoked(revoked_until=now + timedelta(seconds=ttl))


async def revoke_token_everywhere(
    db: Database, actor: Actor, store: RevocationStore, body: TokenRevoke, *, max_lifetime_seconds: int
) -> TokenRevoked:
    """A platform administrator revokes one `jti` in every tenant; audited under the system tenant."""
    now = datetime.now(UTC)
    ttl = revocation_ttl(body.expires_at, now, max_lifetime_seconds)
    async with db.tenant_session(SYSTEM_TENANT_ID) as session:
        await write_audit_event(
            session,
            actor.event(
                SYSTEM_TENANT_ID,
                "token.revoked",
                resource_type="token",
                resource_id=body.jti,
                metadata=_revoked(body, ttl, "platform"),
            ),
        )
        await store.revoke(PLATFORM_SCOPE, body.jti, ttl)
    return TokenRevoked(revoked_until=now + timedelta(seconds=ttl))


def _revoked(body: TokenRevoke, ttl: int, scope: str) -> dict[str, Any]:
    return {"expires_at": body.expires_at.isoformat(), "ttl_seconds": ttl, "scope": scope}


async def create_grant(tx: ActingSession, body: GrantCreate) -> GrantOut:
    """Grant `body.user_id` the role `body.role` for `body.expires_in_minutes`; audited as `access.granted`
    with the grant's id, user, role, expiry and reason (the admin's own words, not PHI)."""
    user = await repository.get_user(tx.session, tx.tenant.id, body.user_id)
    if user is None:
        raise NotFound("user", body.user_id)
    if user.deactivated_at is not None:
        raise Conflict("user_deactivated", "this user is deactivated: reactivate them before granting access")
    now = datetime.now(UTC)
    grant = AccessGrant(
        tenant_id=tx.tenant.id,
        user_id=user.id,
        role=body.role,
        reason=body.reason,
        granted_by=tx.actor.actor_id or tx.actor.actor_type,
        expires_at=now + timedelta(minutes=body.expires_in_minutes),
    )
    await repository.save(tx.session, grant)
    await tx.audit(
        "access.granted",
        resource_type="access_grant",
        resource_id=grant.id,
        metadata={
            "grant_id": str(grant.id),
            "user_id": str(user.id),
            "role": grant.role,
            "expires_at": grant.expires_at.isoformat(),
            "reason": grant.reason,
        },
    )
    return GrantOut.of(grant, now)


async def list_grants(tx: ActingSession, *, active: bool | None, limit: int, cursor: str | None) -> GrantPage:
    """One page of the tenant's grants, newest first; audited as `access_grant.listed` with the ids shown."""
    now = datetime.now(UTC)
    after = decode_cursor(cursor) if cursor else None
    rows = await repository.grant_page(tx.session, tx.tenant.id, active=active, now=now, after=after, limit=limit + 1)
    page, more = rows[:limit], len(rows) > limit
    items = [GrantOut.of(grant, now) for grant in page]
    await tx.audit(
        "access_grant.listed",
        resource_type="access_grant",
        metadata={"active": active, "count": len(items), "grant_ids": [str(item.id) for item in items]},
    )
    next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if more and page else None
    return GrantPage(items=items, next_cursor=next_cursor)


async def revoke_grant(tx: ActingSession, grant_id: uuid.UUID) -> None:
    """End a grant now (a grant already ended stays as it was); audited as `access.grant_revoked`."""
    grant = await repository.get_grant(tx.session, tx.tenant.id, grant_id)
    if grant is None:
        raise NotFound("access_grant", grant_id)
    now = datetime.now(UTC)
    was_active = grant.revoked_at is None and grant.expires_at > now
    if was_active:
        grant.revoked_at = now
        grant.revoked_by = tx.actor.actor_id or tx.actor.actor_type
        await repository.save(tx.session, grant)
    await tx.audit(
        "access.grant_revoked",
        resource_type="access_grant",
        resource_id=grant.id,
        metadata={"grant_id": str(grant.id), "user_id": str(grant.user_id), "was_active": was_active},
    )
