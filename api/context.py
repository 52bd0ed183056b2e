"""Per-request authentication, authorisation and the tenant transaction.

A route names the roles it admits with `Depends(tenant_scope(...))` and does all
its work inside `async with scope.transaction() as tx:`. That transaction is a
`tenant_session`: it checks that the tenant is active, provisions the user, and
gives the route an audit writer pre-filled with actor, request id, IP and user
agent. Denials (bad token, wrong role, inactive tenant, another tenant's id) are
audited in a transaction of their own, because the denied action's is rolled back.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select

from api.errors import APIError
from api.state import AppState
from core.db import SYSTEM_TENANT_ID, Database
from core.security import AuthError, Principal, Role
from core.validation import PgText
from models.audit import ActingSession, Actor, write_audit_event
from models.provisioning import provision_user
from models.tenant import Tenant

log = logging.getLogger(__name__)


class Denied(Exception):
    """Raised inside a transaction to refuse the request; audited as `access.denied`."""

    def __init__(
        self, status_code: int, code: str, message: str, *, resource_type: str | None = None, resource_id: object = None
    ) -> None:
        super().__init__(message)
        self.error = APIError(status_code, code, message)
        self.resource_type = resource_type
        self.resource_id = resource_id


def not_found(resource_type: str, resource_id: object) -> Denied:
    """Another tenant's id and a missing id answer alike: 404, audited as denied."""
    return Denied(404, "not_found", f"{resource_type} not found", resource_type=resource_type, resource_id=resource_id)


USER_AGENT = TypeAdapter(PgText)
MAX_USER_AGENT_CHARS = 512


def _user_agent(request: Request) -> str | None:
    """The `User-Agent` the audit trail records, cut to 512 characters; a 422 naming the header (not a 500
    from the driver) when PostgreSQL could not store it. Request ids, addresses and token claims are checked
    where they are parsed (`api.middleware`, `core.security`)."""
    raw = (request.headers.get("user-agent") or "")[:MAX_USER_AGENT_CHARS]
    try:
        return USER_AGENT.validate_python(raw) or None
    except ValidationError as exc:
        raise RequestValidationError([{**error, "loc": ("header", "user-agent")} for error in exc.errors()]) from None


def request_actor(request: Request, principal: Principal | None) -> Actor:
    return Actor(
        actor_id=principal.subject if principal else None,
        actor_type=("platform" if principal.is_platform_admin else "user") if principal else "anonymous",
        request_id=getattr(request.state, "request_id", None),
        ip_address=getattr(request.state, "client_ip", None),
        user_agent=_user_agent(request),
    )


async def audit_denial(
    db: Database,
    actor: Actor,
    tenant_id: uuid.UUID | None,
    action: str,
    reason: str,
    *,
    route: str,
    resource_type: str | None = None,
    resource_id: object = None,
) -> None:
    """Record a refusal under the tenant it concerns, or the system tenant when there is none."""
    metadata: dict[str, Any] = {"reason": reason, "route": route}
    target = tenant_id or SYSTEM_TENANT_ID
    if tenant_id is not None:
        async with db.tenant_session(tenant_id) as session:
            exists = await session.scalar(select(Tenant.id).where(Tenant.id == tenant_id))
        if exists is None:
            target = SYSTEM_TENANT_ID
            metadata["claimed_tenant_id"] = str(tenant_id)
    async with db.tenant_session(target) as session:
        await write_audit_event(
            session,
            actor.event(
                target,
                action,
                outcome="denied",
                resource_type=resource_type,
                resource_id=resource_id,
                metadata=metadata,
            ),
        )


def route_of(request: Request) -> str:
    """`METHOD /path/{template}`, the form every denial records."""
    route = request.scope.get("route")
    return f"{request.method} {getattr(route, 'path', request.url.path)}"


async def authenticate(request: Request) -> Principal:
    """The caller's principal from `Authorization: Bearer`, or 401 (audited as `auth.denied`)."""
    state: AppState = request.app.state.phivault
    anonymous = request_actor(request, None)  # first: a header the trail cannot store is a 422 for every caller
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    try:
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("missing_token", "a bearer token is required")
        return state.verifier.verify(token.strip())
    except AuthError as exc:
        await audit_denial(state.database, anonymous, None, "auth.denied", exc.reason, route=route_of(request))
        raise APIError(401, exc.reason, exc.message) from exc


@dataclass
class TenantScope:
    request: Request
    principal: Principal
    tenant_id: uuid.UUID
    actor: Actor
    state: AppState

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[ActingSession]:
        try:
            async with self.state.database.tenant_session(self.tenant_id) as session:
                tenant = await session.scalar(select(Tenant).where(Tenant.id == self.tenant_id))
                if tenant is None or tenant.deleted_at is not None:
                    raise Denied(403, "tenant_unavailable", "this tenant does not exist or was deleted")
                if tenant.status != "active":
                    raise Denied(403, "tenant_suspended", "this tenant is suspended")
                user = await provision_user(session, tenant.id, self.principal.subject, self.principal.role, self.actor)
                yield ActingSession(session=session, tenant=tenant, actor=self.actor, user_id=user.id)
        except Denied as denied:
            await audit_denial(
                self.state.database,
                self.actor,
                self.tenant_id,
                "access.denied",
                denied.error.code,
                route=route_of(self.request),
                resource_type=denied.resource_type,
                resource_id=denied.resource_id,
            )
            raise denied.error from None


def tenant_scope(*roles: Role) -> Callable[[Request], Awaitable[TenantScope]]:
    """A dependency admitting tenant users with one of `roles`; others get 403 (audited)."""

    async def dependency(request: Request) -> TenantScope:
        principal = await authenticate(request)
        state: AppState = request.app.state.phivault
        actor = request_actor(request, principal)
        if principal.tenant_id is None or principal.role not in roles:
            await audit_denial(
                state.database, actor, principal.tenant_id, "access.denied", "role_not_allowed", route=route_of(request)
            )
            raise APIError(403, "forbidden", f"role {principal.role!r} may not do this")
        request.state.tenant_id = str(principal.tenant_id)
        return TenantScope(
            request=request, principal=principal, tenant_id=principal.tenant_id, actor=actor, state=state
        )

    return dependency


@dataclass
class PlatformScope:
    request: Request
    principal: Principal
    actor: Actor
    state: AppState


async def platform_scope(request: Request) -> PlatformScope:
    """A dependency admitting platform admins only; others get 403 (audited)."""
    principal = await authenticate(request)
    state: AppState = request.app.state.phivault
    actor = request_actor(request, principal)
    if not principal.is_platform_admin:
        await audit_denial(
            state.database, actor, principal.tenant_id, "access.denied", "role_not_allowed", route=route_of(request)
        )
        raise APIError(403, "forbidden", "only platform administrators may do this")
    return PlatformScope(request=request, principal=principal, actor=actor, state=state)
