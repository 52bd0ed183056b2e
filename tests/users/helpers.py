"""Shared steps of the user-access tests: a user's id, a tenant's audit rows, a fresh subject."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


def subject(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def user_id_of(owner: AsyncEngine, tenant_id: uuid.UUID, sub: str) -> str:
    async with owner.connect() as conn:
        found = await conn.scalar(
            text("SELECT id FROM users WHERE tenant_id = :t AND subject = :s"), {"t": tenant_id, "s": sub}
        )
    assert found is not None, f"{sub} was never provisioned"
    return str(found)


async def seen(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    """One request as `headers`' user, so that it is provisioned with its token's role."""
    response = await client.get("/v1/documents", headers=headers)
    assert response.status_code == 200, response.text


async def audit_rows(owner: AsyncEngine, tenant_id: uuid.UUID, action: str) -> list[dict[str, Any]]:
    """The tenant's events of one action, oldest first, as dicts (read as the owner)."""
    async with owner.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT action, outcome, actor_id, resource_type, resource_id, request_id, metadata FROM audit_logs "
                "WHERE tenant_id = :t AND action = :a ORDER BY id"
            ),
            {"t": tenant_id, "a": action},
        )
        return [dict(row._mapping) for row in rows]
