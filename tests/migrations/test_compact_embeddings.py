"""Migration 0006: chunks that existed before it get their model's width and a compact vector, stored
inline; `phivault migrate` indexes every width the chunks hold, and gives large tenants their own index;
the downgrade restores the full index."""

from __future__ import annotations

import asyncio
import uuid

from core import migrate
from core.vector_indexes import tenant_index_name
from tests.migrations.conftest import Databases, execute, rows

REVISION = "0006_compact_embeddings"


def _padded(values: list[float]) -> str:
    return "[" + ",".join(str(v) for v in values + [0.0] * (1024 - len(values))) + "]"


async def test_existing_chunks_get_their_width_and_an_inline_compact_vector(databases: Databases) -> None:
    await asyncio.to_thread(migrate.downgrade, databases.owner, "0005_tenant_listing")
    tenant, document = uuid.uuid4(), uuid.uuid4()
    eight = [0.5, -0.5, 0.25, 0.0, 0.5, 0.0, 0.25, -0.25]  # a zero inside the width is not padding
    wide = [0.01 * (i % 7 - 3) or 0.02 for i in range(384)]
    chunk = (
        "INSERT INTO document_chunks (tenant_id, document_id, chunk_index, text, token_count, embedding, "
        "embedding_model) VALUES ('{t}', '{d}', {i}, 'x', 1, '{v}', '{m}')"
    )
    await execute(
        databases.superuser,
        f"INSERT INTO tenants (id, name, slug) VALUES ('{tenant}', 'Clinic', 'clinic-{tenant.hex[:8]}')",
        f"INSERT INTO documents (id, tenant_id, filename, content_type, size_bytes, sha256, storage_key) "
        f"VALUES ('{document}', '{tenant}', 'a.txt', 'text/plain', 1, '{tenant.hex}', 'k')",
        chunk.format(t=tenant, d=document, i=0, v=_padded(eight), m="eight-d"),
        # Another chunk of the same model whose last dimensions happen to be zero: the model's width wins.
        chunk.format(t=tenant, d=document, i=1, v=_padded([0.5, 0.5, 0.5, 0.5]), m="eight-d"),
        chunk.format(t=tenant, d=document, i=2, v=_padded(wide), m="minilm"),
    )

    await asyncio.to_thread(migrate.upgrade, databases.owner, REVISION)

    got = await rows(
        databases.superuser,
        "SELECT chunk_index, embedding_dims, embedding_compact::text FROM document_chunks ORDER BY chunk_index",
    )
    assert [(index, dims) for index, dims, _ in got] == [(0, 8), (1, 8), (2, 384)]
    assert got[0][2] == "[0.5,-0.5,0.25,0,0.5,0,0.25,-0.25]"
    assert got[1][2] == "[0.5,0.5,0.5,0.5,0,0,0,0]"
    storage = await rows(
        databases.superuser,
        "SELECT attstorage::text FROM pg_attribute WHERE attrelid = 'document_chunks'::regclass "
        "AND attname = 'embedding_compact'",
    )
    assert storage == [("p",)]  # PLAIN: never compressed, never moved out of line

    await asyncio.to_thread(migrate.upgrade, databases.owner)
    # The tenant holds two chunks of width 8 and one of 384: with a threshold of two, width 8 gets its own index.
    found = await migrate.ensure_search_indexes(databases.owner, tenant_index_min_rows=2)
    assert found == migrate.SearchIndexes(widths=[8, 384], tenants=[(tenant, 8)])
    indexes = await rows(
        databases.superuser,
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'document_chunks' "
        "AND indexdef LIKE '%USING hnsw%' ORDER BY indexname",
    )
    assert [name for name, _ in indexes] == [
        "ix_document_chunks_compact_384_hnsw",
        "ix_document_chunks_compact_8_hnsw",
        tenant_index_name(tenant, 8),
    ]
    assert f"tenant_id = '{tenant}'::uuid" in str(indexes[2][1])
    assert await migrate.ensure_search_indexes(databases.owner, tenant_index_min_rows=2) == found  # idempotent

    await asyncio.to_thread(migrate.downgrade, databases.owner, "0005_tenant_listing")
    indexes = await rows(
        databases.superuser,
        "SELECT indexname FROM pg_indexes WHERE tablename = 'document_chunks' AND indexdef LIKE '%USING hnsw%'",
    )
    assert indexes == [("ix_document_chunks_embedding_hnsw",)]
