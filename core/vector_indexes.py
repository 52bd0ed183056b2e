"""The HNSW indexes search reads, by name and definition (docs/SEARCH.md).

* One shared index per embedding width over every tenant's compact vectors (migration 0006 creates the
  default model's, 384; `phivault migrate` any other width the chunks hold).
* One index of its own for each tenant with at least `PHIVAULT_SEARCH_TENANT_INDEX_MIN_ROWS` chunks of a
  width, created by `phivault migrate` (`CREATE INDEX CONCURRENTLY`: writes go on meanwhile). A filtered
  scan of the shared index passes over every other tenant's rows, so the fewer of the table a tenant holds,
  the more graph it walks for each of its own; its own index is walked unfiltered. The search names the
  tenant as a literal in the HNSW plan, so the planner can prove the index's predicate under any plan.
"""

from __future__ import annotations

import uuid

_COLUMNS = "USING hnsw ((embedding_compact::halfvec({dims})) halfvec_cosine_ops) WITH (m = 16, ef_construction = 64)"


def shared_index_name(dims: int) -> str:
    return f"ix_document_chunks_compact_{dims}_hnsw"


def tenant_index_name(tenant_id: uuid.UUID, dims: int) -> str:
    """Within PostgreSQL's 63 characters: 96 bits of the tenant id name it."""
    return f"ix_document_chunks_compact_{dims}_t_{tenant_id.hex[:24]}"


def shared_index_sql(dims: int) -> str:
    return (
        f"CREATE INDEX IF NOT EXISTS {shared_index_name(dims)} ON document_chunks "
        f"{_COLUMNS.format(dims=dims)} WHERE embedding_dims = {dims}"
    )


def tenant_index_sql(tenant_id: uuid.UUID, dims: int) -> str:
    return (
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {tenant_index_name(tenant_id, dims)} ON document_chunks "
        f"{_COLUMNS.format(dims=dims)} WHERE embedding_dims = {dims} AND tenant_id = '{tenant_id}'::uuid"
    )
