"""Tamper evidence: with the append-only triggers switched off by a superuser, any edit or deletion
is still caught by the hash chain, through the API and the CLI."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.runtime import Services
from core.settings import Settings
from tests.harness import Tokens, phivault, worker_env


@pytest.fixture
async def triggers_off(owner_engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    async with owner_engine.begin() as conn:
        await conn.execute(text("ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_no_update_delete"))
    try:
        yield owner_engine
    finally:
        async with owner_engine.begin() as conn:
            await conn.execute(text("ALTER TABLE audit_logs ENABLE ALWAYS TRIGGER audit_logs_no_update_delete"))


async def _trail(client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID) -> tuple[dict[str, str], list[int]]:
    """A chain written by requests alone: uploads would let the worker append events while a test tampers."""
    admin = tokens.headers("admin", tenant_id)
    for status in ("queued", "processing", "ready", "failed"):
        assert (await client.get("/v1/documents", params={"status": status}, headers=admin)).status_code == 200
    items = (await client.get("/v1/audit-logs", params={"limit": 500}, headers=admin)).json()["items"]
    ids = sorted(item["id"] for item in items)
    assert (await client.get("/v1/audit-logs/verify", headers=admin)).json()["valid"] is True
    return admin, ids


async def _verify(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, object]:
    response = await client.get("/v1/audit-logs/verify", headers=admin)
    assert response.status_code == 200
    report: dict[str, object] = response.json()
    recorded = await client.get("/v1/audit-logs", params={"action": "audit.verified", "limit": 1}, headers=admin)
    expected = "intact" if report["valid"] else "broken"
    assert recorded.json()["items"][0]["metadata"]["result"] == expected  # a broken link, never "incomplete"
    return report


async def test_an_edited_row_is_caught(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, triggers_off: AsyncEngine
) -> None:
    admin, ids = await _trail(client, tokens, tenant_id)
    target = ids[len(ids) // 2]
    async with triggers_off.begin() as conn:
        await conn.execute(text("UPDATE audit_logs SET actor_id = 'someone-else' WHERE id = :id"), {"id": target})
    report = await _verify(client, admin)
    assert report["valid"] is False
    assert report["first_broken_id"] == target


async def test_a_rehashed_edit_is_caught_by_the_next_link(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, triggers_off: AsyncEngine
) -> None:
    """Even an editor who recomputes the edited row's own hash breaks the following row's link."""
    admin, ids = await _trail(client, tokens, tenant_id)
    target = ids[1]
    async with triggers_off.begin() as conn:
        await conn.execute(text("UPDATE audit_logs SET outcome = 'denied' WHERE id = :id"), {"id": target})
        await conn.execute(
            text("UPDATE audit_logs a SET row_hash = audit_log_digest(a.prev_hash, a) WHERE id = :id"), {"id": target}
        )
    report = await _verify(client, admin)
    assert report["valid"] is False
    assert report["first_broken_id"] == ids[2]


async def test_a_deleted_row_is_caught(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, triggers_off: AsyncEngine
) -> None:
    admin, ids = await _trail(client, tokens, tenant_id)
    async with triggers_off.begin() as conn:
        await conn.execute(text("DELETE FROM audit_logs WHERE id = :id"), {"id": ids[2]})
    report = await _verify(client, admin)
    assert report["valid"] is False
    assert report["first_broken_id"] == ids[3]


async def test_a_deleted_tail_is_caught_and_the_cli_agrees(
    client: httpx.AsyncClient,
    tokens: Tokens,
    tenant_id: uuid.UUID,
    triggers_off: AsyncEngine,
    settings: Settings,
    services: Services,
) -> None:
    admin, _ = await _trail(client, tokens, tenant_id)
    async with triggers_off.begin() as conn:
        last = await conn.scalar(text("SELECT max(id) FROM audit_logs WHERE tenant_id = :t"), {"t": tenant_id})
        await conn.execute(text("DELETE FROM audit_logs WHERE id = :id"), {"id": last})
    cli = await asyncio.to_thread(
        phivault, worker_env(settings, services), "audit", "verify", "--tenant", str(tenant_id)
    )
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert f"first broken link at audit event {last}" in cli.stdout
    report = await _verify(client, admin)
    assert report["valid"] is False


async def test_cli_reports_an_intact_chain(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, settings: Settings, services: Services
) -> None:
    await _trail(client, tokens, tenant_id)
    cli = await asyncio.to_thread(
        phivault, worker_env(settings, services), "audit", "verify", "--tenant", str(tenant_id)
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert cli.stdout.startswith("valid: ")
