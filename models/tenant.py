from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, LargeBinary, Text, Uuid
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_column, deleted_at_column, updated_at_column, uuid_pk

TENANT_STATUSES = ("active", "suspended")


class Tenant(Base):
    """A customer organisation. Row-level security scopes this table by `id`."""

    __tablename__ = "tenants"
    __table_args__ = (CheckConstraint("status IN ('active', 'suspended')", name="status"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(Text, nullable=False)
    slug: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default="active")
    kms_key_id: Mapped[str | None] = mapped_column(Text)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_kms_key_id: Mapped[str | None] = mapped_column(Text)
    """During a key rotation: the key rotated away from, still read until every object is migrated."""
    previous_wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    key_rotation_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    key_rotation_cursor: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    """The last document (in id order) moved to the current key; None before the first."""
    purge_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """Offboarding: when the tenant's key and data are destroyed (None: not scheduled)."""
    purged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    purge_receipt: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    """Set when the purge destroys the key: the key ids destroyed and the counts of what it deletes next."""
    query_key_wrapped: Mapped[bytes | None] = mapped_column(LargeBinary)
    """The audit query-HMAC key, wrapped by the tenant key (`tenants.query_keys`); null until first needed."""
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
    deleted_at: Mapped[datetime | None] = deleted_at_column()
