"""Every SECURITY DEFINER directory function the app role uses belongs to the migration owner and may be
executed by the app role alone (not PUBLIC, not even `pg_monitor`)."""

from __future__ import annotations

import pytest

from core.settings import APP_ROLE
from tests.migrations.conftest import Databases, rows

DIRECTORY_FUNCTIONS = [
    "phivault_tenant_ids()",
    "phivault_document_status_counts()",
    "phivault_tenant_page(text, timestamptz, uuid, integer)",
]


@pytest.mark.parametrize("function", DIRECTORY_FUNCTIONS)
async def test_only_the_app_role_may_execute_it(databases: Databases, function: str) -> None:
    facts = await rows(
        databases.superuser,
        f"SELECT p.prosecdef, pg_get_userbyid(p.proowner), has_function_privilege('{APP_ROLE}', '{function}', "
        f"'EXECUTE'), has_function_privilege('pg_monitor', '{function}', 'EXECUTE'), "
        f"has_function_privilege('public', '{function}', 'EXECUTE') "
        f"FROM pg_proc p WHERE p.oid = '{function}'::regprocedure",
    )
    assert facts == [(True, databases.owner_role, True, False, False)]
