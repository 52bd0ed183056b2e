"""Search benchmark: latency, recall@10 and RLS overhead of tenant-scoped vector search.

Run by hand: `make bench-search` (options: `python -m bench.search --help`); never in CI. A fresh
embedded stack (bench/stack.py) gets 100,000 synthetic chunks x 1024-d over 100 tenants of Zipf
sizes, loaded by the owner with COPY while the HNSW index is dropped, then the index is rebuilt
from the migration's own definition (timed). Then:

* db path: queries spread over tenants in proportion to their size run as `phivault_app` through
  `Database.tenant_session` and `search.service.run_vector_query` (what POST /v1/search runs,
  minus the query embedding and the audit write); recall@10 against a brute-force top 10 of the
  tenant's rows;
* the same queries as the owner (a superuser, so no RLS) with the same explicit tenant filter,
  interleaved with the app-role runs, for the RLS overhead;
* an ef_search sweep (40/100/200/400), each plan forced per tenant size band, and
* POST /v1/search through the running API, which embeds the query with the real model.

Figures go to bench/results/search.json and a latency/recall plot to
bench/results/search_latency_recall.svg (drawn by hand: matplotlib is not a dependency).

The synthetic corpus and how it is loaded: bench/zipf_corpus.py and bench/load.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from bench.load import HNSW_INDEX, load_corpus
from bench.search_measurement import Runner, Sample, http_latency, make_query_set, summary
from bench.search_plot import svg_plot
from bench.stack import Stack, running_stack
from bench.stats import latency, percentile
from bench.zipf_corpus import BANDS, DIM, allocate, make_corpus, size_band, zipf_sizes
from core.db import Database, create_engine, to_libpq_url
from core.keys import key_provider_from_settings
from core.migrate import ensure_search_indexes

RESULTS = Path(__file__).parent / "results"


async def run(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    from embeddings.sentence_transformer import get_embedder  # torch: only the benchmark needs it

    began = time.perf_counter()
    settings = stack.settings
    embedder = get_embedder(settings)
    sizes = zipf_sizes(args.chunks, args.tenants, exponent=args.zipf)
    corpus = make_corpus(sizes, seed=args.seed, popularity=args.popularity)
    print(f"corpus: {corpus.rows} chunks, tenants {sizes[0]}..{sizes[-1]} rows", flush=True)

    conn = await asyncpg.connect(to_libpq_url(stack.services.owner_url))
    try:
        await conn.execute(f"SET maintenance_work_mem = '{args.maintenance_work_mem}'")
        loaded = await load_corpus(
            conn, corpus, model_id=embedder.model_id, keys=key_provider_from_settings(stack.settings)
        )
        started = time.perf_counter()  # what `phivault migrate` does once the data is there
        own = await ensure_search_indexes(stack.services.owner_url, settings.search_tenant_index_min_rows)
        tenant_indexes = {"tenants": len(own.tenants), "build_seconds": round(time.perf_counter() - started, 1)}
        print(f"tenant indexes: {tenant_indexes}", flush=True)
        server = {
            "postgres": await conn.fetchval("SHOW server_version"),
            "pgvector": await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'"),
            "shared_buffers": await conn.fetchval("SHOW shared_buffers"),
            "maintenance_work_mem_for_build": args.maintenance_work_mem,
            "max_parallel_maintenance_workers": await conn.fetchval("SHOW max_parallel_maintenance_workers"),
        }
        sizes_mb = await conn.fetchrow(
            "SELECT pg_relation_size('document_chunks') / 1048576.0 AS heap, "
            "pg_table_size('document_chunks') / 1048576.0 AS heap_and_toast, "
            "pg_relation_size($1::regclass) / 1048576.0 AS hnsw",
            HNSW_INDEX,
        )
        assert sizes_mb is not None
        index_def = await conn.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = $1", HNSW_INDEX)
    finally:
        await conn.close()
    print(f"loaded: copy {loaded.copy_seconds:.1f}s, index build {loaded.index_seconds:.1f}s", flush=True)

    app = Database(create_engine(stack.services.app_url, settings))
    owner = Database(create_engine(stack.services.owner_url, settings))
    runner = Runner(corpus, settings, app, owner, embedder.model_id)
    counts = allocate(sizes, args.queries)
    queries = make_query_set(corpus, counts, args.seed + 1)
    try:
        for query in queries[:200]:  # warm-up: caches, connections, prepared plans
            await runner.as_app(query)
            await runner.as_owner(query)

        # 1. The app role through tenant_session: each query once, as the API would run it.
        app_samples = [await runner.as_app(query) for query in queries]
        print(f"db path: {summary(app_samples)}", flush=True)

        # 2. RLS overhead: the same queries as the app role and as the owner, back to back, the
        # order alternating so that neither side always finds the other's pages in the cache.
        rls_app: list[Sample] = []
        owner_samples: list[Sample] = []
        for i, query in enumerate(queries):
            if i % 2:
                owner_samples.append(await runner.as_owner(query))
                rls_app.append(await runner.as_app(query))
            else:
                rls_app.append(await runner.as_app(query))
                owner_samples.append(await runner.as_owner(query))

        # 3. ef_search sweep on the chosen plans.
        sweep = []
        for ef in (40, 100, 200, 400):
            swept = settings.model_copy(update={"search_ef_search": ef})
            samples = [await runner.as_app(query, swept) for query in queries]
            hnsw = [s for s in samples if s.plan == "hnsw"]
            row = {"ef_search": ef, **summary(samples)}
            row.update({f"hnsw_{key}": value for key, value in summary(hnsw).items()})
            sweep.append(row)
            print(f"ef_search {ef}: {row}", flush=True)

        # 4. Each plan forced, by tenant size band (the same few queries per tenant).
        per_tenant = make_query_set(corpus, [args.forced_per_tenant] * len(sizes), args.seed + 2)
        forced: dict[str, dict[str, Any]] = {}
        for plan in ("exact", "hnsw"):
            by_band: dict[str, list[Sample]] = {band: [] for band in BANDS}
            for query in per_tenant:
                by_band[size_band(sizes[query.tenant])].append(await runner.as_app(query, plan=plan))
            forced[plan] = {band: summary(samples) for band, samples in by_band.items()}
            print(f"forced {plan}: {forced[plan]}", flush=True)
    finally:
        await app.dispose()
        await owner.dispose()

    # 5. Through HTTP, with the real query embedding.
    http = await http_latency(
        stack.base_url, settings, corpus, allocate(sizes, args.http_queries), embedder.embed_query
    )
    print(f"http: {http}", flush=True)

    db_path = summary(app_samples)
    plans = {plan: sum(1 for s in app_samples if s.plan == plan) for plan in ("exact", "hnsw")}
    app_ms = [s.ms for s in rls_app]
    owner_ms = [s.ms for s in owner_samples]
    app_tx = [s.transaction_ms for s in rls_app]
    owner_tx = [s.transaction_ms for s in owner_samples]
    rls_p50 = round(percentile(app_ms, 50) / percentile(owner_ms, 50), 3)
    rls: dict[str, Any] = {
        "measured": "the same queries as phivault_app (tenant_session, RLS) and as the owner (superuser, no RLS, "
        "explicit tenant filter only), back to back in alternating order; ratios of app to owner",
        "app": summary(rls_app),
        "owner": summary(owner_samples),
        "p50_ratio": rls_p50,
        "p95_ratio": round(percentile(app_ms, 95) / percentile(owner_ms, 95), 3),
        "mean_ratio": round(float(np.mean(app_ms) / np.mean(owner_ms)), 3),
        "transaction_p50_ratio": round(percentile(app_tx, 50) / percentile(owner_tx, 50), 3),
        "transaction_mean_ratio": round(float(np.mean(app_tx) / np.mean(owner_tx)), 3),
    }
    return {
        "machine": {"cpus": os.cpu_count(), **server},
        "corpus": {
            "chunks": corpus.rows,
            "dim": DIM,
            "tenants": len(sizes),
            "zipf_exponent": args.zipf,
            "largest_tenant_rows": sizes[0],
            "smallest_tenant_rows": sizes[-1],
            "tenants_above_exact_max_rows": sum(1 for size in sizes if size > settings.search_exact_max_rows),
            "topics": 200,
            "topic_popularity_exponent": args.popularity,
            "latent_dim": 64,
        },
        "index": {
            "definition": index_def,
            "tenant_indexes": tenant_indexes,
            "tenant_index_min_rows": settings.search_tenant_index_min_rows,
            "copy_seconds": round(loaded.copy_seconds, 1),
            "build_seconds": round(loaded.index_seconds, 1),
            "heap_mb": round(float(sizes_mb["heap"]), 1),
            "heap_and_toast_mb": round(float(sizes_mb["heap_and_toast"]), 1),
            "hnsw_mb": round(float(sizes_mb["hnsw"]), 1),
        },
        "settings": {
            "search_ef_search": settings.search_ef_search,
            "search_exact_max_rows": settings.search_exact_max_rows,
            "search_max_scan_tuples": settings.search_max_scan_tuples,
            "iterative_scan": "relaxed_order",
        },
        "db_path": {
            "query_embedding": "excluded",
            "measured": "run_vector_query inside tenant_session as phivault_app (chunk counter, plan settings, "
            "search statement), client side over the unix socket",
            "plans": plans,
            **db_path,
            "hnsw": summary([s for s in app_samples if s.plan == "hnsw"]),
            "exact": summary([s for s in app_samples if s.plan == "exact"]),
            "by_tenant_rows": {
                band: summary(
                    [s for s, q in zip(app_samples, queries, strict=True) if size_band(sizes[q.tenant]) == band]
                )
                for band in BANDS
            },
            "transaction": latency([s.transaction_ms for s in app_samples]),
        },
        "rls_overhead": rls,
        "ef_search_sweep": sweep,
        "forced_plan_by_tenant_rows": {"queries_per_tenant": args.forced_per_tenant, **forced},
        "http": http,
        "targets": {
            "db_p95_le_20ms": db_path["p95_ms"] <= 20.0,
            "recall_at_10_ge_0_95": db_path["recall_at_10"] >= 0.95,
            "rls_overhead_le_1_10": rls_p50 <= 1.10,
        },
        "seconds": round(time.perf_counter() - began, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--zipf", type=float, default=1.0, help="tenant size exponent")
    parser.add_argument("--popularity", type=float, default=0.5, help="topic popularity exponent")
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--forced-per-tenant", type=int, default=5)
    parser.add_argument("--http-queries", type=int, default=200)
    parser.add_argument("--maintenance-work-mem", default="1GB")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    started = time.perf_counter()
    with running_stack() as stack:
        results = asyncio.run(run(stack, args))
    results["seconds_with_stack"] = round(time.perf_counter() - started, 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "search.json").write_text(json.dumps(results, indent=2) + "\n")
    svg_plot(results["ef_search_sweep"], RESULTS / "search_latency_recall.svg")
    print(json.dumps(results["targets"]), f"in {results['seconds_with_stack']}s")


if __name__ == "__main__":
    main()
