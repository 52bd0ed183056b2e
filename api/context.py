"""Per-request authentication, authorisation and the tenant transaction.

A route names the roles it admits with `Depends(tenant_scope(...))` and does all
its work inside `async with scope.transaction() as tx:`. That transaction is
`tenants.service.acting_session`: it checks that the tenant is active, reads (or
provisions) the user and authorises it there, on the stored role (a deactivated user
is refused; the lesser of the token's and the stored role, raised by an active
break-glass grant, must be one the route admits), and gives the route an audit writer
pre-filled with actor, request id, IP and user agent. A token with a `jti` is checked
against the revocation store first (`users.revocations`). Denials (bad or revoked
token, wrong role, deactivated user, inactive tenant, another tenant's id) are audited
in a transaction of their own (`audit.service.record_denial`), because the denied
action's is rolled back.
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
from tenants.service import AccessRefused, TenantUnavailable, acting_session

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
        principal = state.verifier.verify(token.strip())
    except AuthError as exc:
        await record_denial(state.database, anonymous, None, "auth.denied", exc.reason, route=route_of(request))
        raise APIError(401, exc.reason, exc.message) from exc
    if principal.jti is not None:
        await _refuse_if_revoked(request, state, principal, principal.jti)
    return principal


async def _refuse_if_revoked(request: Request, state: AppState, principal: Principal, jti: str) -> None:
    """401 `token_revoked` (audited under the token's own subject and tenant, with the jti), or 503 when the
    store cannot be asked: a revocation that cannot be checked is not a pass."""
    if await state.revocations.is_revoked(principal.tenant_id, jti):  # RevocationsUnavailable: a 503 (api.errors)
        actor = request_actor(request, principal)
        await record_denial(
            state.database,
            actor,
            principal.tenant_id,
            "auth.denied",
            "token_revoked",
            route=route_of(request),
            resource_type="token",
            resource_id=jti,
        )
        raise APIError(401, "token_revoked", "this token was revoked")


class _CheckedOnly(Exception):
    """Ends `TenantScope.authorise`'s transaction once its checks passed, rolling it back."""


@dataclass
class TenantScope:
    request: Request
    principal: Principal
    tenant_id: uuid.UUID
    actor: Actor
    state: AppState
    roles: tuple[Role, ...]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[ActingSession]:
        """The tenant transaction, authorised for `roles`; a refusal inside it (inactive tenant, deactivated
        user, a role not admitted, a resource not found) is audited."""
        try:
            async with acting_session(
                self.state.database, self.tenant_id, self.actor, self.principal, self.roles
            ) as tx:
                self.request.state.tenant_id = str(self.tenant_id)
                yield tx
        except AccessRefused as refused:
            await self._deny(refused.reason)
            raise APIError(403, refused.code, refused.message) from None
        except (TenantUnavailable, NotFound) as refused:
            missing = refused if isinstance(refused, NotFound) else None
            await self._deny(
                refused.code,
                resource_type=missing.resource_type if missing else None,
                resource_id=missing.resource_id if missing else None,
            )
            raise APIError(status_of(refused), refused.code, refused.message) from None

    async def authorise(self) -> None:
        """Run the checks of `transaction` at once (before a body is read), in a transaction of their own that
        is rolled back: it decides, and keeps nothing (a first-sight user is provisioned by the route's own)."""
        try:
            async with self.transaction():
                raise _CheckedOnly
        except _CheckedOnly:
            pass

    async def _deny(self, reason: str, *, resource_type: str | None = None, resource_id: object = None) -> None:
        await record_denial(
            self.state.database,
            self.actor,
            self.tenant_id,
            "access.denied",
            reason,
            route=route_of(self.request),
            resource_type=resource_type,
            resource_id=resource_id,
        )


def tenant_scope(*roles: Role, before_body: bool = False) -> Callable[[Request], Awaitable[TenantScope]]:
    """A dependency admitting tenant users whose effective role is one of `roles`; others get 403 (audited).

    The role is checked inside the route's tenant transaction, against the stored user. With `before_body`
    (uploads) it is checked at once, in a short transaction of its own, so a refused caller's body is never
    read; the route's transactions check it again."""

    async def dependency(request: Request) -> TenantScope:
        scope = await _tenant_scope(request, await authenticate(request), roles)
        if before_body:
            await scope.authorise()
        return scope

    return dependency


async def _tenant_scope(request: Request, principal: Principal, roles: tuple[Role, ...]) -> TenantScope:
    state: AppState = request.app.state.phivault
    actor = request_actor(request, principal)
    if principal.tenant_id is None:
        await record_denial(state.database, actor, None, "access.denied", "role_not_allowed", route=route_of(request))
        raise APIError(403, "forbidden", f"role {principal.role!r} may not do this")
    return TenantScope(
        request=request, principal=principal, tenant_id=principal.tenant_id, actor=actor, state=state, roles=roles
    )


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


async def admin_scope(request: Request) -> TenantScope | PlatformScope:
    """A dependency admitting platform administrators, and tenant users acting as `admin` (checked in the
    tenant transaction, like `tenant_scope("admin")`)."""
    principal = await authenticate(request)
    if principal.is_platform_admin:
        state: AppState = request.app.state.phivault
        return PlatformScope(request=request, principal=principal, actor=request_actor(request, principal), state=state)
    return await _tenant_scope(request, principal, ("admin",))
