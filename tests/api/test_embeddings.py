"""`POST /v1/embeddings/query`: the API's model lent to platform tools, audited without the text."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import SYSTEM_TENANT_ID
from core.settings import Settings
from embeddings.sentence_transformer import get_embedder
from models.chunk import EMBEDDING_DIM
from tests.harness import Tokens

QUERY = "Jane Doe chest pain radiating to the left arm"


async def audit_rows(owner: AsyncEngine, request_id: str) -> list[tuple[uuid.UUID, str, str, str, dict[str, object]]]:
    async with owner.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT tenant_id, action, outcome, to_jsonb(a)::text AS whole, metadata FROM audit_logs a "
                "WHERE request_id = :r ORDER BY id"
            ),
            {"r": request_id},
        )
        return [(row.tenant_id, row.action, row.outcome, row.whole, dict(row.metadata)) for row in rows]


async def test_a_platform_admin_gets_the_vector_the_local_model_computes(
    client: httpx.AsyncClient, tokens: Tokens, owner_engine: AsyncEngine, settings: Settings
) -> None:
    request_id = f"embed-{uuid.uuid4().hex}"
    response = await client.post(
        "/v1/embeddings/query",
        json={"query": f"  {QUERY} "},
        headers={**tokens.platform(), "X-Request-ID": request_id},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    local = get_embedder(settings)
    assert (body["model"], body["dims"]) == (local.model_id, local.native_dim)
    assert len(body["vector"]) == EMBEDDING_DIM
    assert body["vector"] == pytest.approx(local.embed_query(QUERY), abs=1e-6)  # stripped, as a search's query is

    rows = await audit_rows(owner_engine, request_id)
    assert [(tenant, action, outcome) for tenant, action, outcome, _, _ in rows] == [
        (SYSTEM_TENANT_ID, "embedding.computed", "success")
    ]
    assert rows[0][4] == {"model": local.model_id, "dims": local.native_dim}
    assert "Jane" not in rows[0][3]
    assert "chest" not in rows[0][3]


async def test_tenant_roles_are_refused_and_audited(
    client: httpx.AsyncClient, tokens: Tokens, owner_engine: AsyncEngine, tenant_id: uuid.UUID
) -> None:
    request_id = f"embed-{uuid.uuid4().hex}"
    response = await client.post(
        "/v1/embeddings/query",
        json={"query": QUERY},
        headers={**tokens.headers("admin", tenant_id), "X-Request-ID": request_id},
    )
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "forbidden"
    rows = await audit_rows(owner_engine, request_id)
    assert [(tenant, action, outcome) for tenant, action, outcome, _, _ in rows] == [
        (tenant_id, "access.denied", "denied")
    ]
    assert rows[0][4] == {"reason": "role_not_allowed", "route": "POST /v1/embeddings/query"}


async def test_no_token_is_refused_and_audited(client: httpx.AsyncClient, owner_engine: AsyncEngine) -> None:
    request_id = f"embed-{uuid.uuid4().hex}"
    response = await client.post("/v1/embeddings/query", json={"query": QUERY}, headers={"X-Request-ID": request_id})
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "missing_token"
    rows = await audit_rows(owner_engine, request_id)
    assert [(tenant, action, outcome) for tenant, action, outcome, _, _ in rows] == [
        (SYSTEM_TENANT_ID, "auth.denied", "denied")
    ]


@pytest.mark.parametrize("body", [{"query": "   "}, {"query": ""}, {"query": "x" * 2001}, {"query": "a", "k": 3}, {}])
async def test_the_query_is_validated_as_a_search_query(
    client: httpx.AsyncClient, tokens: Tokens, body: dict[str, object]
) -> None:
    response = await client.post("/v1/embeddings/query", json=body, headers=tokens.platform())
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
