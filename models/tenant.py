from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, LargeBinary, Text
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
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
    deleted_at: Mapped[datetime | None] = deleted_at_column()
