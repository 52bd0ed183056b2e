"""Test fixtures: a throwaway embedded PostgreSQL (pgvector) and Redis, migrated, used as `phivault_app`."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import Database, create_engine, install_database
from core.keys import key_provider_from_settings
from core.runtime import Services, throwaway_services
from core.settings import Settings
from models import Tenant
from models.audit import Actor
from tenants.service import create_tenant, key_provisioner
from tests.waiting import patience

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytest_plugins = ["tests.harness"]

T = TypeVar("T")

TEST_TIMEOUT_PATIENCES = 3
"""A test may take at most this many waits' worth of patience before pytest-timeout stops it."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test's overall time limit derives from the one patience setting, like every wait inside it."""
    for item in items:
        marker = item.get_closest_marker("timeout")
        if marker is None:
            item.add_marker(pytest.mark.timeout(patience(TEST_TIMEOUT_PATIENCES)))


TEST_APP_PASSWORD = "phivault-app-test-password"


@pytest.fixture(scope="session")
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="phivault-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def development_settings(data_dir: Path, **update: Any) -> Settings:
    """Development settings on `data_dir`, with embedded PostgreSQL and Redis started there on demand."""
    fields: dict[str, Any] = {
        "env": "development",
        "data_dir": data_dir,
        "database_url": None,
        "redis_url": None,
        "app_database_url": None,
        "app_db_password": TEST_APP_PASSWORD,
        "db_pool_size": 5,
        "db_max_overflow": 5,
    }
    return Settings(**(fields | update))


@pytest.fixture(scope="session")
def settings(data_dir: Path) -> Settings:
    return development_settings(data_dir)


@pytest.fixture(scope="session")
def services(settings: Settings) -> Services:
    """Start PostgreSQL and Redis for this test session and migrate to head."""
    return throwaway_services(settings)


@pytest.fixture(scope="session")
async def db(services: Services, settings: Settings) -> AsyncIterator[Database]:
    """The app-role database, installed as the process database like the API does."""
    database = Database(create_engine(services.app_url, settings))
    install_database(database)
    yield database
    install_database(None)
    await database.dispose()


@pytest.fixture(scope="session")
async def owner_engine(services: Services, settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The migration owner (a superuser on the embedded server): for checks from outside RLS only."""
    engine = create_engine(services.owner_url, settings)
    yield engine
    await engine.dispose()


TenantFactory = Callable[..., Awaitable[Tenant]]


@pytest.fixture
def make_tenant(db: Database, settings: Settings) -> TenantFactory:
    """Tenants through the platform path, with a real (local) tenant key."""
    provision = key_provisioner(key_provider_from_settings(settings))

    async def factory(name: str | None = None) -> Tenant:
        return await create_tenant(
            db, name or f"Clinic {uuid.uuid4().hex[:8]}", Actor(actor_id="tests", actor_type="platform"), provision
        )

    return factory


async def owner_scalar(owner_engine: AsyncEngine, sql: str, **params: object) -> object:
    async with owner_engine.connect() as conn:
        return await conn.scalar(text(sql), params)


async def owner_rows(owner_engine: AsyncEngine, sql: str, **params: object) -> list[tuple[object, ...]]:
    async with owner_engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(text(sql), params)]


def run_in_fresh_loop(coro_factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on its own event loop in a worker thread (for sync tests such as hypothesis)."""

    async def runner() -> T:
        return await coro_factory()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, runner()).result()
