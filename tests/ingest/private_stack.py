"""Servers no other worker of the test session sees, for tests that kill their workers or stop their Redis.

The session's worker (`tests/harness.py`) consumes the session's Redis and its reconciler visits every
tenant of the session's database, so it would take over the very work such a test waits for its own
workers to recover. These tests get a PostgreSQL and a Redis of their own, the real app over ASGI on
them, and helpers to read back what happened to each document.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness import SETTLED, Tokens, audit_actions
from tests.ingest.test_pipeline_e2e import chunk_rows
from tests.waiting import eventually


async def new_tenant(http: httpx.AsyncClient, tokens: Tokens) -> uuid.UUID:
    response = await http.post(
        "/v1/tenants", json={"name": f"Clinic {uuid.uuid4().hex[:6]}"}, headers=tokens.platform()
    )
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


async def statuses(owner: AsyncEngine, document_ids: Iterable[str]) -> dict[str, str]:
    async with owner.connect() as conn:
        rows = await conn.execute(
            text("SELECT id, status FROM documents WHERE id = ANY(:ids)"), {"ids": [uuid.UUID(d) for d in document_ids]}
        )
        return {str(row.id): row.status for row in rows}


async def all_settled(
    http: httpx.AsyncClient, headers: dict[str, str], document_ids: list[str], seconds: float
) -> dict[str, dict[str, Any]]:
    """Every document as the API shows it, once each is `ready` or `failed` (fails after `seconds`)."""

    async def probe() -> dict[str, dict[str, Any]] | None:
        bodies = {d: (await http.get(f"/v1/documents/{d}", headers=headers)).json() for d in document_ids}
        return bodies if all(body["status"] in SETTLED for body in bodies.values()) else None

    return await eventually(probe, "every document ready or failed", seconds=seconds)


async def assert_processed_once(owner: AsyncEngine, tenant_id: uuid.UUID, bodies: dict[str, dict[str, Any]]) -> None:
    """Each ready document has one `document.processed` event and one contiguous set of chunks; each
    failed one says why."""
    actions = await audit_actions(owner, tenant_id)
    for document_id, body in bodies.items():
        processed = [a for a, _, r in actions if r == document_id and a == "document.processed"]
        if body["status"] == "failed":
            assert body["error_code"], body
            assert body["error_message"], body
            assert processed == [], body
            continue
        assert processed == ["document.processed"], (document_id, processed)
        chunks = await chunk_rows(owner, document_id)
        assert len(chunks) == body["chunk_count"] > 0, body
        assert [c[0] for c in chunks] == list(range(len(chunks)))
