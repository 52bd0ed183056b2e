"""Tenants through HTTP: platform administrators only; each tenant gets its own key."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import owner_scalar
from tests.harness import Tokens, audit_actions


async def test_create_read_and_update(client: httpx.AsyncClient, tokens: Tokens, owner_engine: AsyncEngine) -> None:
    created = await client.post("/v1/tenants", json={"name": "St. Mary's Clinic"}, headers=tokens.platform())
    assert created.status_code == 201
    body = created.json()
    assert set(body) == {"id", "name", "slug", "status", "kms_key_id", "created_at"}
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
