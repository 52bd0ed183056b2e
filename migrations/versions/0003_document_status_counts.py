"""Document status counts: how many documents are in each status, across all tenants, for `GET /metrics`.

Row-level security hides every tenant but the current one, so the API cannot count
documents service-wide itself. This function returns `(status, count)` pairs only (no
tenant ids, no document data). Like `phivault_tenant_ids()` it runs as the owner and, for
an owner that is not a superuser, a SELECT policy for the owner role alone admits its
read while it sets `app.document_status_counts` for its own statement.

Revision ID: 0003_document_status_counts
Revises: 0002_tenant_directory
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003_document_status_counts"
down_revision: str | None = "0002_tenant_directory"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "phivault_app"


def upgrade() -> None:
    op.execute(
        "CREATE POLICY document_status_counts ON documents FOR SELECT TO CURRENT_USER "
        "USING (current_setting('app.document_status_counts', true) = 'on')"
    )
    op.execute(
        """
        CREATE FUNCTION phivault_document_status_counts() RETURNS TABLE (status text, count bigint)
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
        BEGIN
          PERFORM set_config('app.document_status_counts', 'on', true);
          RETURN QUERY SELECT d.status, count(*)::bigint FROM documents d
            WHERE d.deleted_at IS NULL GROUP BY d.status ORDER BY d.status;
          PERFORM set_config('app.document_status_counts', '', true);
        END $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION phivault_document_status_counts() FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION phivault_document_status_counts() TO {APP_ROLE}")


def downgrade() -> None:
    op.execute("DROP FUNCTION phivault_document_status_counts()")
    op.execute("DROP POLICY document_status_counts ON documents")
