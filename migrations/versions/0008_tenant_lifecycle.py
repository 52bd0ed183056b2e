"""Tenant lifecycle: offboarding with crypto-shredding, key rotation (issue 15, items 3-4).

`tenants` gains the offboarding schedule (`purge_after`, `purged_at`, and `purge_receipt`: the receipt drafted
when the key is destroyed, so a purge that stopped halfway writes the same receipt when it is finished) and the key
rotation state (`previous_kms_key_id` / `previous_wrapped_key`: the key rotated away from, still read until every
object is migrated; `key_rotation_started_at`, `key_rotation_cursor`: how far the migration got).

`phivault_tenants_due_for_purge()` lists the tenants whose destruction is due, like `phivault_tenant_ids()`
(migration 0002): ids only, as the owner, through the owner-only `tenant_directory` policy. The listing function of
migration 0005 is replaced by one that also returns `purge_after` and `purged_at`.

Revision ID: 0008_tenant_lifecycle
Revises: 0007_user_access
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008_tenant_lifecycle"
down_revision: str | None = "0007_user_access"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "phivault_app"
PAGE_SIGNATURE = "phivault_tenant_page(text, timestamptz, uuid, integer)"
DUE_SIGNATURE = "phivault_tenants_due_for_purge()"

COLUMNS = (
    sa.Column("purge_after", sa.DateTime(timezone=True), nullable=True),
    sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("purge_receipt", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column("previous_kms_key_id", sa.Text(), nullable=True),
    sa.Column("previous_wrapped_key", sa.LargeBinary(), nullable=True),
    sa.Column("key_rotation_started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("key_rotation_cursor", sa.Uuid(), nullable=True),
)


def _tenant_page(extra_columns: str, extra_types: str) -> str:
    return f"""
        CREATE FUNCTION phivault_tenant_page(
          p_status text, p_after_created_at timestamptz, p_after_id uuid, p_limit integer
        ) RETURNS TABLE (
          id uuid, name text, slug text, status text, kms_key_id text, created_at timestamptz{extra_types}
        )
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
        BEGIN
          PERFORM set_config('app.tenant_directory', 'on', true);
          RETURN QUERY SELECT t.id, t.name, t.slug, t.status, t.kms_key_id, t.created_at{extra_columns} FROM tenants t
            WHERE t.deleted_at IS NULL AND t.id <> '00000000-0000-0000-0000-000000000000'::uuid
              AND (p_status IS NULL OR t.status = p_status)
              AND (p_after_created_at IS NULL OR (t.created_at, t.id) < (p_after_created_at, p_after_id))
            ORDER BY t.created_at DESC, t.id DESC
            LIMIT p_limit;
          PERFORM set_config('app.tenant_directory', '', true);
        END $$
        """


def _replace_tenant_page(extra_columns: str, extra_types: str) -> None:
    op.execute(f"DROP FUNCTION {PAGE_SIGNATURE}")
    op.execute(_tenant_page(extra_columns, extra_types))
    op.execute(f"REVOKE ALL ON FUNCTION {PAGE_SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {PAGE_SIGNATURE} TO {APP_ROLE}")


def upgrade() -> None:
    for column in COLUMNS:
        op.add_column("tenants", column)
    _replace_tenant_page(", t.purge_after, t.purged_at", ", purge_after timestamptz, purged_at timestamptz")
    op.execute(
        f"""
        CREATE FUNCTION {DUE_SIGNATURE} RETURNS SETOF uuid
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
        BEGIN
          PERFORM set_config('app.tenant_directory', 'on', true);
          RETURN QUERY SELECT id FROM tenants
            WHERE deleted_at IS NULL AND purged_at IS NULL AND purge_after <= now()
              AND id <> '00000000-0000-0000-0000-000000000000'::uuid ORDER BY purge_after, id;
          PERFORM set_config('app.tenant_directory', '', true);
        END $$
        """
    )
    op.execute(f"REVOKE ALL ON FUNCTION {DUE_SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {DUE_SIGNATURE} TO {APP_ROLE}")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {DUE_SIGNATURE}")
    _replace_tenant_page("", "")
    for column in reversed(COLUMNS):
        op.drop_column("tenants", column.name)
