"""After a model change: search sees only the active model's chunks, and `reembed` brings the rest over."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import Database
from core.keys import key_provider_from_settings
from core.settings import Settings
from ingest.reembed import reembed_tenant, stale_chunk_count
from models.audit import Actor
from search.schemas import SearchRequest
from search.service import search
from tenants.query_keys import QueryKeys
from tenants.service import tenant_transactions
from tests.conftest import TenantFactory, owner_scalar
from tests.harness import HashEmbedder
from tests.security.tenant_rows import VECTOR_1024

ACTOR = Actor(actor_id="test-reembed", actor_type="system")


async def _document_with_chunks(db: Database, tenant_id: uuid.UUID, count: int) -> uuid.UUID:
    async with db.tenant_session(tenant_id) as session:
        document_id = await session.scalar(
            text(
                "INSERT INTO documents (tenant_id, filename, content_type, size_bytes, sha256, storage_key, status, "
                "chunk_count) VALUES (:t, 'old.txt', 'text/plain', 1, :h, 'k', 'ready', :n) RETURNING id"
            ),
            {"t": tenant_id, "h": uuid.uuid4().hex, "n": count},
        )
        for index in range(count):
            await session.execute(
                text(
                    "INSERT INTO document_chunks (tenant_id, document_id, chunk_index, text, token_count, embedding, "
                    "embedding_dims, embedding_model) VALUES (:t, :d, :i, :x, 3, CAST(:v AS vector), 1024, 'old-model')"
                ),
                {"t": tenant_id, "d": document_id, "i": index, "x": f"old chunk number {index}", "v": VECTOR_1024},
            )
    assert isinstance(document_id, uuid.UUID)
    return document_id


async def test_search_ignores_other_models_until_reembedded(
    db: Database, settings: Settings, make_tenant: TenantFactory, owner_engine: AsyncEngine
) -> None:
    tenant_id = (await make_tenant()).id
    document_id = await _document_with_chunks(db, tenant_id, 5)
    embedder = HashEmbedder()
    request = SearchRequest(query="old chunk number 3", k=5)

    query_keys = QueryKeys(db, key_provider_from_settings(settings))
    before = await search(tenant_transactions(db, tenant_id, ACTOR), embedder, request, settings, query_keys=query_keys)
    assert before.results == []
    assert await stale_chunk_count(db, tenant_id, embedder.model_id) == 5

    batches: list[int] = []
    assert await reembed_tenant(db, embedder, tenant_id, ACTOR, batch_size=2, on_batch=batches.append) == 5
    assert batches == [2, 2, 1]
    assert await stale_chunk_count(db, tenant_id, embedder.model_id) == 0
    assert await reembed_tenant(db, embedder, tenant_id, ACTOR) == 0

    after = await search(tenant_transactions(db, tenant_id, ACTOR), embedder, request, settings, query_keys=query_keys)
    assert after.results[0].text == "old chunk number 3"
    assert after.results[0].score > 0.999
    assert {r.document_id for r in after.results} == {document_id}
    events = await owner_scalar(
        owner_engine,
        "SELECT count(*) FROM audit_logs WHERE tenant_id = :t AND action = 'chunks.reembedded'",
        t=tenant_id,
    )
    assert events == 3
