"""Foundation: tenants, users, documents, chunks, append-only chained audit log, forced RLS, app role.

Revision ID: 0001_foundation
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects import postgresql

revision: str = "0001_foundation"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TENANT_CONTEXT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"
SYSTEM_TENANT_ID = "00000000-0000-0000-0000-000000000000"
APP_ROLE = "phivault_app"
TENANT_TABLES = ("users", "documents", "document_chunks")


def _timestamps() -> list[sa.Column[Any]]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    ]


def _uuid_pk() -> sa.Column[Any]:
    return sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False)


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute(
        f"""
        DO $$ BEGIN
          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
            CREATE ROLE {APP_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT;
          END IF;
        END $$
        """
    )

    op.create_table(
        "tenants",
        _uuid_pk(),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("slug", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default="active", nullable=False),
        sa.Column("kms_key_id", sa.Text(), nullable=True),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        *_timestamps(),
        sa.CheckConstraint("status IN ('active', 'suspended')", name=op.f("ck_tenants_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
        sa.UniqueConstraint("slug", name=op.f("uq_tenants_slug")),
    )

    op.create_table(
        "users",
        _uuid_pk(),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("full_name", sa.Text(), nullable=True),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        *_timestamps(),
        sa.CheckConstraint("role IN ('platform_admin', 'admin', 'member', 'viewer')", name=op.f("ck_users_role")),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_users_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
    )
    op.create_index(
        "uq_users_tenant_id_subject",
        "users",
        ["tenant_id", "subject"],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(
        "uq_users_tenant_id_lower_email",
        "users",
        ["tenant_id", sa.text("lower(email)")],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )

    op.create_table(
        "documents",
        _uuid_pk(),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("uploaded_by", sa.Uuid(), nullable=True),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("storage_key", sa.Text(), nullable=False),
        sa.Column("kms_key_id", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), server_default="queued", nullable=False),
        sa.Column("error_code", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("chunk_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("metadata", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        *_timestamps(),
        sa.CheckConstraint("status IN ('queued', 'processing', 'ready', 'failed')", name=op.f("ck_documents_status")),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_documents_tenant_id_tenants")),
        sa.ForeignKeyConstraint(["uploaded_by"], ["users.id"], name=op.f("fk_documents_uploaded_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_documents")),
        sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_documents_tenant_id_id")),
    )
    op.create_index(
        "uq_documents_tenant_id_sha256",
        "documents",
        ["tenant_id", "sha256"],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index("ix_documents_tenant_id_created_at", "documents", ["tenant_id", sa.text("created_at DESC")])

    op.create_table(
        "document_chunks",
        _uuid_pk(),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("document_id", sa.Uuid(), nullable=False),
        sa.Column("chunk_index", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("token_count", sa.Integer(), nullable=False),
        sa.Column("page", sa.Integer(), nullable=True),
        sa.Column("embedding", Vector(1024), nullable=False),
        sa.Column("embedding_model", sa.Text(), nullable=False),
        sa.Column("metadata", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed("to_tsvector('english'::regconfig, text)", persisted=True),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "document_id"],
            ["documents.tenant_id", "documents.id"],
            name="fk_document_chunks_tenant_id_document_id_documents",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_document_chunks_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_document_chunks")),
        sa.UniqueConstraint("document_id", "chunk_index", name=op.f("uq_document_chunks_document_id_chunk_index")),
    )
    op.create_index("ix_document_chunks_tenant_id_document_id", "document_chunks", ["tenant_id", "document_id"])
    op.create_index(
        "ix_document_chunks_embedding_hnsw",
        "document_chunks",
        ["embedding"],
        postgresql_using="hnsw",
        postgresql_with={"m": 16, "ef_construction": 64},
        postgresql_ops={"embedding": "vector_cosine_ops"},
    )
    op.create_index("ix_document_chunks_search_vector", "document_chunks", ["search_vector"], postgresql_using="gin")

    op.execute("CREATE SEQUENCE audit_logs_id_seq")
    op.create_table(
        "audit_logs",
        # set by the audit_logs_chain trigger
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("actor_id", sa.Text(), nullable=True),
        sa.Column("actor_type", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("resource_type", sa.Text(), nullable=True),
        sa.Column("resource_id", sa.Text(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("ip_address", postgresql.INET(), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column("metadata", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("prev_hash", sa.Text(), nullable=False),
        sa.Column("row_hash", sa.Text(), nullable=False),
        sa.CheckConstraint("outcome IN ('success', 'denied', 'error')", name=op.f("ck_audit_logs_outcome")),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_audit_logs_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_logs")),
    )
    op.execute("ALTER SEQUENCE audit_logs_id_seq OWNED BY audit_logs.id")
    op.create_index("ix_audit_logs_tenant_id_created_at", "audit_logs", ["tenant_id", "created_at"])
    op.create_index("ix_audit_logs_tenant_id_action_created_at", "audit_logs", ["tenant_id", "action", "created_at"])
    op.create_index("ix_audit_logs_tenant_id_resource_id", "audit_logs", ["tenant_id", "resource_id"])
    op.create_index("ix_audit_logs_tenant_id_id", "audit_logs", ["tenant_id", "id"])

    op.create_table(
        "audit_chain_heads",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_audit_chain_heads_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_audit_chain_heads")),
    )

    _create_audit_functions()
    _enable_row_level_security()
    _grant_app_role()

    op.execute(f"SELECT set_config('app.tenant_id', '{SYSTEM_TENANT_ID}', true)")
    op.execute(f"INSERT INTO tenants (id, name, slug) VALUES ('{SYSTEM_TENANT_ID}', 'System', 'system')")
    op.execute("SELECT set_config('app.tenant_id', '', true)")


def _create_audit_functions() -> None:
    # The canonical form is jsonb text (keys in a fixed order, no whitespace choices)
    # with the timestamp rendered in UTC, so it never depends on the session's settings.
    op.execute(
        """
        CREATE FUNCTION audit_log_digest(prev_hash text, a audit_logs) RETURNS text
        LANGUAGE sql STABLE AS $$
          SELECT encode(sha256(convert_to(prev_hash || jsonb_build_object(
            'id', a.id, 'tenant_id', a.tenant_id, 'actor_id', a.actor_id, 'actor_type', a.actor_type,
            'action', a.action, 'resource_type', a.resource_type, 'resource_id', a.resource_id,
            'outcome', a.outcome, 'ip_address', a.ip_address::text, 'user_agent', a.user_agent,
            'request_id', a.request_id, 'metadata', a.metadata,
            'created_at', to_char(a.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
          )::text, 'UTF8')), 'hex')
        $$
        """
    )
    # SECURITY DEFINER: the app role may read the chain heads but never write them.
    op.execute(
        """
        CREATE FUNCTION audit_logs_chain() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
        DECLARE
          head_hash text;
        BEGIN
          INSERT INTO audit_chain_heads (tenant_id, last_id, last_hash, updated_at)
            VALUES (NEW.tenant_id, 0, repeat('0', 64), clock_timestamp())
            ON CONFLICT (tenant_id) DO NOTHING;
          SELECT last_hash INTO head_hash FROM audit_chain_heads WHERE tenant_id = NEW.tenant_id FOR UPDATE;
          NEW.id := nextval('audit_logs_id_seq');
          NEW.created_at := clock_timestamp();
          NEW.prev_hash := head_hash;
          NEW.row_hash := audit_log_digest(head_hash, NEW);
          UPDATE audit_chain_heads SET last_id = NEW.id, last_hash = NEW.row_hash, updated_at = NEW.created_at
            WHERE tenant_id = NEW.tenant_id;
          RETURN NEW;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION audit_logs_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION 'audit_logs is append-only: % is not allowed', TG_OP;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_logs_chain BEFORE INSERT ON audit_logs FOR EACH ROW EXECUTE FUNCTION audit_logs_chain()"
    )
    op.execute(
        "CREATE TRIGGER audit_logs_no_update_delete BEFORE UPDATE OR DELETE ON audit_logs "
        "FOR EACH ROW EXECUTE FUNCTION audit_logs_reject_change()"
    )
    op.execute(
        "CREATE TRIGGER audit_logs_no_truncate BEFORE TRUNCATE ON audit_logs "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_logs_reject_change()"
    )
    # ALWAYS: the triggers fire even under session_replication_role = replica.
    for trigger in ("audit_logs_chain", "audit_logs_no_update_delete", "audit_logs_no_truncate"):
        op.execute(f"ALTER TABLE audit_logs ENABLE ALWAYS TRIGGER {trigger}")


def _enable_row_level_security() -> None:
    for table in ("tenants", *TENANT_TABLES, "audit_logs", "audit_chain_heads"):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON tenants USING (id = {TENANT_CONTEXT}) WITH CHECK (id = {TENANT_CONTEXT})"
    )
    for table in (*TENANT_TABLES, "audit_chain_heads"):
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} "
            f"USING (tenant_id = {TENANT_CONTEXT}) WITH CHECK (tenant_id = {TENANT_CONTEXT})"
        )
    op.execute(f"CREATE POLICY tenant_read ON audit_logs FOR SELECT USING (tenant_id = {TENANT_CONTEXT})")
    op.execute(f"CREATE POLICY tenant_append ON audit_logs FOR INSERT WITH CHECK (tenant_id = {TENANT_CONTEXT})")


def _grant_app_role() -> None:
    op.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}")
    op.execute(f"GRANT SELECT ON alembic_version TO {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON tenants, users TO {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON documents, document_chunks TO {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT ON audit_logs TO {APP_ROLE}")
    op.execute(f"GRANT SELECT ON audit_chain_heads TO {APP_ROLE}")


def downgrade() -> None:
    # The role is cluster-wide and may serve other databases: its grants go with
    # the tables, the role itself stays.
    op.execute(f"REVOKE SELECT ON alembic_version FROM {APP_ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {APP_ROLE}")
    op.drop_table("audit_chain_heads")
    op.execute("DROP FUNCTION audit_log_digest(text, audit_logs)")
    op.drop_table("audit_logs")
    op.execute("DROP FUNCTION audit_logs_reject_change()")
    op.execute("DROP FUNCTION audit_logs_chain()")
    op.drop_table("document_chunks")
    op.drop_table("documents")
    op.drop_table("users")
    op.drop_table("tenants")
