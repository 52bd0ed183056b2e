"""The search benchmark's measurements: tenant-scoped queries in the database as the app role and as
the owner (for the RLS overhead), and POST /v1/search through the running API.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from bench.stats import latency, percentile
from bench.zipf_corpus import Corpus, Floats, exact_top_k, make_queries
from core.db import Database
from core.security import mint_token
from core.settings import Settings
from search.repository import Plan, Scope
from search.service import run_vector_query

K = 10


@dataclass
class Query:
    tenant: int
    vector: Floats
    truth: set[uuid.UUID]


@dataclass
class Sample:
    plan: Plan
    ms: float  # run_vector_query: chunk counter, plan settings, search statement
    transaction_ms: float  # the whole tenant transaction: BEGIN, tenant context, query, COMMIT
    recall: float
    returned: int


def summary(samples: Sequence[Sample]) -> dict[str, Any]:
    if not samples:
        return {"queries": 0}
    recalls = [s.recall for s in samples]
    return {
        "queries": len(samples),
        **latency([s.ms for s in samples]),
        "recall_at_10": round(float(np.mean(recalls)), 4),
        "recall_at_10_p5": round(percentile(recalls, 5), 2),
        "short_results": sum(1 for s in samples if s.returned < K),
    }


def make_query_set(corpus: Corpus, counts: Sequence[int], seed: int) -> list[Query]:
    rng = np.random.default_rng(seed)
    queries = [
        Query(tenant, vector, set(exact_top_k(corpus, tenant, vector, K)))
        for tenant, count in enumerate(counts)
        for vector in make_queries(corpus, tenant, count, rng)
    ]
    random.Random(seed).shuffle(queries)
    return queries


_NOOP = text("SELECT 1")


class Runner:
    def __init__(self, corpus: Corpus, settings: Settings, app: Database, owner: Database, model_id: str) -> None:
        self.corpus = corpus
        self.settings = settings
        self.app = app
        self.owner_sessions = async_sessionmaker(owner.engine, expire_on_commit=False, autoflush=False)
        self.model_id = model_id

    def _scope(self, query: Query) -> Scope:
        tenant_id = self.corpus.tenant_ids[query.tenant]
        return Scope(tenant_id=tenant_id, model_id=self.model_id, dims=self.corpus.native_dim)

    def _sample(self, query: Query, plan: Plan, hits: Sequence[Any], ms: float, started: float) -> Sample:
        found = {hit.chunk_id for hit in hits}
        return Sample(plan, ms, (time.perf_counter() - started) * 1000, len(found & query.truth) / K, len(hits))

    async def as_app(self, query: Query, settings: Settings | None = None, plan: Plan | None = None) -> Sample:
        started = time.perf_counter()
        async with self.app.tenant_session(self.corpus.tenant_ids[query.tenant]) as session:
            t0 = time.perf_counter()
            used, hits = await run_vector_query(
                session, self._scope(query), query.vector.tolist(), K, settings or self.settings, plan=plan
            )
            ms = (time.perf_counter() - t0) * 1000
        return self._sample(query, used, hits, ms, started)

    async def as_owner(self, query: Query) -> Sample:
        """The same statements as the superuser owner: no tenant context, no RLS, the explicit filter only."""
        started = time.perf_counter()
        async with self.owner_sessions() as session, session.begin():
            await session.execute(_NOOP)  # the round trip tenant_session spends on the tenant context
            t0 = time.perf_counter()
            used, hits = await run_vector_query(session, self._scope(query), query.vector.tolist(), K, self.settings)
            ms = (time.perf_counter() - t0) * 1000
        return self._sample(query, used, hits, ms, started)


QUERY_TEXTS = [
    "{t} treatment options",
    "latest lab results for {t}",
    "follow-up plan for {t} in the outpatient clinic",
    "medication changes for {t} and side effects",
    "examination findings consistent with {t}",
]
TOPICS = ["hypertension", "type 2 diabetes", "asthma", "heart failure", "pneumonia", "migraine", "sepsis", "depression"]


async def http_latency(
    base_url: str, settings: Settings, corpus: Corpus, counts: Sequence[int], embed: Any
) -> dict[str, Any]:
    """POST /v1/search end to end (query embedding included), and the embedding alone in this process."""
    rng = random.Random(11)
    texts = [template.format(t=topic) for template in QUERY_TEXTS for topic in TOPICS]
    tenants = [t for t, count in enumerate(counts) for _ in range(count)]
    tokens = {
        t: mint_token(settings, subject="bench-reader", role="viewer", tenant_id=corpus.tenant_ids[t])
        for t in set(tenants)
    }
    walls: list[float] = []
    took: list[float] = []
    results = 0
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        for i, tenant in enumerate([*tenants[:20], *tenants]):  # the first 20 warm up and are not counted
            body = {"query": f"{rng.choice(texts)} {i}", "k": K}
            t0 = time.perf_counter()
            response = await client.post("/v1/search", json=body, headers={"Authorization": f"Bearer {tokens[tenant]}"})
            wall = (time.perf_counter() - t0) * 1000
            response.raise_for_status()
            if i >= 20:
                walls.append(wall)
                took.append(float(response.json()["took_ms"]))
                results += len(response.json()["results"])
    embed_ms = []
    for query_text in texts * 3:
        t0 = time.perf_counter()
        embed(query_text)
        embed_ms.append((time.perf_counter() - t0) * 1000)
    return {
        "queries": len(walls),
        "query_embedding": "included",
        "wall": latency(walls),
        "server_took_ms": latency(took),
        "embedding_only_in_process": latency(embed_ms[len(texts) :]),
        "mean_results": round(results / max(1, len(walls)), 2),
        "note": "real model query vectors against synthetic chunks: the database work is representative in "
        "cost, not in relevance; each request also checks the tenant, provisions the user and writes an audit row",
    }
