"""Migrations are reversible and match the models exactly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import models
from core import migrate
from core.runtime import Services
from tests.conftest import run_in_fresh_loop
from tests.harness import scratch_database

TABLES = {"tenants", "users", "documents", "document_chunks", "audit_logs", "audit_chain_heads", "access_grants"}


@pytest.fixture
async def fresh_database(services: Services, owner_engine: AsyncEngine) -> AsyncIterator[URL]:
    async with scratch_database(owner_engine, services, "phivault_migration") as url:
        yield url


async def _tables(url: URL) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
            return {row[0] for row in rows} - {"alembic_version"}
    finally:
        await engine.dispose()


def test_upgrade_downgrade_upgrade(fresh_database: URL) -> None:
    def run(step: Any) -> set[str]:
        step()
        return run_in_fresh_loop(lambda: _tables(fresh_database))

    assert run(lambda: migrate.upgrade(fresh_database)) == TABLES
    assert run(lambda: migrate.downgrade(fresh_database, "base")) == set()
    assert run(lambda: migrate.upgrade(fresh_database)) == TABLES


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={
            "compare_server_default": True,
            "include_object": lambda obj, name, type_, reflected, compare_to: name != "alembic_version",
        },
    )
    return list(compare_metadata(context, models.Base.metadata))


async def test_models_match_migrations(owner_engine: AsyncEngine) -> None:
    async with owner_engine.connect() as conn:
        differences = await conn.run_sync(_diff)
    assert differences == []


async def test_head_is_applied(owner_engine: AsyncEngine) -> None:
    async with owner_engine.connect() as conn:
        assert await conn.scalar(text("SELECT version_num FROM alembic_version")) == migrate.head_revision()
