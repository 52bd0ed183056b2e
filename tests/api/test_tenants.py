"""Tenants through HTTP: platform administrators only; each tenant gets its own key."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import SYSTEM_TENANT_ID
from core.security import TENANT_ROLES, Role
from tests.conftest import owner_scalar
from tests.harness import Tokens, audit_actions

TENANT_FIELDS = {"id", "name", "slug", "status", "kms_key_id", "created_at", "purge_after", "purged_at"}


async def test_create_read_and_update(client: httpx.AsyncClient, tokens: Tokens, owner_engine: AsyncEngine) -> None:
    created = await client.post("/v1/tenants", json={"name": "St. Mary's Clinic"}, headers=tokens.platform())
    assert created.status_code == 201
    body = created.json()
    assert set(body) == TENANT_FIELDS
    assert body["slug"].startswith("st-mary-s-clinic")
    assert body["status"] == "active"
    tenant_id = uuid.UUID(body["id"])
    wrapped = await owner_scalar(owner_engine, "SELECT length(wrapped_key) FROM tenants WHERE id = :id", id=tenant_id)
    assert wrapped == 60  # a 256-bit key sealed with AES-GCM: nonce + key + tag

    read = await client.get(f"/v1/tenants/{tenant_id}", headers=tokens.platform())
    assert read.json() == body
    actions = [a for a, _, _ in await audit_actions(owner_engine, tenant_id)]
    assert actions == ["tenant.created", "tenant.viewed"]


async def test_only_platform_admins(client: httpx.AsyncClient, tokens: Tokens, owner_engine: AsyncEngine) -> None:
    tenant_id = uuid.UUID(
        (await client.post("/v1/tenants", json={"name": "A"}, headers=tokens.platform())).json()["id"]
    )
    admin = tokens.headers("admin", tenant_id)
    assert (await client.post("/v1/tenants", json={"name": "B"}, headers=admin)).status_code == 403
    assert (await client.get(f"/v1/tenants/{tenant_id}", headers=admin)).status_code == 403
    patched = await client.patch(f"/v1/tenants/{tenant_id}", json={"status": "suspended"}, headers=admin)
    assert patched.status_code == 403
    denied = [a for a in await audit_actions(owner_engine, tenant_id) if a[0] == "access.denied"]
    assert len(denied) == 3


async def test_unknown_tenant_is_404(client: httpx.AsyncClient, tokens: Tokens) -> None:
    missing = uuid.uuid4()
    assert (await client.get(f"/v1/tenants/{missing}", headers=tokens.platform())).status_code == 404
    patched = await client.patch(f"/v1/tenants/{missing}", json={"status": "active"}, headers=tokens.platform())
    assert patched.status_code == 404


async def test_invalid_bodies_are_422(client: httpx.AsyncClient, tokens: Tokens) -> None:
    for body in ({}, {"name": ""}, {"name": "!!!"}, {"name": "x", "extra": 1}):
        response = await client.post("/v1/tenants", json=body, headers=tokens.platform())
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] in ("validation_error", "invalid_name")
    tenant_id = (await client.post("/v1/tenants", json={"name": "C"}, headers=tokens.platform())).json()["id"]
    bad = await client.patch(f"/v1/tenants/{tenant_id}", json={"status": "deleted"}, headers=tokens.platform())
    assert bad.status_code == 422


async def _new_tenants(client: httpx.AsyncClient, tokens: Tokens, count: int) -> list[str]:
    """`count` fresh tenants, oldest first."""
    ids = []
    for _ in range(count):
        created = await client.post(
            "/v1/tenants", json={"name": f"Listed {uuid.uuid4().hex[:8]}"}, headers=tokens.platform()
        )
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    return ids


async def _page(client: httpx.AsyncClient, tokens: Tokens, **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/tenants", params=params, headers=tokens.platform())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"items", "next_cursor"}
    assert all(set(item) == TENANT_FIELDS for item in body["items"])  # never the wrapped key
    return body


async def test_list_pages_newest_first_until_the_cursor_is_null(client: httpx.AsyncClient, tokens: Tokens) -> None:
    first, second, third = await _new_tenants(client, tokens, 3)
    page = await _page(client, tokens, limit=2)
    assert [item["id"] for item in page["items"]] == [third, second]
    following = await _page(client, tokens, limit=2, cursor=page["next_cursor"])
    assert following["items"][0]["id"] == first

    seen, cursor = [], None
    while True:  # every tenant once, and the walk ends
        page = await _page(client, tokens, limit=100, **({"cursor": cursor} if cursor else {}))
        seen += [item["id"] for item in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert len(seen) == len(set(seen))
    assert {first, second, third} <= set(seen)
    assert str(SYSTEM_TENANT_ID) not in seen
    assert len((await _page(client, tokens))["items"]) == min(50, len(seen))  # the default page size


async def test_list_filters_by_status_and_leaves_deleted_tenants_out(
    client: httpx.AsyncClient, tokens: Tokens, owner_engine: AsyncEngine
) -> None:
    active, suspended, deleted = await _new_tenants(client, tokens, 3)
    patched = await client.patch(f"/v1/tenants/{suspended}", json={"status": "suspended"}, headers=tokens.platform())
    assert patched.status_code == 200, patched.text
    async with owner_engine.begin() as conn:
        await conn.execute(text("UPDATE tenants SET deleted_at = now() WHERE id = :id"), {"id": deleted})

    listed = await _page(client, tokens, limit=2)
    assert [item["id"] for item in listed["items"]] == [suspended, active]
    only_suspended = await _page(client, tokens, status="suspended", limit=100)
    assert only_suspended["items"][0]["id"] == suspended
    assert {item["status"] for item in only_suspended["items"]} == {"suspended"}
    only_active = await _page(client, tokens, status="active", limit=1)
    assert [item["id"] for item in only_active["items"]] == [active]


async def test_listing_is_audited_under_the_system_tenant_with_the_ids_shown(
    client: httpx.AsyncClient, tokens: Tokens, owner_engine: AsyncEngine
) -> None:
    await _new_tenants(client, tokens, 2)
    request_id = f"list-{uuid.uuid4().hex}"
    response = await client.get(
        "/v1/tenants", params={"limit": 2}, headers={**tokens.platform(), "X-Request-ID": request_id}
    )
    assert response.status_code == 200, response.text
    async with owner_engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT tenant_id, action, actor_type, metadata FROM audit_logs WHERE request_id = :r"),
                {"r": request_id},
            )
        ).all()
    assert [(row.tenant_id, row.action, row.actor_type) for row in rows] == [
        (SYSTEM_TENANT_ID, "tenant.listed", "platform")
    ]
    shown = [item["id"] for item in response.json()["items"]]
    assert rows[0].metadata == {"status": None, "count": 2, "tenant_ids": shown}


@pytest.mark.parametrize("role", TENANT_ROLES)
async def test_tenant_roles_may_not_list_tenants(
    client: httpx.AsyncClient, tokens: Tokens, owner_engine: AsyncEngine, tenant_id: uuid.UUID, role: Role
) -> None:
    response = await client.get("/v1/tenants", headers=tokens.headers(role, tenant_id))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert [a for a, _, _ in await audit_actions(owner_engine, tenant_id)][-1] == "access.denied"


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"limit": 0}, "validation_error"),
        ({"limit": 101}, "validation_error"),
        ({"status": "deleted"}, "validation_error"),
        ({"cursor": "not-a-cursor"}, "invalid_cursor"),
    ],
)
async def test_bad_list_parameters_are_422(
    client: httpx.AsyncClient, tokens: Tokens, params: dict[str, Any], code: str
) -> None:
    response = await client.get("/v1/tenants", params=params, headers=tokens.platform())
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
