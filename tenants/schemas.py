"""Tenant shapes of the HTTP contract."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.validation import PG_TEXT

TenantStatus = Literal["active", "suspended"]


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200), PG_TEXT]


class TenantUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: TenantStatus


class TenantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    slug: str
    status: str
    kms_key_id: str | None
    created_at: datetime
