"""Migration 0003: the app role counts documents by status across tenants, and sees nothing else.

Run on a database migrated by an owner that is not a superuser (as on managed PostgreSQL),
where FORCE ROW LEVEL SECURITY binds the owner too: the function must still count every
tenant's documents, through a policy that only its own statement enables.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from core import migrate
from core.runtime import Services
from core.settings import APP_ROLE
from tests.conftest import TEST_APP_PASSWORD
from tests.harness import scratch_database

FUNCTION = "phivault_document_status_counts()"
OWNER_PASSWORD = "owner-for-tests"


@dataclass(frozen=True)
class Databases:
    superuser: URL
    owner: URL
    app: URL
    owner_role: str


async def _execute(url: URL, *statements: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def _rows(url: URL, sql: str) -> list[tuple[object, ...]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(text(sql))
            return [tuple(row) for row in result]
    finally:
        await engine.dispose()


def _tenant(tenant_id: uuid.UUID) -> str:
    return f"INSERT INTO tenants (id, name, slug) VALUES ('{tenant_id}', 'Clinic', 'clinic-{tenant_id.hex[:8]}')"


def _document(tenant_id: uuid.UUID, status: str, *, deleted: bool = False) -> str:
    document_id = uuid.uuid4()
    return (
        "INSERT INTO documents (id, tenant_id, filename, content_type, size_bytes, sha256, storage_key, status, "
        f"deleted_at) VALUES ('{document_id}', '{tenant_id}', 'note.txt', 'text/plain', 1, '{document_id.hex}', "
        f"'key-{document_id}', '{status}', {'now()' if deleted else 'NULL'})"
    )


@pytest.fixture
async def databases(owner_engine: AsyncEngine, services: Services) -> AsyncIterator[Databases]:
    role = f"pv_owner_{uuid.uuid4().hex[:8]}"
    async with owner_engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{OWNER_PASSWORD}' NOSUPERUSER NOBYPASSRLS"))
    try:
        async with scratch_database(owner_engine, services, "phivault_counts") as url:
            # What a managed service's administrator does once: the extension, and a database the owner owns.
            await _execute(url, "CREATE EXTENSION vector", f'ALTER DATABASE "{url.database}" OWNER TO {role}')
            owner = url.set(username=role, password=OWNER_PASSWORD)
            await asyncio.to_thread(migrate.upgrade, owner)
            yield Databases(
                superuser=url, owner=owner, app=url.set(username=APP_ROLE, password=TEST_APP_PASSWORD), owner_role=role
            )
    finally:
        async with owner_engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f"DROP ROLE {role}"))


async def test_counts_live_documents_of_every_tenant_and_nothing_else(databases: Databases) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    await _execute(
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
    assert await _rows(databases.owner, "SELECT count(*) FROM documents") == [(0,)]

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


async def test_only_the_app_role_may_execute_it(databases: Databases) -> None:
    facts = await _rows(
        databases.superuser,
        f"SELECT p.prosecdef, pg_get_userbyid(p.proowner), has_function_privilege('{APP_ROLE}', '{FUNCTION}', "
        f"'EXECUTE'), has_function_privilege('pg_monitor', '{FUNCTION}', 'EXECUTE') "
        f"FROM pg_proc p WHERE p.oid = '{FUNCTION}'::regprocedure",
    )
    assert facts == [(True, databases.owner_role, True, False)]


async def test_downgrade_removes_it_and_upgrade_restores_it(databases: Databases) -> None:
    present = (
        f"SELECT to_regprocedure('{FUNCTION}') IS NOT NULL, "
        "EXISTS (SELECT 1 FROM pg_policies WHERE tablename = 'documents' AND policyname = 'document_status_counts')"
    )
    await asyncio.to_thread(migrate.downgrade, databases.owner, "0002_tenant_directory")
    assert await _rows(databases.superuser, present) == [(False, False)]
    await asyncio.to_thread(migrate.upgrade, databases.owner)
    assert await _rows(databases.superuser, present) == [(True, True)]
