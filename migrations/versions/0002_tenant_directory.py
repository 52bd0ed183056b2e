"""Tenant directory: the ids of all tenants, for background jobs that visit every tenant.

Row-level security hides every tenant but the current one, so jobs such as the
reconciler and the retention purge cannot list tenants themselves. This function
returns ids only (no names, no data) and is the one cross-tenant read the app role
has. It runs as the owner; when the owner is not a superuser, FORCE ROW LEVEL
SECURITY applies to it too, so a SELECT policy for the owner role alone admits the
function's read while it sets `app.tenant_directory` for its own statement.

Revision ID: 0002_tenant_directory
Revises: 0001_foundation
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002_tenant_directory"
down_revision: str | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "phivault_app"


def upgrade() -> None:
    op.execute(
        "CREATE POLICY tenant_directory ON tenants FOR SELECT TO CURRENT_USER "
        "USING (current_setting('app.tenant_directory', true) = 'on')"
    )
    op.execute(
        """
        CREATE FUNCTION phivault_tenant_ids() RETURNS SETOF uuid
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
        BEGIN
          PERFORM set_config('app.tenant_directory', 'on', true);
          RETURN QUERY SELECT id FROM tenants
            WHERE deleted_at IS NULL AND id <> '00000000-0000-0000-0000-000000000000'::uuid ORDER BY id;
          PERFORM set_config('app.tenant_directory', '', true);
        END $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION phivault_tenant_ids() FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION phivault_tenant_ids() TO {APP_ROLE}")


def downgrade() -> None:
    op.execute("DROP FUNCTION phivault_tenant_ids()")
    op.execute("DROP POLICY tenant_directory ON tenants")
