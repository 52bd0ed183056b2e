from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_column, deleted_at_column, tenant_fk, updated_at_column, uuid_pk

DOCUMENT_STATUSES = ("queued", "processing", "ready", "failed")


@dataclass(frozen=True)
class ChunkProgress:
    """How far the claim working on a document has got: chunks counted, and embedded so far."""

    chunks_total: int
    chunks_embedded: int


class Document(Base):
    """An uploaded file: the encrypted object lives in storage, its processing state here."""

    __tablename__ = "documents"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'processing', 'ready', 'failed')", name="status"),
        UniqueConstraint("tenant_id", "id"),
        Index(
            "uq_documents_tenant_id_sha256",
            "tenant_id",
            "sha256",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
        Index("ix_documents_tenant_id_created_at", "tenant_id", text("created_at DESC")),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    uploaded_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    filename: Mapped[str] = mapped_column(Text, nullable=False)
    content_type: Mapped[str] = mapped_column(Text, nullable=False)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sha256: Mapped[str] = mapped_column(Text, nullable=False)
    storage_key: Mapped[str] = mapped_column(Text, nullable=False)
    kms_key_id: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default="queued")
    error_code: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    chunk_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    chunks_total: Mapped[int | None] = mapped_column(Integer)
    """Set by the working claim once chunking has counted the chunks; NULL otherwise (migration 0004)."""
    chunks_embedded: Mapped[int | None] = mapped_column(Integer)
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
    deleted_at: Mapped[datetime | None] = deleted_at_column()

    @property
    def progress(self) -> ChunkProgress | None:
        """The working claim's progress: only while `processing`, once the chunks are counted."""
        if self.status != "processing" or self.chunks_total is None:
            return None
        return ChunkProgress(self.chunks_total, self.chunks_embedded or 0)
