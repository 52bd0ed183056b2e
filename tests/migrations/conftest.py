"""What the migration tests share: a database migrated by an owner that is not a superuser.

As on managed PostgreSQL, FORCE ROW LEVEL SECURITY binds such an owner too, so the SECURITY DEFINER
directory functions (0002, 0003, 0005) are checked where they must work through their own policies."""

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

OWNER_PASSWORD = "owner-for-tests"


@dataclass(frozen=True)
class Databases:
    superuser: URL
    owner: URL
    app: URL
    owner_role: str


async def execute(url: URL, *statements: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def rows(url: URL, sql: str) -> list[tuple[object, ...]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(text(sql))
            return [tuple(row) for row in result]
    finally:
        await engine.dispose()


@pytest.fixture
async def databases(owner_engine: AsyncEngine, services: Services) -> AsyncIterator[Databases]:
    role = f"pv_owner_{uuid.uuid4().hex[:8]}"
    async with owner_engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{OWNER_PASSWORD}' NOSUPERUSER NOBYPASSRLS"))
    try:
        async with scratch_database(owner_engine, services, "phivault_counts") as url:
            # What a managed service's administrator does once: the extension, and a database the owner owns.
            await execute(url, "CREATE EXTENSION vector", f'ALTER DATABASE "{url.database}" OWNER TO {role}')
            owner = url.set(username=role, password=OWNER_PASSWORD)
            await asyncio.to_thread(migrate.upgrade, owner)
            yield Databases(
                superuser=url, owner=owner, app=url.set(username=APP_ROLE, password=TEST_APP_PASSWORD), owner_role=role
            )
    finally:
        async with owner_engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f"DROP ROLE {role}"))


