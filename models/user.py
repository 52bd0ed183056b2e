from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, Index, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_column, deleted_at_column, tenant_fk, updated_at_column, uuid_pk


class User(Base):
    """A person or service known by its JWT `sub` within one tenant, provisioned on first sight.

    `role` is the authority: a request acts on the lesser of it and the token's role, and it changes only
    through `PATCH /v1/users/{id}`. A user with `deactivated_at` set is refused on every request."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('platform_admin', 'admin', 'member', 'viewer')", name="role"),
        Index(
            "uq_users_tenant_id_subject",
            "tenant_id",
            "subject",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
        Index(
            "uq_users_tenant_id_lower_email",
            "tenant_id",
            func.lower(text("email")),
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    subject: Mapped[str] = mapped_column(Text, nullable=False)
    email: Mapped[str | None] = mapped_column(Text)
    full_name: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text, nullable=False)
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deactivated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
    deleted_at: Mapped[datetime | None] = deleted_at_column()
