"""Document progress: how many chunks a `processing` document has, and how many are embedded so far.

Both columns are NULL except while a claim works on the document: the claim clears them, the worker
sets `chunks_total` once chunking has counted the chunks and `chunks_embedded` after each embedded
batch (each write fenced by the claim's `attempts`), and finishing or failing clears them again.
The app role's table-level UPDATE on `documents` (migration 0001) already covers them.

Revision ID: 0004_document_progress
Revises: 0003_document_status_counts
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_document_progress"
down_revision: str | None = "0003_document_status_counts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("documents", sa.Column("chunks_total", sa.Integer(), nullable=True))
    op.add_column("documents", sa.Column("chunks_embedded", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("documents", "chunks_embedded")
    op.drop_column("documents", "chunks_total")
