"""The tenant's users, token revocation and break-glass access grants (the rules are in `users.service`)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from api.context import PlatformScope, TenantScope, admin_scope, tenant_scope
from api.openapi import BEARER, error_responses
from core.validation import PG_TEXT
from users import service
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

router = APIRouter(tags=["users"])

Admins = Annotated[TenantScope, Depends(tenant_scope("admin"))]
Revokers = Annotated[TenantScope | PlatformScope, Depends(admin_scope)]
Cursor = Annotated[str | None, Query(max_length=200), PG_TEXT]
Limit = Annotated[int, Query(ge=1, le=100)]


@router.get(
    "/v1/users",
    response_model=UserPage,
    responses=error_responses(401, 403, 422, 503),
    openapi_extra=BEARER,
    summary="List the tenant's users",
    description=(
        "The tenant's users (each one provisioned the first time its token's `sub` was seen), newest first, "
        "optionally only `active` or `deactivated` ones. Pages hold `limit` users (1 to 100, default 50); pass "
        "`next_cursor` back as `cursor` until it is null. Role: `admin`. Audited as `user.listed`."
    ),
)
async def list_users(
    scope: Admins,
    status_filter: Annotated[UserStatus | None, Query(alias="status")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> UserPage:
    async with scope.transaction() as tx:
        return await service.list_users(tx, status=status_filter, limit=limit, cursor=cursor)


@router.patch(
    "/v1/users/{user_id}",
    response_model=UserOut,
    responses=error_responses(400, 401, 403, 404, 409, 422, 503),
    openapi_extra=BEARER,
    summary="Change a user's role, deactivate or reactivate it",
    description=(
        "`role` sets the stored role: every request acts on the lesser of it and the token's role, so lowering "
        "it takes effect on the user's next request. `active: false` deactivates the user: every token of it is "
        "refused (403 `user_deactivated`) from the next request on, whatever its expiry; `active: true` lets it "
        "in again. An administrator may not deactivate or demote themself (409 `self_lockout`). Another "
        "tenant's user id answers 404. Role: `admin`. Audited as `user.updated` (with the role's and status's "
        "old and new values), and `user.deactivated` or `user.reactivated`."
    ),
)
async def update_user(scope: Admins, user_id: uuid.UUID, body: UserUpdate) -> UserOut:
    async with scope.transaction() as tx:
        user = await service.update_user(tx, user_id, body)
    return UserOut.of(user)


@router.post(
    "/v1/tokens/revoke",
    response_model=TokenRevoked,
    responses=error_responses(400, 401, 403, 422, 503),
    openapi_extra=BEARER,
    summary="Revoke one token",
    description=(
        "Refuses every token carrying this `jti` (401 `token_revoked`) from the next request on, on every API "
        "replica, until `expires_at` (the token's `exp`; held at most `PHIVAULT_TOKEN_MAX_LIFETIME_SECONDS`). "
        "A tenant administrator revokes it for tokens of its own tenant, a platform administrator for every "
        "tenant. Roles: `admin`, `platform_admin`. Audited as `token.revoked` (under the system tenant for a "
        "platform administrator)."
    ),
)
async def revoke_token(scope: Revokers, body: TokenRevoke) -> TokenRevoked:
    state = scope.state
    lifetime = state.settings.token_max_lifetime_seconds
    if isinstance(scope, PlatformScope):
        return await service.revoke_token_everywhere(
            state.database, scope.actor, state.revocations, body, max_lifetime_seconds=lifetime
        )
    async with scope.transaction() as tx:
        return await service.revoke_token(tx, state.revocations, body, max_lifetime_seconds=lifetime)


@router.post(
    "/v1/access-grants",
    status_code=status.HTTP_201_CREATED,
    response_model=GrantOut,
    responses=error_responses(400, 401, 403, 404, 409, 422, 503),
    openapi_extra=BEARER,
    summary="Grant break-glass access",
    description=(
        "Gives a user of the tenant the role `admin` or `member` for `expires_in_minutes` (at most 1440, "
        "24 hours), whatever its stored role, with a written `reason` (10 to 1000 characters; the admin's own "
        "words, kept with the grant and in the audit trail: no PHI). Every audit event the user writes under "
        "the grant carries `metadata.break_glass` with its id and reason. Role: `admin`. Audited as "
        "`access.granted`."
    ),
)
async def create_grant(scope: Admins, body: GrantCreate) -> GrantOut:
    async with scope.transaction() as tx:
        return await service.create_grant(tx, body)


@router.get(
    "/v1/access-grants",
    response_model=GrantPage,
    responses=error_responses(401, 403, 422, 503),
    openapi_extra=BEARER,
    summary="List break-glass grants",
    description=(
        "The tenant's grants, newest first; `active=true` only those neither revoked nor expired, `active=false` "
        "only the others. Pages hold `limit` grants (1 to 100, default 50); pass `next_cursor` back as `cursor` "
        "until it is null. Role: `admin`. Audited as `access_grant.listed`."
    ),
)
async def list_grants(scope: Admins, active: bool | None = None, limit: Limit = 50, cursor: Cursor = None) -> GrantPage:
    async with scope.transaction() as tx:
        return await service.list_grants(tx, active=active, limit=limit, cursor=cursor)


@router.delete(
    "/v1/access-grants/{grant_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 403, 404, 422, 503),
    openapi_extra=BEARER,
    summary="Revoke a break-glass grant",
    description=(
        "Ends the grant now: the user's next request acts on its own role again. A grant already ended is left "
        "as it was. Another tenant's grant id answers 404. Role: `admin`. Audited as `access.grant_revoked`."
    ),
)
async def revoke_grant(scope: Admins, grant_id: uuid.UUID) -> Response:
    async with scope.transaction() as tx:
        await service.revoke_grant(tx, grant_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
