"""Tenants: platform administrators create, list, read, suspend, reactivate and offboard them."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from api.context import PlatformScope, platform_scope, route_of
from api.errors import APIError
from api.openapi import BEARER, error_responses
from audit.service import record_denial
from core.validation import PG_TEXT
from tenants.offboarding import cancel_offboarding, schedule_offboarding
from tenants.schemas import TenantCreate, TenantOut, TenantPage, TenantStatus, TenantUpdate
from tenants.service import create_tenant, get_tenant, key_provisioner, list_tenants, set_tenant_status

router = APIRouter(prefix="/v1/tenants", tags=["tenants"])

Platform = Annotated[PlatformScope, Depends(platform_scope)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TenantOut,
    responses=error_responses(400, 401, 403, 422, 503),
    openapi_extra=BEARER,
    summary="Create a tenant",
    description=(
        "Creates a tenant, `active` at once, and provisions its own encryption key (a wrapped local key, or an AWS "
        "KMS key with `PHIVAULT_KEY_PROVIDER=aws-kms`). The slug is derived from the name; a short random suffix "
        "is added when it is taken. Role: `platform_admin`. Audited as `tenant.created` in the new tenant."
    ),
)
async def create(scope: Platform, body: TenantCreate) -> TenantOut:
    tenant = await create_tenant(scope.state.database, body.name, scope.actor, key_provisioner(scope.state.keys))
    return TenantOut.model_validate(tenant)


@router.get(
    "",
    response_model=TenantPage,
    responses=error_responses(401, 403, 422, 503),
    openapi_extra=BEARER,
    summary="List tenants",
    description=(
        "Live tenants, newest first, optionally only those with one `status`. Pages hold `limit` tenants (1 to "
        "100, default 50); pass `next_cursor` back as `cursor` until it is null. Role: `platform_admin`. Audited as "
        "`tenant.listed` (with the ids shown) under the system tenant."
    ),
)
async def list_all(
    scope: Platform,
    status_filter: Annotated[TenantStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=200), PG_TEXT] = None,
) -> TenantPage:
    return await list_tenants(scope.state.database, scope.actor, status=status_filter, limit=limit, cursor=cursor)


async def _missing(scope: PlatformScope, tenant_id: uuid.UUID) -> APIError:
    await record_denial(
        scope.state.database,
        scope.actor,
        None,
        "access.denied",
        "not_found",
        route=route_of(scope.request),
        resource_type="tenant",
        resource_id=tenant_id,
    )
    return APIError(404, "not_found", "tenant not found")


@router.get(
    "/{tenant_id}",
    response_model=TenantOut,
    responses=error_responses(401, 403, 404, 422, 503),
    openapi_extra=BEARER,
    summary="Read a tenant",
    description=(
        "One live tenant by id; a deleted or unknown id answers 404. Role: `platform_admin`. Audited as "
        "`tenant.viewed` in that tenant."
    ),
)
async def read(scope: Platform, tenant_id: uuid.UUID) -> TenantOut:
    tenant = await get_tenant(scope.state.database, tenant_id, scope.actor)
    if tenant is None:
        raise await _missing(scope, tenant_id)
    return TenantOut.model_validate(tenant)


@router.patch(
    "/{tenant_id}",
    response_model=TenantOut,
    responses=error_responses(400, 401, 403, 404, 409, 422, 503),
    openapi_extra=BEARER,
    summary="Suspend or reactivate a tenant",
    description=(
        "Sets the tenant's `status`. A suspended tenant's tokens are refused (403 `tenant_suspended`) from the next "
        "request on, and its documents stay stored; `active` lets them in again, except while an offboarding is "
        "scheduled (409 `offboarding_scheduled`) or after it (409 `tenant_purged`). Role: `platform_admin`. Audited "
        "as `tenant.updated` with the old and new status."
    ),
)
async def update(scope: Platform, tenant_id: uuid.UUID, body: TenantUpdate) -> TenantOut:
    tenant = await set_tenant_status(scope.state.database, tenant_id, body.status, scope.actor)
    if tenant is None:
        raise await _missing(scope, tenant_id)
    return TenantOut.model_validate(tenant)


@router.delete(
    "/{tenant_id}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TenantOut,
    responses=error_responses(401, 403, 404, 409, 422, 503),
    openapi_extra=BEARER,
    summary="Offboard a tenant",
    description=(
        "Suspends the tenant at once (its tokens are refused from the next request) and schedules the destruction "
        "of its key and data at `purge_after`, `PHIVAULT_TENANT_RETENTION_DAYS` from now. The destruction "
        "crypto-shreds: the tenant key is destroyed first, then its objects, chunks and document rows are deleted; "
        "the audit trail is kept and closed with a `tenant.purged` receipt. Until then, "
        "`DELETE /v1/tenants/{id}/offboarding` cancels it. 409 `offboarding_scheduled` when one is scheduled "
        "already, `tenant_purged` once destroyed. Role: `platform_admin`. Audited as `tenant.offboarding_scheduled`."
    ),
)
async def offboard(scope: Platform, tenant_id: uuid.UUID) -> TenantOut:
    retention = timedelta(days=scope.state.settings.tenant_retention_days)
    tenant = await schedule_offboarding(scope.state.database, tenant_id, scope.actor, retention)
    if tenant is None:
        raise await _missing(scope, tenant_id)
    return TenantOut.model_validate(tenant)


@router.delete(
    "/{tenant_id}/offboarding",
    response_model=TenantOut,
    responses=error_responses(401, 403, 404, 409, 422, 503),
    openapi_extra=BEARER,
    summary="Cancel a tenant's offboarding",
    description=(
        "Clears a scheduled destruction that has not started (`purge_after` becomes null). The tenant stays "
        "suspended until `PATCH /v1/tenants/{id}` makes it `active` again. 409 `offboarding_not_scheduled` when "
        "none is, `tenant_purged` once the destruction has begun. Role: `platform_admin`. Audited as "
        "`tenant.offboarding_cancelled`."
    ),
)
async def cancel_offboard(scope: Platform, tenant_id: uuid.UUID) -> TenantOut:
    tenant = await cancel_offboarding(scope.state.database, tenant_id, scope.actor)
    if tenant is None:
        raise await _missing(scope, tenant_id)
    return TenantOut.model_validate(tenant)
