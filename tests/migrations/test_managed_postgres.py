"""`phivault migrate` on a real server over TCP, as a superuser owner (Railway) and as a non-superuser
CREATEROLE owner (RDS, Azure, Supabase, Neon; `vector` pre-installed by the provider).

Each case runs migrate twice (a re-run after an upgrade must change nothing), then checks that the API's
guard accepts `phivault_app` logging in with its password over TCP and refuses the owner.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from core.db import UnsafeDatabaseRole, to_asyncpg_url, to_libpq_url, verify_app_role
from core.migrate import AppRoleNotManageable, head_revision, migrate
from core.settings import APP_ROLE
from tests.conftest import run_in_fresh_loop
from tests.deploy.servers import PG_CREATEROLE_OWNER, PostgresServer, postgres_server

Owner = Literal["superuser", "createrole"]
APP_PASSWORD = "managed-app-password"
ROLE_ATTRIBUTES = "rolcanlogin, rolsuper, rolbypassrls, rolcreatedb, rolcreaterole, rolinherit, rolreplication"
PLAIN_LOGIN = {
    "rolcanlogin": True,
    "rolsuper": False,
    "rolbypassrls": False,
    "rolcreatedb": False,
    "rolcreaterole": False,
    "rolinherit": False,
    "rolreplication": False,
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PostgresServer]:
    with postgres_server(tmp_path) as running:
        yield running


async def _guard(url: URL) -> None:
    engine = create_async_engine(url)
    try:
        await verify_app_role(engine)
    finally:
        await engine.dispose()


async def _app_role_facts(owner_url: URL) -> tuple[dict[str, bool], str]:
    conn = await asyncpg.connect(to_libpq_url(owner_url))
    try:
        row = await conn.fetchrow(f"SELECT {ROLE_ATTRIBUTES} FROM pg_roles WHERE rolname = $1", APP_ROLE)
        assert row is not None
        return dict(row), await conn.fetchval("SELECT version_num FROM alembic_version")
    finally:
        await conn.close()


def _assert_app_role_ready(owner_url: URL, owner: Owner) -> None:
    facts, version = run_in_fresh_loop(lambda: _app_role_facts(owner_url))
    assert facts == PLAIN_LOGIN
    assert version == head_revision()
    run_in_fresh_loop(lambda: _guard(owner_url.set(username=APP_ROLE, password=APP_PASSWORD)))
    with pytest.raises(UnsafeDatabaseRole, match="superuser" if owner == "superuser" else "owns the database"):
        run_in_fresh_loop(lambda: _guard(owner_url))


@pytest.mark.parametrize("owner", ["superuser", "createrole"])
def test_migrate_twice_then_the_guard_accepts_the_app_role_only(server: PostgresServer, owner: Owner) -> None:
    owner_url = to_asyncpg_url(server.create_database(owner))
    migrate(owner_url, APP_PASSWORD)
    _assert_app_role_ready(owner_url, owner)
    migrate(owner_url, APP_PASSWORD)
    _assert_app_role_ready(owner_url, owner)


def test_a_superuser_owner_removes_every_forbidden_attribute(server: PostgresServer) -> None:
    server.psql(f"CREATE ROLE {APP_ROLE} NOLOGIN SUPERUSER BYPASSRLS CREATEDB CREATEROLE INHERIT REPLICATION;\n")
    owner_url = to_asyncpg_url(server.create_database("superuser"))
    migrate(owner_url, APP_PASSWORD)
    _assert_app_role_ready(owner_url, "superuser")


def test_a_createrole_owner_removes_the_attributes_it_may(server: PostgresServer) -> None:
    owner_url = to_asyncpg_url(server.create_database("createrole"))

    async def create_role_as_owner() -> None:
        conn = await asyncpg.connect(to_libpq_url(owner_url))
        try:
            await conn.execute(f"CREATE ROLE {APP_ROLE} NOLOGIN CREATEROLE INHERIT")
        finally:
            await conn.close()

    run_in_fresh_loop(create_role_as_owner)
    migrate(owner_url, APP_PASSWORD)
    _assert_app_role_ready(owner_url, "createrole")


@pytest.mark.parametrize("attribute", ["SUPERUSER", "BYPASSRLS", "REPLICATION", "CREATEDB"])
def test_an_attribute_the_owner_cannot_remove_stops_migrate_by_name(server: PostgresServer, attribute: str) -> None:
    server.psql(f"CREATE ROLE {APP_ROLE} NOLOGIN {attribute};\n")
    owner_url = to_asyncpg_url(server.create_database("createrole"))
    with pytest.raises(AppRoleNotManageable, match=rf"has {attribute}, which the owner '{PG_CREATEROLE_OWNER}'"):
        migrate(owner_url, APP_PASSWORD)


def test_a_role_someone_else_created_needs_the_admin_option(server: PostgresServer) -> None:
    """PostgreSQL 16+: CREATEROLE alters only roles it holds ADMIN on; the message says what to grant."""
    server.psql(f"CREATE ROLE {APP_ROLE} NOLOGIN NOINHERIT;\n")
    owner_url = to_asyncpg_url(server.create_database("createrole"))
    grant = f"GRANT {APP_ROLE} TO {PG_CREATEROLE_OWNER} WITH ADMIN OPTION"
    with pytest.raises(AppRoleNotManageable, match="ADMIN option") as refused:
        migrate(owner_url, APP_PASSWORD)
    assert grant in str(refused.value)

    server.psql(grant + ";\n")
    migrate(owner_url, APP_PASSWORD)
    _assert_app_role_ready(owner_url, "createrole")


def test_the_schema_belongs_to_the_createrole_owner(server: PostgresServer) -> None:
    owner_url = to_asyncpg_url(server.create_database("createrole"))
    migrate(owner_url, APP_PASSWORD)

    async def owners() -> set[str]:
        engine = create_async_engine(owner_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(text("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"))
                return {row[0] for row in rows}
        finally:
            await engine.dispose()

    assert run_in_fresh_loop(owners) == {PG_CREATEROLE_OWNER}
