"""`phivault user list|deactivate|reactivate` as a subprocess against the test stack, acting as the CLI actor."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from core.runtime import Services
from core.settings import Settings
from tests.harness import Tokens, phivault, worker_env
from tests.users.helpers import audit_rows, seen, subject, user_id_of


async def test_user_list_deactivate_and_reactivate(
    settings: Settings,
    services: Services,
    client: httpx.AsyncClient,
    tokens: Tokens,
    tenant_id: uuid.UUID,
    owner_engine: AsyncEngine,
) -> None:
    env = worker_env(settings, services)
    name = subject("cli")
    token = tokens.headers("member", tenant_id, sub=name)
    await seen(client, token)
    user_id = await user_id_of(owner_engine, tenant_id, name)

    listed = phivault(env, "user", "list", "--tenant", str(tenant_id))
    assert listed.returncode == 0, listed.stderr
    assert [user_id, name, "member", "active"] in [line.split("\t") for line in listed.stdout.splitlines()]

    off = phivault(env, "user", "deactivate", "--tenant", str(tenant_id), user_id)
    assert off.returncode == 0, off.stderr
    assert off.stdout.split() == [user_id, name, "member", "deactivated"]
    refused = await client.get("/v1/documents", headers=token)
    assert refused.status_code == 403, refused.text
    only = phivault(env, "user", "list", "--tenant", str(tenant_id), "--status", "deactivated")
    assert [line.split("\t")[0] for line in only.stdout.splitlines()] == [user_id]

    on = phivault(env, "user", "reactivate", "--tenant", str(tenant_id), user_id)
    assert on.returncode == 0, on.stderr
    assert (await client.get("/v1/documents", headers=token)).status_code == 200

    deactivated = await audit_rows(owner_engine, tenant_id, "user.deactivated")
    assert [(r["actor_id"].startswith("cli:"), r["resource_id"]) for r in deactivated] == [(True, user_id)]
    assert len(await audit_rows(owner_engine, tenant_id, "user.reactivated")) == 1
    assert [r["actor_id"].startswith("cli:") for r in await audit_rows(owner_engine, tenant_id, "user.listed")] == [
        True,
        True,
    ]

    unknown = phivault(env, "user", "deactivate", "--tenant", str(tenant_id), str(uuid.uuid4()))
    assert (unknown.returncode, unknown.stderr.strip()) == (1, "phivault: user not found")
    malformed = phivault(env, "user", "deactivate", "--tenant", str(tenant_id), "not-a-uuid")
    assert malformed.returncode == 2
