"""SQL for tenant-scoped vector and full-text search.

Two plans, chosen on purpose from the tenant's chunk count (a counter kept on
`documents.chunk_count`), because the planner left to itself picks the tenant
btree plus an exact sort for mid-sized tenants, which is slow, and the HNSW
index for tiny tenants, which can starve:

* exact: the tenant's candidate rows and their distances are materialised first
  (so the HNSW index cannot be used), the k nearest are picked from them, and only
  those k are joined back for their text. Recall 1.0; cost grows with the tenant's
  rows, so only for small tenants.
* hnsw: an ordered HNSW index scan with `hnsw.iterative_scan = relaxed_order`, so
  the tenant, model, deletion and caller filters cannot starve the result, inside a
  materialised CTE whose k rows are then re-sorted by their exact distance (relaxed
  order may return them slightly out of order). Sorting is disabled for the
  statement so the planner keeps the index scan inside the CTE. Measured against
  `strict_order`, relaxed order gives the same or better recall@10 and never
  returned fewer than k rows (see docs/SEARCH.md).

Every statement filters `tenant_id` explicitly as well as through RLS.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.vector_indexes import tenant_index_name
from search.schemas import SearchResult

Plan = Literal["exact", "hnsw"]

RERANK_MARGIN = 16
"""Candidates beyond k that the exact plan ranks by the compact (half-precision) distance, so that
re-ranking them by the full-precision distance gives the same k as a full-precision scan would (near
ties in the last places are the only difference half precision can make). The HNSW plan, approximate
anyway, takes k: every further candidate of a small share of the table costs the filtered scan another
round of the graph."""


@dataclass(frozen=True)
class Scope:
    """What a search may see, beyond the tenant: the active model (and its width) and the caller's filters."""

    tenant_id: uuid.UUID
    model_id: str
    dims: int
    document_ids: list[uuid.UUID] | None = None
    filters: dict[str, Any] | None = None


def _vector_literal(vector: list[float]) -> str:
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


def query_literal(scope: Scope, query_vector: list[float]) -> str:
    """The query at the model's own width: the padding past it is zero in every stored vector."""
    return _vector_literal(query_vector[: scope.dims])


def _where(scope: Scope, params: dict[str, Any]) -> str:
    params.update(tenant_id=scope.tenant_id, model_id=scope.model_id)
    clauses = [
        "c.tenant_id = :tenant_id",
        "c.embedding_model = :model_id",
        # A literal, so the partial index of this width (WHERE embedding_dims = N) matches any plan.
        f"c.embedding_dims = {int(scope.dims)}",
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


_FROM = "document_chunks c JOIN documents d ON d.id = c.document_id"
_HIT_COLUMNS = "c.id AS chunk_id, c.document_id, d.filename, c.chunk_index, c.page, c.text, c.metadata"


# The query parameter is typed text: used as `vector` in one place and `halfvec` in another, PostgreSQL would
# otherwise type it by its first use, and the full-precision distance would get a half-precision query. Each
# cast is a scalar subquery (an InitPlan, run once per execution): in a generic plan (asyncpg prepares every
# statement, and PostgreSQL switches a prepared statement to a generic plan after five runs) a bare cast of
# the parameter would parse the query's text again for every row scanned.


def _exact_distance(dims: int) -> str:
    """Full precision, for the few rows a search returns (reads the padded vector out of line)."""
    return f"subvector(c.embedding, 1, {dims}) <=> (SELECT CAST(CAST(:query_vector AS text) AS vector({dims})))"


def _compact_distance(dims: int) -> str:
    """Half precision at the model's width, inline in the row: what scans and the HNSW index read."""
    return f"c.embedding_compact::halfvec({dims}) <=> (SELECT CAST(CAST(:query_vector AS text) AS halfvec({dims})))"


_HNSW_SETTINGS = (
    "set_config('hnsw.ef_search', :ef_search, true), "
    "set_config('hnsw.iterative_scan', 'relaxed_order', true), "
    "set_config('hnsw.max_scan_tuples', :max_scan_tuples, true)"
)
"""The HNSW plan's transaction-local index settings, shared by the chosen plan's statement and a forced one's."""

_PLAN_SETTINGS = text(
    "WITH facts AS (SELECT "
    "(SELECT coalesce(sum(chunk_count), 0) FROM documents "
    "WHERE tenant_id = :t AND deleted_at IS NULL AND status = 'ready') AS rows, "
    "EXISTS (SELECT 1 FROM pg_index i JOIN pg_class r ON r.oid = i.indexrelid "
    "WHERE r.relname = :own_index AND i.indisvalid) AS own_index) "
    "SELECT rows, own_index, "
    f"{_HNSW_SETTINGS}, "
    "set_config('enable_sort', CASE WHEN own_index OR rows > :exact_max_rows THEN 'off' ELSE 'on' END, true) "
    "FROM facts"
)


async def plan_for_tenant(
    session: AsyncSession, scope: Scope, *, exact_max_rows: int, ef_search: int, max_scan_tuples: int
) -> Plan:
    """The plan from the tenant's chunk counter (no scan of the chunks) and whether it has an HNSW index of its
    own (`core/vector_indexes.py`), with the HNSW plan's transaction-local settings applied in the same round
    trip (harmless to the exact plan, whose sorting stays on)."""
    facts = (
        await session.execute(
            _PLAN_SETTINGS,
            {
                "t": scope.tenant_id,
                "own_index": tenant_index_name(scope.tenant_id, scope.dims),
                "ef_search": str(ef_search),
                "max_scan_tuples": str(max_scan_tuples),
                "exact_max_rows": exact_max_rows,
            },
        )
    ).one()
    return choose_plan(int(facts.rows or 0), exact_max_rows, own_index=bool(facts.own_index))


def candidates(k: int, plan: Plan) -> int:
    """How many nearest rows by compact distance the plan re-ranks by full precision."""
    return k + RERANK_MARGIN if plan == "exact" else k


def choose_plan(tenant_rows: int, exact_max_rows: int, *, own_index: bool = False) -> Plan:
    """HNSW through the tenant's own index when it has one; else exact up to `exact_max_rows`, HNSW above."""
    return "hnsw" if own_index or tenant_rows > exact_max_rows else "exact"


def vector_sql(scope: Scope, k: int, plan: Plan, params: dict[str, Any]) -> str:
    """The statement for `plan`: `nearest` holds the nearest candidates by compact distance, of which the
    k nearest by full-precision distance are returned."""
    where = _where(scope, params)
    params["k"] = k
    params["candidates"] = candidates(k, plan)
    compact = _compact_distance(scope.dims)
    if plan == "exact":
        # No ORDER BY next to the distance, so no index can serve it: every candidate is scored.
        nearest = (
            f"candidates AS MATERIALIZED (SELECT c.ctid AS row, c.id, {compact} AS distance FROM {_FROM} "
            f"WHERE {where}), "
            "nearest AS MATERIALIZED (SELECT row FROM candidates ORDER BY distance, id LIMIT :candidates)"
        )
    else:
        # The tenant as a literal too, so that the predicate of its own index (if it has one) is proved under
        # any plan; the planner then prefers that smaller index to the shared one.
        own = f"c.tenant_id = '{scope.tenant_id}'::uuid"
        nearest = (
            f"nearest AS MATERIALIZED (SELECT c.ctid AS row FROM {_FROM} WHERE {where} AND {own} "
            f"ORDER BY {compact} LIMIT :candidates)"
        )
    # The candidates are fetched back by their row address (a TID scan of an InitPlan's array: the same
    # statement, so the same snapshot), not joined back by id: a generic plan estimates every tenant at the
    # average size and would read the tenant's index, or the whole tenant, to find 26 rows.
    return (
        f"WITH {nearest} SELECT {_HIT_COLUMNS}, 1 - ({_exact_distance(scope.dims)}) AS score FROM {_FROM} "
        "WHERE c.ctid = ANY(ARRAY(SELECT row FROM nearest)) AND c.tenant_id = :tenant_id AND d.tenant_id = :tenant_id "
        "ORDER BY score DESC, c.id LIMIT :k"
    )


_CONFIGURE_HNSW = text(
    f"SELECT {_HNSW_SETTINGS}, "
    "set_config('enable_sort', 'off', true)"
)


async def configure_hnsw(session: AsyncSession, ef_search: int, max_scan_tuples: int) -> None:
    """Transaction-local index settings for a forced HNSW plan (tests and benchmarks)."""
    await session.execute(_CONFIGURE_HNSW, {"ef_search": str(ef_search), "max_scan_tuples": str(max_scan_tuples)})


async def vector_search(
    session: AsyncSession, scope: Scope, query_vector: list[float], k: int, plan: Plan
) -> list[SearchResult]:
    params: dict[str, Any] = {"query_vector": query_literal(scope, query_vector)}
    sql = vector_sql(scope, k, plan, params)
    rows = await session.execute(text(sql), params)
    return [_result(row) for row in rows.mappings()]


async def explain_vector_search(
    session: AsyncSession, scope: Scope, query_vector: list[float], k: int, plan: Plan
) -> str:
    params: dict[str, Any] = {"query_vector": query_literal(scope, query_vector)}
    sql = vector_sql(scope, k, plan, params)
    rows = await session.execute(text("EXPLAIN " + sql), params)
    return "\n".join(str(row[0]) for row in rows)


async def text_search(
    session: AsyncSession, scope: Scope, query: str, query_vector: list[float], k: int
) -> list[SearchResult]:
    """Full-text candidates ranked by `ts_rank_cd` (their cosine score is still computed)."""
    params: dict[str, Any] = {"query_vector": query_literal(scope, query_vector), "query": query}
    where = _where(scope, params)
    params["k"] = k
    rows = await session.execute(
        text(
            f"SELECT {_HIT_COLUMNS}, 1 - ({_exact_distance(scope.dims)}) AS score FROM {_FROM} WHERE {where} "
            "AND c.search_vector @@ websearch_to_tsquery('english', :query) "
            "ORDER BY ts_rank_cd(c.search_vector, websearch_to_tsquery('english', :query)) DESC, c.id LIMIT :k"
        ),
        params,
    )
    return [_result(row) for row in rows.mappings()]


def _result(row: Any) -> SearchResult:
    return SearchResult(
        chunk_id=row["chunk_id"],
        document_id=row["document_id"],
        filename=row["filename"],
        chunk_index=row["chunk_index"],
        page=row["page"],
        text=row["text"],
        score=float(row["score"]),
        metadata=dict(row["metadata"] or {}),
    )
