"""The API refuses to start as a role that could bypass row-level security or own the schema."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from core.db import DatabaseUrls, UnsafeDatabaseRole
from core.runtime import Services
from core.settings import Settings
from tests.harness import Tokens, app_client, audit_actions


def _as(services: Services, url: URL) -> Services:
    return Services(database=DatabaseUrls(owner=services.owner_url, app=url), redis_url=services.redis_url)


async def _start(settings: Settings, services: Services) -> None:
    app = create_app(settings, services)
    async with app.router.lifespan_context(app):
        pass


@pytest.fixture
async def login_role(owner_engine: AsyncEngine, services: Services) -> AsyncIterator[tuple[str, URL]]:
    """A throwaway login role; the test gives it the attribute under test."""
    name = f"pv_guard_{uuid.uuid4().hex[:8]}"
    async with owner_engine.begin() as conn:
        await conn.execute(text(f"CREATE ROLE {name} LOGIN PASSWORD 'guard' NOSUPERUSER NOBYPASSRLS"))
        await conn.execute(text(f"GRANT phivault_app TO {name}"))
        await conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {name}"))
    yield name, services.owner_url.set(username=name, password="guard")
    async with owner_engine.begin() as conn:
        await conn.execute(text(f"DROP OWNED BY {name}"))
        await conn.execute(text(f"DROP ROLE {name}"))


async def test_app_starts_as_phivault_app_and_answers(
    settings: Settings, services: Services, tokens: Tokens, owner_engine: AsyncEngine
) -> None:
    """Started as `phivault_app`, the app is alive, its database and broker are reachable, and a request that
    writes through row-level security succeeds."""
    async with app_client(settings, services) as client:
        alive = await client.get("/healthz")
        ready = await client.get("/readyz")
        created = await client.post("/v1/tenants", json={"name": "Guarded clinic"}, headers=tokens.platform())
        assert created.status_code == 201, created.text
        tenant_id = uuid.UUID(created.json()["id"])
        listed = await client.get("/v1/documents", headers=tokens.headers("member", tenant_id))
    assert alive.status_code == 200
    assert alive.json() == {"status": "ok"}
    checks = ready.json()["checks"]
    assert (checks["database"], checks["broker"]) == ("ok", "ok"), checks
    assert listed.status_code == 200, listed.text
    assert listed.json()["items"] == []
    assert [action for action, _, _ in await audit_actions(owner_engine, tenant_id)] == [
        "tenant.created",
        "user.provisioned",
        "document.listed",
    ]


async def test_refuses_the_owner_superuser(settings: Settings, services: Services) -> None:
    with pytest.raises(UnsafeDatabaseRole, match="superuser"):
        await _start(settings, _as(services, services.owner_url))


@pytest.mark.parametrize(("attribute", "reason"), [("SUPERUSER", "superuser"), ("BYPASSRLS", "BYPASSRLS")])
async def test_refuses_privileged_roles(
    settings: Settings,
    services: Services,
    owner_engine: AsyncEngine,
    login_role: tuple[str, URL],
    attribute: str,
    reason: str,
) -> None:
    name, url = login_role
    async with owner_engine.begin() as conn:
        await conn.execute(text(f"ALTER ROLE {name} {attribute}"))
    with pytest.raises(UnsafeDatabaseRole, match=reason):
        await _start(settings, _as(services, url))


async def test_refuses_a_role_that_owns_tables(
    settings: Settings, services: Services, owner_engine: AsyncEngine, login_role: tuple[str, URL]
) -> None:
    name, url = login_role
    async with owner_engine.begin() as conn:
        await conn.execute(text(f"CREATE SCHEMA {name} AUTHORIZATION {name}"))
        await conn.execute(text(f"CREATE TABLE {name}.owned (id int)"))
        await conn.execute(text(f"ALTER TABLE {name}.owned OWNER TO {name}"))
    with pytest.raises(UnsafeDatabaseRole, match="owns tables or schemas"):
        await _start(settings, _as(services, url))


async def test_refuses_a_member_of_the_table_owner(
    settings: Settings, services: Services, owner_engine: AsyncEngine, login_role: tuple[str, URL]
) -> None:
    """Membership in the owning role is ownership: it could SET ROLE and drop the policies."""
    name, url = login_role
    owner = str(await _scalar(owner_engine, "SELECT tableowner FROM pg_tables WHERE tablename = 'documents'"))
    async with owner_engine.begin() as conn:
        await conn.execute(text(f'GRANT "{owner}" TO {name}'))
    with pytest.raises(UnsafeDatabaseRole, match="owns"):
        await _start(settings, _as(services, url))


async def test_refuses_a_role_that_may_rewrite_the_audit_log(
    settings: Settings, services: Services, owner_engine: AsyncEngine, login_role: tuple[str, URL]
) -> None:
    name, url = login_role
    async with owner_engine.begin() as conn:
        await conn.execute(text(f"GRANT UPDATE ON audit_logs TO {name}"))
    with pytest.raises(UnsafeDatabaseRole, match="audit_logs"):
        await _start(settings, _as(services, url))


async def test_refuses_when_rls_is_not_forced(
    settings: Settings, services: Services, owner_engine: AsyncEngine
) -> None:
    async with owner_engine.begin() as conn:
        await conn.execute(text("ALTER TABLE documents NO FORCE ROW LEVEL SECURITY"))
    try:
        with pytest.raises(UnsafeDatabaseRole, match="not enabled and forced on documents"):
            await _start(settings, services)
    finally:
        async with owner_engine.begin() as conn:
            await conn.execute(text("ALTER TABLE documents FORCE ROW LEVEL SECURITY"))


async def _scalar(engine: AsyncEngine, sql: str) -> object:
    async with engine.connect() as conn:
        return await conn.scalar(text(sql))
