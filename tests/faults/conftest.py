"""Servers a fault test may break: a PostgreSQL it can stop and start on the same port, and a Redis of its own.

Each test module gets a fresh pair, migrated, with `Settings` and `Services` pointing at them. The Redis
is the module's own so that the session's worker never takes these documents (it would find no row in its
database and drop them), and so that a module's own worker sees only its own tasks.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from api.state import AppState
from core.db import create_engine
from core.migrate import migrate
from core.runtime import Services, resolve_services
from core.settings import Settings
from tests.conftest import TEST_APP_PASSWORD
from tests.deploy.servers import PostgresServer, postgres_server, tcp_redis
from tests.harness import Tokens, process_database_kept

CLIENT_ADDRESS = ("127.0.0.1", 50007)


@dataclass(frozen=True)
class FaultStack:
    postgres: PostgresServer
    settings: Settings
    services: Services

    def settings_for(self, data_dir: Path, **update: Any) -> Settings:
        """The stack's settings with a data directory (objects, spool, master key) of the test's own."""
        return self.settings.model_copy(update={"data_dir": data_dir, **update})


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    root = tmp_path_factory.mktemp("faults")
    with postgres_server(root / "postgres") as server, tcp_redis(root / "redis") as redis_url:
        settings = Settings(
            env="development",
            data_dir=root / "data",
            database_url=server.create_database("superuser"),
            redis_url=redis_url,
            app_database_url=None,
            app_db_password=TEST_APP_PASSWORD,
            db_pool_size=5,
            db_max_overflow=5,
        )
        services = resolve_services(settings)
        migrate(services.owner_url, TEST_APP_PASSWORD)
        yield FaultStack(postgres=server, settings=settings, services=services)


@pytest.fixture(scope="module")
async def fault_owner(fault_stack: FaultStack) -> AsyncIterator[AsyncEngine]:
    """The stack's database as its owner, for checks from outside RLS (it reconnects after a restart)."""
    engine = create_engine(fault_stack.services.owner_url, fault_stack.settings)
    yield engine
    await engine.dispose()


@dataclass
class RunningApp:
    app: FastAPI
    http: httpx.AsyncClient
    state: AppState
    tokens: Tokens


@asynccontextmanager
async def running_app(settings: Settings, services: Services) -> AsyncIterator[RunningApp]:
    """The real app over ASGI, its lifespan running; the process database the session had is put back after."""
    app = create_app(settings, services)
    with process_database_kept():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=CLIENT_ADDRESS)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
                yield RunningApp(app=app, http=http, state=app.state.phivault, tokens=Tokens(settings))


async def create_tenant(app: RunningApp) -> uuid.UUID:
    response = await app.http.post(
        "/v1/tenants", json={"name": f"Clinic {uuid.uuid4().hex[:6]}"}, headers=app.tokens.platform()
    )
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


async def document_rows(owner: AsyncEngine, tenant_id: uuid.UUID) -> list[tuple[uuid.UUID, str, str]]:
    """(id, storage_key, sha256) of every `documents` row of the tenant, read as the owner."""
    async with owner.connect() as conn:
        rows = await conn.execute(
            text("SELECT id, storage_key, sha256 FROM documents WHERE tenant_id = :t ORDER BY created_at"),
            {"t": tenant_id},
        )
        return [(row.id, row.storage_key, row.sha256) for row in rows]


def files_under(root: Path) -> list[str]:
    """Every file below `root` (temporary ones included), relative to it."""
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()) if root.exists() else []
