"""User access: deactivation and break-glass grants (issue 15, items 1-2).

`users.deactivated_at` marks a user whose tokens are refused from the next request on (the row, its
`subject` and its audit trail stay; `deleted_at` keeps its meaning of a removed row and stays unused).
`access_grants` holds break-glass grants: a temporary role for one user, with the granting admin's
written reason and an expiry. Grants are records: the app role may insert them and set `revoked_at`,
never delete them. Like every tenant table, row-level security is forced on it.

Revision ID: 0007_user_access
Revises: 0006_compact_embeddings
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_user_access"
down_revision: str | None = "0006_compact_embeddings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TENANT_CONTEXT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"
APP_ROLE = "phivault_app"


def upgrade() -> None:
    op.add_column("users", sa.Column("deactivated_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "access_grants",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("granted_by", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("role IN ('admin', 'member')", name=op.f("ck_access_grants_role")),
        sa.CheckConstraint("char_length(reason) BETWEEN 10 AND 1000", name=op.f("ck_access_grants_reason_length")),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_access_grants_tenant_id_tenants")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_access_grants_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_grants")),
    )
    op.create_index(
        "ix_access_grants_tenant_id_user_id_expires_at", "access_grants", ["tenant_id", "user_id", "expires_at"]
    )
    op.create_index("ix_access_grants_tenant_id_created_at_id", "access_grants", ["tenant_id", "created_at", "id"])
    op.execute("ALTER TABLE access_grants ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE access_grants FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY tenant_isolation ON access_grants "
        f"USING (tenant_id = {TENANT_CONTEXT}) WITH CHECK (tenant_id = {TENANT_CONTEXT})"
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON access_grants TO {APP_ROLE}")


def downgrade() -> None:
    op.drop_table("access_grants")
    op.drop_column("users", "deactivated_at")
