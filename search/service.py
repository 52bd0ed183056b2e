"""Tenant-scoped semantic search (vector or hybrid), audited in the same transaction."""

from __future__ import annotations

import time

from sqlalchemy.ext.asyncio import AsyncSession

from core.db import SYSTEM_TENANT_ID, Database
from core.settings import Settings
from embeddings.base import Embedder, QueryEmbedder
from embeddings.model_thread import on_model_thread
from models.audit import ActingSession, Actor, TransactionFactory, write_audit_event
from search.metrics import SearchMetrics
from search.repository import Plan, Scope, configure_hnsw, plan_for_tenant, text_search, vector_search
from search.schemas import QueryEmbedding, SearchRequest, SearchResponse, SearchResult
from tenants.query_keys import QueryKeys

RRF_K = 60
HYBRID_CANDIDATES = 4  # each retriever contributes this many times k candidates (at least 40)


def reciprocal_rank_fusion(rankings: list[list[SearchResult]], k: int) -> list[SearchResult]:
    """Merge ranked lists by the sum of 1 / (RRF_K + rank); ties keep the higher cosine score first."""
    fused: dict[object, float] = {}
    hits: dict[object, SearchResult] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            fused[hit.chunk_id] = fused.get(hit.chunk_id, 0.0) + 1.0 / (RRF_K + rank)
            hits[hit.chunk_id] = hit
    ordered = sorted(hits.values(), key=lambda h: (-fused[h.chunk_id], -h.score))
    return ordered[:k]


async def run_vector_query(
    session: AsyncSession,
    scope: Scope,
    query_vector: list[float],
    k: int,
    settings: Settings,
    *,
    plan: Plan | None = None,
) -> tuple[Plan, list[SearchResult]]:
    """The k nearest chunks of the tenant in `scope`, and the plan that found them.

    The plan comes from the tenant's chunk counter and `search_exact_max_rows` unless
    given (tests and benchmarks force one). The HNSW plan searches with
    `ef_search = max(search_ef_search, k)`: the index never returns more rows per scan round
    than ef_search, so a smaller value could not fill k.
    """
    ef_search = max(settings.search_ef_search, k)
    if plan is None:
        plan = await plan_for_tenant(
            session,
            scope,
            exact_max_rows=settings.search_exact_max_rows,
            ef_search=ef_search,
            max_scan_tuples=settings.search_max_scan_tuples,
        )
    elif plan == "hnsw":
        await configure_hnsw(session, ef_search, settings.search_max_scan_tuples)
    return plan, await vector_search(session, scope, query_vector, k, plan)


async def search(
    transaction: TransactionFactory,
    embedder: QueryEmbedder,
    request: SearchRequest,
    settings: Settings,
    *,
    query_keys: QueryKeys,
    metrics: SearchMetrics | None = None,
) -> SearchResponse:
    """Embed the query, then retrieve and audit in one short transaction.

    The query is embedded before the transaction opens, so no connection (and no lock) is held
    while the model works; the audit row, which takes the tenant's chain lock until commit, is the
    transaction's last statement. The query's HMAC for the audit is computed in memory from the tenant row
    the transaction already read (`tenants.query_keys`)."""
    started = time.perf_counter()
    query_vector = await on_model_thread(embedder.embed_query, request.query)
    async with transaction() as tx:
        query_hmac = await query_keys.digest(tx.tenant, request.query)
        plan, hits = await _retrieve(tx, embedder, request, query_vector, settings)
        await _audit(tx, request, plan, hits, query_hmac)
    took = time.perf_counter() - started
    if metrics is not None:
        metrics.observe(plan, request.mode, took)
    return SearchResponse(results=hits, took_ms=round(took * 1000, 2))


async def _retrieve(
    tx: ActingSession, embedder: QueryEmbedder, request: SearchRequest, query_vector: list[float], settings: Settings
) -> tuple[Plan, list[SearchResult]]:
    session = tx.session
    scope = Scope(
        tenant_id=tx.tenant.id,
        model_id=embedder.model_id,
        dims=embedder.native_dim,
        document_ids=request.document_ids,
        filters=request.filters,
    )
    if request.mode == "hybrid":
        candidates = max(request.k * HYBRID_CANDIDATES, 40)
        lexical = await text_search(session, scope, request.query, query_vector, candidates)
        plan, semantic = await run_vector_query(session, scope, query_vector, candidates, settings)
        hits = reciprocal_rank_fusion([semantic, lexical], request.k)
    else:
        plan, hits = await run_vector_query(session, scope, query_vector, request.k, settings)
    if request.min_score is not None:
        hits = [hit for hit in hits if hit.score >= request.min_score]
    return plan, hits


async def _audit(
    tx: ActingSession, request: SearchRequest, plan: Plan, hits: list[SearchResult], query_hmac: str
) -> None:
    await tx.audit(
        "search.query",
        resource_type="search",
        metadata={
            "query_hmac": query_hmac,
            "k": request.k,
            "mode": request.mode,
            "plan": plan,
            "result_count": len(hits),
            "document_ids": sorted({str(hit.document_id) for hit in hits}),
            "chunk_ids": [str(hit.chunk_id) for hit in hits],
        },
    )


async def embed_query(db: Database, embedder: Embedder, query: str, actor: Actor) -> QueryEmbedding:
    """One query's vector, for a caller that searches on its own (`phivault search`) without loading the model.

    The model works before the transaction opens; the text concerns no one tenant and is never recorded:
    `embedding.computed` (model and dimension only) is written under the system tenant."""
    vector = await on_model_thread(embedder.embed_query, query)
    async with db.tenant_session(SYSTEM_TENANT_ID) as session:
        await write_audit_event(
            session,
            actor.event(
                SYSTEM_TENANT_ID,
                "embedding.computed",
                resource_type="embedding",
                metadata={"model": embedder.model_id, "dims": embedder.native_dim},
            ),
        )
    return QueryEmbedding(model=embedder.model_id, dims=embedder.native_dim, vector=vector)
