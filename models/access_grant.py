from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_column, tenant_fk, uuid_pk


class AccessGrant(Base):
    """Break-glass access: a temporary role for one user, with the granting admin's reason, until `expires_at`
    (or `revoked_at`). The reason is the admin's own words, kept here and in the audit trail; it is not PHI."""

    __tablename__ = "access_grants"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'member')", name="role"),
        CheckConstraint("char_length(reason) BETWEEN 10 AND 1000", name="reason_length"),
        Index("ix_access_grants_tenant_id_user_id_expires_at", "tenant_id", "user_id", "expires_at"),
        Index("ix_access_grants_tenant_id_created_at_id", "tenant_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False)
    role: Mapped[str] = mapped_column(Text, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    granted_by: Mapped[str] = mapped_column(Text, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_by: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()
