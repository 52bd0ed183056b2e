"""Migration 0003: the app role counts documents by status across tenants, and sees nothing else.

Run on a database migrated by an owner that is not a superuser (as on managed PostgreSQL),
where FORCE ROW LEVEL SECURITY binds the owner too: the function must still count every
tenant's documents, through a policy that only its own statement enables.
"""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from core import migrate
from tests.migrations.conftest import Databases, execute, rows

FUNCTION = "phivault_document_status_counts()"
def _tenant(tenant_id: uuid.UUID) -> str:
    return f"INSERT INTO tenants (id, name, slug) VALUES ('{tenant_id}', 'Clinic', 'clinic-{tenant_id.hex[:8]}')"


def _document(tenant_id: uuid.UUID, status: str, *, deleted: bool = False) -> str:
    document_id = uuid.uuid4()
    return (
        "INSERT INTO documents (id, tenant_id, filename, content_type, size_bytes, sha256, storage_key, status, "
        f"deleted_at) VALUES ('{document_id}', '{tenant_id}', 'note.txt', 'text/plain', 1, '{document_id.hex}', "
        f"'key-{document_id}', '{status}', {'now()' if deleted else 'NULL'})"
    )


async def test_counts_live_documents_of_every_tenant_and_nothing_else(databases: Databases) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    await execute(
        databases.superuser,
        _tenant(first),
        _tenant(second),
        _document(first, "ready"),
        _document(first, "ready"),
        _document(first, "queued"),
        _document(first, "ready", deleted=True),
        _document(second, "failed"),
        _document(second, "ready"),
    )
    # Forced row-level security binds this owner: without the function it sees no document either.
    assert await rows(databases.owner, "SELECT count(*) FROM documents") == [(0,)]

    engine = create_async_engine(databases.app)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(text(f"SELECT * FROM {FUNCTION}"))
            assert list(result.keys()) == ["status", "count"]
            assert [tuple(row) for row in result] == [("failed", 1), ("queued", 1), ("ready", 3)]
            # The switch is reset after the call, and the owner's policy would not admit the app role anyway.
            assert await conn.scalar(text("SELECT current_setting('app.document_status_counts', true)")) == ""
            await conn.execute(text("SELECT set_config('app.document_status_counts', 'on', true)"))
            assert await conn.scalar(text("SELECT count(*) FROM documents")) == 0
    finally:
        await engine.dispose()


async def test_downgrade_removes_it_and_upgrade_restores_it(databases: Databases) -> None:
    present = (
        f"SELECT to_regprocedure('{FUNCTION}') IS NOT NULL, "
        "EXISTS (SELECT 1 FROM pg_policies WHERE tablename = 'documents' AND policyname = 'document_status_counts')"
    )
    await asyncio.to_thread(migrate.downgrade, databases.owner, "0002_tenant_directory")
    assert await rows(databases.superuser, present) == [(False, False)]
    await asyncio.to_thread(migrate.upgrade, databases.owner)
    assert await rows(databases.superuser, present) == [(True, True)]
