"""What the tables allow: the models' lists of allowed values are the ones the database checks.

Alembic's comparison of models and migrations (tests/migrations) does not look inside CHECK constraints.
"""

from __future__ import annotations

import re
from typing import get_args

import pytest
from sqlalchemy import CheckConstraint
from sqlalchemy.ext.asyncio import AsyncEngine

from core.security import ROLES
from models import Base
from models.audit import Outcome
from models.document import DOCUMENT_STATUSES
from models.tenant import TENANT_STATUSES
from tests.conftest import owner_scalar

ALLOWED: list[tuple[str, str, tuple[str, ...]]] = [
    ("tenants", "ck_tenants_status", TENANT_STATUSES),
    ("documents", "ck_documents_status", DOCUMENT_STATUSES),
    ("users", "ck_users_role", ROLES),
    ("audit_logs", "ck_audit_logs_outcome", get_args(Outcome)),
]


def _quoted(sql: str) -> set[str]:
    return set(re.findall(r"'([^']*)'", sql))


@pytest.mark.parametrize(("table", "constraint", "allowed"), ALLOWED, ids=[table for table, _, _ in ALLOWED])
async def test_allowed_values_are_the_ones_the_database_checks(
    owner_engine: AsyncEngine, table: str, constraint: str, allowed: tuple[str, ...]
) -> None:
    checked = await owner_scalar(
        owner_engine,
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conname = :name AND conrelid = CAST(:table AS regclass)",
        name=constraint,
        table=table,
    )
    assert isinstance(checked, str), f"no constraint {constraint} on {table}"
    assert _quoted(checked) == set(allowed), checked
    declared = [c for c in Base.metadata.tables[table].constraints if isinstance(c, CheckConstraint)]
    assert [_quoted(str(c.sqltext)) for c in declared] == [set(allowed)]
