"""SQL for tenant-scoped vector and full-text search.

Two plans, chosen on purpose from the tenant's chunk count (a counter kept on
`documents.chunk_count`), because the planner left to itself picks the tenant
btree plus an exact sort for mid-sized tenants, which is slow, and the HNSW
index for tiny tenants, which can starve:

* exact: the tenant's candidate rows are materialised first and sorted by exact
  distance. Recall 1.0; about 3 ms per 1,000 rows, so only for small tenants.
* hnsw: an ordered HNSW index scan with `hnsw.iterative_scan = strict_order`, so
  the tenant, model, deletion and caller filters cannot starve the result; sorting
  is disabled for the statement so the planner keeps the index order.

Every statement filters `tenant_id` explicitly as well as through RLS.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

Plan = Literal["exact", "hnsw"]


@dataclass(frozen=True)
class Hit:
    chunk_id: uuid.UUID
    document_id: uuid.UUID
    filename: str
    chunk_index: int
    page: int | None
    text: str
    score: float
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Scope:
    """What a search may see, beyond the tenant: the active model and the caller's filters."""

    tenant_id: uuid.UUID
    model_id: str
    document_ids: list[uuid.UUID] | None = None
    filters: dict[str, Any] | None = None


def _vector_literal(vector: list[float]) -> str:
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


def _where(scope: Scope, params: dict[str, Any]) -> str:
    params.update(tenant_id=scope.tenant_id, model_id=scope.model_id)
    clauses = [
        "c.tenant_id = :tenant_id",
        "c.embedding_model = :model_id",
        "d.tenant_id = :tenant_id",
        "d.deleted_at IS NULL",
        "d.status = 'ready'",
    ]
    if scope.document_ids is not None:
        clauses.append("c.document_id = ANY(CAST(:document_ids AS uuid[]))")
        params["document_ids"] = [str(i) for i in scope.document_ids]
    if scope.filters:
        clauses.append("d.metadata @> CAST(:filters AS jsonb)")
        params["filters"] = json.dumps(scope.filters)
    return " AND ".join(clauses)


_COLUMNS = (
    "c.id AS chunk_id, c.document_id, d.filename, c.chunk_index, c.page, c.text, c.metadata, "
    "1 - (c.embedding <=> CAST(:query_vector AS vector)) AS score"
)
_FROM = "document_chunks c JOIN documents d ON d.id = c.document_id"


async def tenant_chunk_count(session: AsyncSession, tenant_id: uuid.UUID) -> int:
    """Searchable chunks of the tenant, from the per-document counter (no scan of the chunks)."""
    count = await session.scalar(
        text(
            "SELECT coalesce(sum(chunk_count), 0) FROM documents "
            "WHERE tenant_id = :t AND deleted_at IS NULL AND status = 'ready'"
        ),
        {"t": tenant_id},
    )
    return int(count or 0)


def choose_plan(tenant_rows: int, exact_max_rows: int) -> Plan:
    return "exact" if tenant_rows <= exact_max_rows else "hnsw"


def vector_sql(scope: Scope, k: int, plan: Plan, params: dict[str, Any]) -> str:
    where = _where(scope, params)
    params["k"] = k
    if plan == "exact":
        return (
            f"WITH candidates AS MATERIALIZED (SELECT c.id, c.embedding FROM {_FROM} WHERE {where}) "
            f"SELECT {_COLUMNS} FROM candidates x JOIN document_chunks c ON c.id = x.id "
            f"JOIN documents d ON d.id = c.document_id "
            "ORDER BY x.embedding <=> CAST(:query_vector AS vector), c.id LIMIT :k"
        )
    return (
        f"SELECT {_COLUMNS} FROM {_FROM} WHERE {where} ORDER BY c.embedding <=> CAST(:query_vector AS vector) LIMIT :k"
    )


async def configure_hnsw(session: AsyncSession, ef_search: int, max_scan_tuples: int) -> None:
    """Transaction-local index settings for the HNSW plan."""
    await session.execute(text("SELECT set_config('hnsw.ef_search', :v, true)"), {"v": str(ef_search)})
    await session.execute(text("SELECT set_config('hnsw.iterative_scan', 'strict_order', true)"))
    await session.execute(text("SELECT set_config('hnsw.max_scan_tuples', :v, true)"), {"v": str(max_scan_tuples)})
    await session.execute(text("SELECT set_config('enable_sort', 'off', true)"))


async def vector_search(
    session: AsyncSession, scope: Scope, query_vector: list[float], k: int, plan: Plan
) -> list[Hit]:
    params: dict[str, Any] = {"query_vector": _vector_literal(query_vector)}
    sql = vector_sql(scope, k, plan, params)
    rows = await session.execute(text(sql), params)
    return [_hit(row) for row in rows.mappings()]


async def explain_vector_search(
    session: AsyncSession, scope: Scope, query_vector: list[float], k: int, plan: Plan
) -> str:
    params: dict[str, Any] = {"query_vector": _vector_literal(query_vector)}
    sql = vector_sql(scope, k, plan, params)
    rows = await session.execute(text("EXPLAIN " + sql), params)
    return "\n".join(str(row[0]) for row in rows)


async def text_search(session: AsyncSession, scope: Scope, query: str, query_vector: list[float], k: int) -> list[Hit]:
    """Full-text candidates ranked by `ts_rank_cd` (their cosine score is still computed)."""
    params: dict[str, Any] = {"query_vector": _vector_literal(query_vector), "query": query}
    where = _where(scope, params)
    params["k"] = k
    rows = await session.execute(
        text(
            f"SELECT {_COLUMNS} FROM {_FROM} WHERE {where} "
            "AND c.search_vector @@ websearch_to_tsquery('english', :query) "
            "ORDER BY ts_rank_cd(c.search_vector, websearch_to_tsquery('english', :query)) DESC, c.id LIMIT :k"
        ),
        params,
    )
    return [_hit(row) for row in rows.mappings()]


def _hit(row: Any) -> Hit:
    return Hit(
        chunk_id=row["chunk_id"],
        document_id=row["document_id"],
        filename=row["filename"],
        chunk_index=row["chunk_index"],
        page=row["page"],
        text=row["text"],
        score=float(row["score"]),
        metadata=dict(row["metadata"] or {}),
    )
