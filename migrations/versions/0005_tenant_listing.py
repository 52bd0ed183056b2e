"""Tenant listing: one page of tenants for platform administrators (`GET /v1/tenants`, `phivault tenant list`).

Row-level security hides every tenant but the current one, and no role sees them all. Like
`phivault_tenant_ids()` (migration 0002), this function runs as the owner and reads `tenants` through
the owner-only `tenant_directory` policy, switched on for its own statement and off again. It returns
the columns `TenantOut` shows and never `wrapped_key`: newest first, keyset-paginated on
(`created_at`, `id`), optionally filtered by status, live tenants only, the system tenant left out.

Revision ID: 0005_tenant_listing
Revises: 0004_document_progress
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005_tenant_listing"
down_revision: str | None = "0004_document_progress"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "phivault_app"
SIGNATURE = "phivault_tenant_page(text, timestamptz, uuid, integer)"


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION phivault_tenant_page(
          p_status text, p_after_created_at timestamptz, p_after_id uuid, p_limit integer
        ) RETURNS TABLE (id uuid, name text, slug text, status text, kms_key_id text, created_at timestamptz)
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
        BEGIN
          PERFORM set_config('app.tenant_directory', 'on', true);
          RETURN QUERY SELECT t.id, t.name, t.slug, t.status, t.kms_key_id, t.created_at FROM tenants t
            WHERE t.deleted_at IS NULL AND t.id <> '00000000-0000-0000-0000-000000000000'::uuid
              AND (p_status IS NULL OR t.status = p_status)
              AND (p_after_created_at IS NULL OR (t.created_at, t.id) < (p_after_created_at, p_after_id))
            ORDER BY t.created_at DESC, t.id DESC
            LIMIT p_limit;
          PERFORM set_config('app.tenant_directory', '', true);
        END $$
        """
    )
    op.execute(f"REVOKE ALL ON FUNCTION {SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO {APP_ROLE}")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {SIGNATURE}")
