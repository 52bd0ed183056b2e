"""Seed one row in every tenant table for a tenant, through the app role and `tenant_session`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import text

from core.db import Database
from models import AuditEvent, write_audit_event

VECTOR_1024 = "[" + ",".join(["0.01"] * 1024) + "]"


@dataclass(frozen=True)
class TenantRows:
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    document_id: uuid.UUID
    chunk_id: uuid.UUID
    audit_id: int

    def key_of(self, table: str) -> tuple[str, object]:
        """The identifying column and value of this tenant's row in `table`."""
        return {
            "tenants": ("id", self.tenant_id),
            "users": ("id", self.user_id),
            "documents": ("id", self.document_id),
            "document_chunks": ("id", self.chunk_id),
            "audit_logs": ("id", self.audit_id),
            "audit_chain_heads": ("tenant_id", self.tenant_id),
        }[table]


async def seed_rows(db: Database, tenant_id: uuid.UUID) -> TenantRows:
    async with db.tenant_session(tenant_id) as session:
        user_id = await session.scalar(
            text("INSERT INTO users (tenant_id, subject, role) VALUES (:t, :s, 'member') RETURNING id"),
            {"t": tenant_id, "s": f"user-{uuid.uuid4().hex}"},
        )
        document_id = await session.scalar(
            text(
                "INSERT INTO documents (tenant_id, uploaded_by, filename, content_type, size_bytes, sha256, "
                "storage_key) VALUES (:t, :u, 'a.txt', 'text/plain', 1, :h, 'k') RETURNING id"
            ),
            {"t": tenant_id, "u": user_id, "h": uuid.uuid4().hex},
        )
        chunk_id = await session.scalar(
            text(
                "INSERT INTO document_chunks (tenant_id, document_id, chunk_index, text, token_count, embedding, "
                "embedding_dims, embedding_model) "
                "VALUES (:t, :d, 0, 'chunk', 1, CAST(:v AS vector), 1024, 'test') RETURNING id"
            ),
            {"t": tenant_id, "d": document_id, "v": VECTOR_1024},
        )
        audit_id = await write_audit_event(session, AuditEvent(tenant_id=tenant_id, action="test.seeded"))
    assert user_id is not None
    assert document_id is not None
    assert chunk_id is not None
    return TenantRows(tenant_id, user_id, document_id, chunk_id, audit_id)
