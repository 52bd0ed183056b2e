"""The search audit's `query_hmac`: an HMAC-SHA256 of the normalised query under a key of the tenant's own."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import Database
from core.keys import KeyProvider, TenantKeyRef, key_provider_from_settings
from core.runtime import Services
from core.settings import Settings
from tenants.query_keys import QueryKeys
from tenants.repository import get_tenant
from tests.conftest import TenantFactory
from tests.harness import Tokens, phivault, worker_env

QUERY = "chest pain after the fall"


async def _search(client: httpx.AsyncClient, headers: dict[str, str], query: str) -> None:
    response = await client.post("/v1/search", json={"query": query, "k": 3}, headers=headers)
    assert response.status_code == 200, response.text


async def _search_metadata(owner_engine: AsyncEngine, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    async with owner_engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT metadata FROM audit_logs WHERE tenant_id = :t AND action = 'search.query' ORDER BY id"),
            {"t": tenant_id},
        )
        return [dict(row.metadata) for row in rows]


async def _new_tenant(client: httpx.AsyncClient, tokens: Tokens) -> uuid.UUID:
    response = await client.post(
        "/v1/tenants", json={"name": f"Hmac {uuid.uuid4().hex[:6]}"}, headers=tokens.platform()
    )
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


async def test_equal_queries_match_within_a_tenant_only_and_the_cli_reproduces_them(
    client: httpx.AsyncClient, tokens: Tokens, owner_engine: AsyncEngine, settings: Settings, services: Services
) -> None:
    first, second = await _new_tenant(client, tokens), await _new_tenant(client, tokens)
    for query in (QUERY, "  Chest PAIN after the   fall "):
        await _search(client, tokens.headers("viewer", first), query)
    await _search(client, tokens.headers("viewer", second), QUERY)

    ours, theirs = await _search_metadata(owner_engine, first), await _search_metadata(owner_engine, second)
    assert all("query_sha256" not in m for m in ours + theirs)
    assert ours[0]["query_hmac"] == ours[1]["query_hmac"]  # the same query, normalised
    assert theirs[0]["query_hmac"] != ours[0]["query_hmac"]  # another tenant's key
    assert ours[0]["query_hmac"] != hashlib.sha256(QUERY.encode()).hexdigest()

    result = await asyncio.to_thread(
        phivault, worker_env(settings, services), "audit", "query-hash", "--tenant", str(first), QUERY
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ours[0]["query_hmac"]
    async with owner_engine.connect() as conn:
        computed = (
            await conn.execute(
                text("SELECT to_jsonb(a) AS row FROM audit_logs a WHERE tenant_id = :t AND action = :a"),
                {"t": first, "a": "audit.query_hash_computed"},
            )
        ).one()
    assert computed.row["metadata"] == {"query_hmac": ours[0]["query_hmac"]}
    assert "chest" not in str(computed.row).lower()


async def test_a_tenant_without_a_query_key_gets_exactly_one_when_first_searches_race(
    client: httpx.AsyncClient, tokens: Tokens, owner_engine: AsyncEngine
) -> None:
    tenant_id = await _new_tenant(client, tokens)
    async with owner_engine.begin() as conn:  # as a tenant created before migration 0009
        await conn.execute(text("UPDATE tenants SET query_key_wrapped = NULL WHERE id = :t"), {"t": tenant_id})

    await asyncio.gather(*(_search(client, tokens.headers("member", tenant_id, sub=f"u{i}"), QUERY) for i in range(4)))

    hmacs = {m["query_hmac"] for m in await _search_metadata(owner_engine, tenant_id)}
    assert len(hmacs) == 1
    async with owner_engine.connect() as conn:
        stored = await conn.scalar(text("SELECT query_key_wrapped FROM tenants WHERE id = :t"), {"t": tenant_id})
    assert stored is not None
    await _search(client, tokens.headers("member", tenant_id), QUERY)
    assert {m["query_hmac"] for m in await _search_metadata(owner_engine, tenant_id)} == hmacs


class CountingKeys:
    """A key provider that counts unwraps (what a KMS `Decrypt` would cost)."""

    def __init__(self, inner: KeyProvider) -> None:
        self.inner = inner
        self.unwraps = 0

    def wrap_secret(self, tenant: TenantKeyRef, secret: bytes, purpose: str) -> bytes:
        return self.inner.wrap_secret(tenant, secret, purpose)

    def unwrap_secret(self, tenant: TenantKeyRef, wrapped: bytes, purpose: str) -> bytes:
        self.unwraps += 1
        return self.inner.unwrap_secret(tenant, wrapped, purpose)


async def test_a_cached_key_costs_no_unwrap_and_the_cache_is_bounded(
    db: Database, settings: Settings, make_tenant: TenantFactory
) -> None:
    keys = CountingKeys(key_provider_from_settings(settings))
    query_keys = QueryKeys(db, keys, cache_size=1)  # type: ignore[arg-type]  # only the two methods it calls
    tenants = []
    for _ in range(2):
        created = await make_tenant()
        async with db.tenant_session(created.id) as session:
            tenants.append(await get_tenant(session, created.id))
    first, second = tenants
    assert first is not None
    assert second is not None

    digests = [await query_keys.digest(first, QUERY) for _ in range(3)]
    assert len(set(digests)) == 1
    assert keys.unwraps == 1
    await query_keys.digest(second, QUERY)
    await query_keys.digest(first, QUERY)  # evicted by the second tenant (cache of one)
    assert keys.unwraps == 3
