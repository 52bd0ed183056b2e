"""Audit accounting: disclosures report, query HMAC keys, rejected uploads (issue 15, items 5-7).

* `tenants.query_key_wrapped`: the tenant's random 32-byte key for the HMAC of search queries in the audit
  trail, wrapped by the tenant key (`core.keys: wrap_secret`). Null for tenants created before this
  revision until their first search (`tenants.query_keys`). The app role's grants on `tenants` cover it.
* `ix_audit_logs_search_document_ids`: "which searches returned this document" for the disclosures report
  (`GET /v1/audit-logs/report?resource_id=`): a GIN index (`jsonb_path_ops`, containment only) on the ids a
  `search.query` event returned, partial so only search events are indexed. `audit_logs` stays append-only:
  an index changes no row and no hash.

Revision ID: 0009_audit_accounting
Revises: 0008_tenant_lifecycle
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_audit_accounting"
down_revision: str | None = "0008_tenant_lifecycle"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEARCH_DOCUMENTS_INDEX = "ix_audit_logs_search_document_ids"


def upgrade() -> None:
    op.add_column("tenants", sa.Column("query_key_wrapped", sa.LargeBinary(), nullable=True))
    op.create_index(
        SEARCH_DOCUMENTS_INDEX,
        "audit_logs",
        [sa.literal_column("(metadata -> 'document_ids')").label("document_ids")],
        postgresql_using="gin",
        postgresql_ops={"document_ids": "jsonb_path_ops"},
        postgresql_where=sa.text("action = 'search.query'"),
    )


def downgrade() -> None:
    op.drop_index(SEARCH_DOCUMENTS_INDEX, table_name="audit_logs")
    op.drop_column("tenants", "query_key_wrapped")
