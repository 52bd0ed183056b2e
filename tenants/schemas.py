"""Tenant shapes of the HTTP contract, and the tenant list's cursor. Bad input raises `InvalidInput`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from core.validation import PG_TEXT

TenantStatus = Literal["active", "suspended"]

TENANT_EXAMPLE: dict[str, JsonValue] = {
    "id": "0b7e3f0e-5a8c-4d0e-9a47-2f1d3c4b5a69",
    "name": "St. Mary's Clinic",
    "slug": "st-mary-s-clinic",
    "status": "active",
    "kms_key_id": None,
    "created_at": "2026-11-24T09:30:00Z",
    "purge_after": None,
    "purged_at": None,
}


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "St. Mary's Clinic"}]})

    name: Annotated[
        str,
        Field(min_length=1, max_length=200, description="Shown to people; the slug is derived from it."),
        PG_TEXT,
    ]


class TenantUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"status": "suspended"}]})

    status: TenantStatus = Field(description="`suspended` refuses the tenant's tokens from the next request on.")


class TenantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [TENANT_EXAMPLE]})

    id: uuid.UUID
    name: str
    slug: str = Field(description="Unique, derived from the name at creation.")
    status: TenantStatus
    kms_key_id: str | None = Field(description="The tenant's AWS KMS key, with `PHIVAULT_KEY_PROVIDER=aws-kms`.")
    created_at: datetime
    purge_after: datetime | None = Field(
        default=None,
        description="Offboarding: when the tenant's key and data will be destroyed (`DELETE /v1/tenants/{id}`); "
        "null when none is scheduled.",
    )
    purged_at: datetime | None = Field(
        default=None, description="When the tenant's key and data were destroyed; null while they exist."
    )


class TenantPage(BaseModel):
    """Tenants newest first; pass `next_cursor` back as `cursor` for the next page (null: no more)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [TENANT_EXAMPLE], "next_cursor": None}]})

    items: list[TenantOut]
    next_cursor: str | None


class PurgeReceipt(BaseModel):
    """What an offboarding destroyed: the metadata of the tenant's `tenant.purged` audit event."""

    tenant_id: uuid.UUID
    purged_at: datetime
    key_provider: str
    destroyed_key_ids: list[str] = Field(description="KMS key ARNs, or `sha256:` fingerprints of wrapped keys.")
    documents: int
    chunks: int
    objects: int


class KeyRotationStatus(BaseModel):
    """A tenant key rotation's progress: objects moved to the new key so far, of the tenant's objects."""

    tenant_id: uuid.UUID
    in_progress: bool
    started_at: datetime | None
    migrated: int
    total: int
