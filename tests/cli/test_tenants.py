"""`phivault tenant list` as a subprocess against the test stack: every live tenant, filtered by status."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import SYSTEM_TENANT_ID
from core.runtime import Services
from core.settings import Settings
from tests.harness import Tokens, phivault, worker_env


async def test_tenant_list_prints_every_live_tenant_and_filters_by_status(
    settings: Settings, services: Services, client: httpx.AsyncClient, tokens: Tokens, owner_engine: AsyncEngine
) -> None:
    env = worker_env(settings, services)
    names = [f"CLI Listed {uuid.uuid4().hex[:6]}", f"CLI Suspended {uuid.uuid4().hex[:6]}"]
    created = [phivault(env, "tenant", "create", name) for name in names]
    assert all(run.returncode == 0 for run in created), [run.stderr for run in created]
    (active_id, active_slug), (suspended_id, suspended_slug) = (run.stdout.strip().split("\t") for run in created)
    patched = await client.patch(f"/v1/tenants/{suspended_id}", json={"status": "suspended"}, headers=tokens.platform())
    assert patched.status_code == 200, patched.text

    listed = phivault(env, "tenant", "list")
    assert listed.returncode == 0, listed.stderr
    lines = [line.split("\t") for line in listed.stdout.splitlines()]
    assert lines[:2] == [
        [suspended_id, suspended_slug, "suspended", names[1]],
        [active_id, active_slug, "active", names[0]],
    ]
    async with owner_engine.connect() as conn:
        live = await conn.scalar(
            text("SELECT count(*) FROM tenants WHERE deleted_at IS NULL AND id <> :system"),
            {"system": SYSTEM_TENANT_ID},
        )
    assert len(lines) == live  # every page, past the first hundred too when there are that many

    suspended = phivault(env, "tenant", "list", "--status", "suspended")
    assert suspended.returncode == 0, suspended.stderr
    assert {line.split("\t")[2] for line in suspended.stdout.splitlines()} == {"suspended"}
    assert suspended_id in suspended.stdout
    assert active_id not in suspended.stdout

    refused = phivault(env, "tenant", "list", "--status", "deleted")
    assert refused.returncode == 2
