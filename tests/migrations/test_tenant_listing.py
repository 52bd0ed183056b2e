"""Migration 0005: the app role reads one page of tenants (never their keys), and nothing else.

Run on a database migrated by an owner that is not a superuser, as in `test_document_status_counts.py`
(whose fixture this reuses): FORCE ROW LEVEL SECURITY binds that owner too, so the function must
read every tenant through the owner-only `tenant_directory` policy its own statement switches on.
"""

from __future__ import annotations

import asyncio
import uuid

from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from core import migrate
from tests.migrations.conftest import Databases, execute, rows

REVISION = "0005_tenant_listing"
FUNCTION = "phivault_tenant_page(text, timestamptz, uuid, integer)"
COLUMNS = ["id", "name", "slug", "status", "kms_key_id", "created_at", "purge_after", "purged_at"]


def _tenant(tenant_id: uuid.UUID, created_at: str, status: str = "active", *, deleted: bool = False) -> str:
    return (
        "INSERT INTO tenants (id, name, slug, status, wrapped_key, created_at, deleted_at) VALUES "
        f"('{tenant_id}', 'Clinic {created_at}', 'clinic-{tenant_id.hex[:8]}', '{status}', '\\xdeadbeef', "
        f"'{created_at}', {'now()' if deleted else 'NULL'})"
    )


def _call(status: str | None = None, after: tuple[str, uuid.UUID] | None = None, limit: int = 10) -> str:
    """A call of the function with literal arguments (NULL for no status filter, or no cursor)."""
    quoted = "NULL" if status is None else f"'{status}'"
    created_at, tenant_id = (f"'{after[0]}'", f"'{after[1]}'") if after else ("NULL", "NULL")
    return f"SELECT * FROM phivault_tenant_page({quoted}, {created_at}, {tenant_id}, {limit})"


async def test_pages_live_tenants_newest_first_without_their_keys(databases: Databases) -> None:
    old, middle, new, gone = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await execute(
        databases.superuser,
        _tenant(old, "2026-01-01T00:00:00Z"),
        _tenant(middle, "2026-02-01T00:00:00Z", "suspended"),
        _tenant(new, "2026-03-01T00:00:00Z"),
        _tenant(gone, "2026-04-01T00:00:00Z", deleted=True),
    )
    # Forced row-level security binds this owner: without the function it sees no tenant either.
    assert await rows(databases.owner, "SELECT count(*) FROM tenants") == [(0,)]

    engine = create_async_engine(databases.app)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(text(_call()))
            assert list(result.keys()) == COLUMNS  # never `wrapped_key`
            assert [row.id for row in result] == [new, middle, old]  # neither deleted nor the system tenant
            page = (await conn.execute(text(_call(limit=2)))).all()
            assert [row.id for row in page] == [new, middle]
            after = (page[-1].created_at.isoformat(), page[-1].id)
            assert [row.id for row in await conn.execute(text(_call(after=after)))] == [old]
            assert [row.id for row in await conn.execute(text(_call("suspended")))] == [middle]
            assert [row.id for row in await conn.execute(text(_call("active", limit=1)))] == [new]
            # The switch is reset after the call, and the owner's policy would not admit the app role anyway.
            assert await conn.scalar(text("SELECT current_setting('app.tenant_directory', true)")) == ""
            await conn.execute(text("SELECT set_config('app.tenant_directory', 'on', true)"))
            assert await conn.scalar(text("SELECT count(*) FROM tenants")) == 0
    finally:
        await engine.dispose()


async def test_downgrade_removes_it_and_upgrade_restores_it(databases: Databases) -> None:
    previous = ScriptDirectory.from_config(migrate.alembic_config()).get_revision(REVISION).down_revision
    assert isinstance(previous, str)
    present = f"SELECT to_regprocedure('{FUNCTION}') IS NOT NULL"
    await asyncio.to_thread(migrate.downgrade, databases.owner, previous)
    assert await rows(databases.superuser, present) == [(False,)]
    await asyncio.to_thread(migrate.upgrade, databases.owner)
    assert await rows(databases.superuser, present) == [(True,)]
