"""Tenants: platform administrators create, read, suspend and reactivate them."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, status

from api.context import PlatformScope, platform_scope, route_of
from api.errors import APIError
from api.openapi import BEARER, error_responses
from audit.service import record_denial
from tenants.schemas import TenantCreate, TenantOut, TenantUpdate
from tenants.service import create_tenant, get_tenant, key_provisioner, set_tenant_status

router = APIRouter(prefix="/v1/tenants", tags=["tenants"])

Platform = Annotated[PlatformScope, Depends(platform_scope)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TenantOut,
    responses=error_responses(400, 401, 403, 422, 503),
    openapi_extra=BEARER,
)
async def create(scope: Platform, body: TenantCreate) -> TenantOut:
    tenant = await create_tenant(scope.state.database, body.name, scope.actor, key_provisioner(scope.state.keys))
    return TenantOut.model_validate(tenant)


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
    "/{tenant_id}", response_model=TenantOut, responses=error_responses(401, 403, 404, 422, 503), openapi_extra=BEARER
)
async def read(scope: Platform, tenant_id: uuid.UUID) -> TenantOut:
    tenant = await get_tenant(scope.state.database, tenant_id, scope.actor)
    if tenant is None:
        raise await _missing(scope, tenant_id)
    return TenantOut.model_validate(tenant)


@router.patch(
    "/{tenant_id}",
    response_model=TenantOut,
    responses=error_responses(400, 401, 403, 404, 422, 503),
    openapi_extra=BEARER,
)
async def update(scope: Platform, tenant_id: uuid.UUID, body: TenantUpdate) -> TenantOut:
    tenant = await set_tenant_status(scope.state.database, tenant_id, body.status, scope.actor)
    if tenant is None:
        raise await _missing(scope, tenant_id)
    return TenantOut.model_validate(tenant)
