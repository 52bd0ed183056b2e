"""Per-request authentication, authorisation and the tenant transaction.

A route names the roles it admits with `Depends(tenant_scope(...))` and does all
its work inside `async with scope.transaction() as tx:`. That transaction is
`tenants.service.acting_session`: it checks that the tenant is active, provisions the
user, and gives the route an audit writer pre-filled with actor, request id, IP and
user agent. Denials (bad token, wrong role, inactive tenant, another tenant's id) are
audited in a transaction of their own (`audit.service.record_denial`), because the
denied action's is rolled back.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError

from api.errors import APIError, status_of
from api.state import AppState
from audit.service import record_denial
from core.errors import NotFound
from core.security import AuthError, Principal, Role
from core.validation import PgText
from models.audit import ActingSession, Actor
from tenants.service import TenantUnavailable, acting_session

log = logging.getLogger(__name__)


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
        await record_denial(state.database, anonymous, None, "auth.denied", exc.reason, route=route_of(request))
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
        """The tenant transaction; a refusal inside it (inactive tenant, a resource not found) is audited."""
        try:
            async with acting_session(self.state.database, self.tenant_id, self.actor, self.principal) as tx:
                yield tx
        except (TenantUnavailable, NotFound) as refused:
            missing = refused if isinstance(refused, NotFound) else None
            await record_denial(
                self.state.database,
                self.actor,
                self.tenant_id,
                "access.denied",
                refused.code,
                route=route_of(self.request),
                resource_type=missing.resource_type if missing else None,
                resource_id=missing.resource_id if missing else None,
            )
            raise APIError(status_of(refused), refused.code, refused.message) from None


def tenant_scope(*roles: Role) -> Callable[[Request], Awaitable[TenantScope]]:
    """A dependency admitting tenant users with one of `roles`; others get 403 (audited)."""

    async def dependency(request: Request) -> TenantScope:
        principal = await authenticate(request)
        state: AppState = request.app.state.phivault
        actor = request_actor(request, principal)
        if principal.tenant_id is None or principal.role not in roles:
            await record_denial(
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
        await record_denial(
            state.database, actor, principal.tenant_id, "access.denied", "role_not_allowed", route=route_of(request)
        )
        raise APIError(403, "forbidden", "only platform administrators may do this")
    return PlatformScope(request=request, principal=principal, actor=actor, state=state)
