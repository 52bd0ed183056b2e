"""`tenant_session`: one transaction, the context set first and gone with the transaction."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from core.db import Database, create_engine, tenant_session
from core.runtime import Services
from core.settings import Settings
from tests.conftest import TenantFactory


@pytest.fixture
async def small_pool_db(services: Services, settings: Settings) -> AsyncIterator[Database]:
    engine = create_engine(services.app_url, settings.model_copy(update={"db_pool_size": 3, "db_max_overflow": 0}))
    yield Database(engine)
    await engine.dispose()


async def test_fifty_concurrent_sessions_never_see_each_others_context(
    small_pool_db: Database, make_tenant: TenantFactory
) -> None:
    """Three pooled connections take turns serving two tenants: each session sees only its own context."""
    tenants = [(await make_tenant()).id, (await make_tenant()).id]
    rng = random.Random(7)
    inside = 0
    most_inside = 0

    async def one(i: int) -> tuple[uuid.UUID, int, list[str], list[uuid.UUID]]:
        nonlocal inside, most_inside
        tenant_id = tenants[i % 2]
        async with small_pool_db.tenant_session(tenant_id) as session:
            inside += 1
            most_inside = max(most_inside, inside)
            backend = await session.scalar(text("SELECT pg_backend_pid()"))
            seen = [str(await session.scalar(text("SELECT current_setting('app.tenant_id')")))]
            await asyncio.sleep(rng.random() / 50)
            seen.append(str(await session.scalar(text("SELECT current_setting('app.tenant_id')"))))
            visible = list((await session.execute(text("SELECT id FROM tenants"))).scalars())
            inside -= 1
        assert isinstance(backend, int)
        return tenant_id, backend, seen, visible

    results = await asyncio.gather(*(one(i) for i in range(50)))
    for tenant_id, _, seen, visible in results:
        assert seen == [str(tenant_id), str(tenant_id)]
        assert visible == [tenant_id]

    # The premise: sessions overlapped, and connections were handed from one tenant to the other.
    assert most_inside > 1, "the sessions never ran concurrently"
    tenants_by_backend: dict[int, set[uuid.UUID]] = {}
    for tenant_id, backend, _, _ in results:
        tenants_by_backend.setdefault(backend, set()).add(tenant_id)
    assert len(tenants_by_backend) <= 3, tenants_by_backend
    assert any(served == set(tenants) for served in tenants_by_backend.values()), tenants_by_backend

    # Connections back in the pool carry no tenant context.
    for _ in range(3):
        async with small_pool_db.engine.connect() as conn:
            assert await conn.scalar(text("SELECT current_setting('app.tenant_id', true)")) in ("", None)
            await conn.rollback()


async def test_error_rolls_back_the_whole_transaction(db: Database, make_tenant: TenantFactory) -> None:
    tenant = await make_tenant()
    sha = uuid.uuid4().hex
    with pytest.raises(RuntimeError, match="boom"):
        async with tenant_session(tenant.id) as session:
            await session.execute(
                text(
                    "INSERT INTO documents (tenant_id, filename, content_type, size_bytes, sha256, storage_key) "
                    "VALUES (:t, 'x', 'text/plain', 1, :h, 'k')"
                ),
                {"t": tenant.id, "h": sha},
            )
            raise RuntimeError("boom")
    async with tenant_session(tenant.id) as session:
        assert await session.scalar(text("SELECT count(*) FROM documents WHERE sha256 = :h"), {"h": sha}) == 0


async def test_tenant_id_must_be_a_uuid(db: Database) -> None:
    with pytest.raises(TypeError):
        async with tenant_session("00000000-0000-0000-0000-000000000000"):  # type: ignore[arg-type]
            pass


async def test_pgbouncer_mode_leaves_no_prepared_statement_on_the_server(
    services: Services, settings: Settings, make_tenant: TenantFactory
) -> None:
    """Transaction pooling hands each transaction to any server connection: nothing may be prepared and kept."""
    tenants = [(await make_tenant()).id, (await make_tenant()).id]

    async def prepared_after_sessions(pgbouncer: bool) -> list[str]:
        engine = create_engine(services.app_url, settings.model_copy(update={"db_pgbouncer": pgbouncer}))
        database = Database(engine)
        try:
            for i in range(6):
                async with database.tenant_session(tenants[i % 2]) as session:
                    rows = (await session.execute(text("SELECT id FROM tenants WHERE id = :t"), {"t": tenants[i % 2]}))
                    assert list(rows.scalars()) == [tenants[i % 2]]
                    assert await session.scalar(text("SELECT current_setting('app.tenant_id')")) == str(tenants[i % 2])
            async with engine.connect() as conn:
                names = await conn.scalars(text("SELECT name FROM pg_prepared_statements WHERE name <> ''"))
                return list(names)
        finally:
            await engine.dispose()

    cached = await prepared_after_sessions(pgbouncer=False)
    assert len(cached) >= 3  # by default each connection keeps its statements for reuse
    uncached = await prepared_after_sessions(pgbouncer=True)
    # At most the statement that is asking, under a name no other connection can ever use.
    assert len(uncached) <= 1
    assert all(name.startswith("__asyncpg_") and len(name) > 40 for name in uncached), uncached
