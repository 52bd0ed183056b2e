"""Search cost growth: in-database latency and recall@10 at 10k, 50k and 100k chunks (goal 6 of issue 13).

Run by hand: `make bench-growth` (options: `python -m bench.growth --help`); never in CI. One embedded
PostgreSQL (no API, no worker) holds each size in turn: the synthetic corpus of bench/search.py
(bench/zipf_corpus.py: 100 tenants of Zipf sizes, 384 native dimensions padded to 1024) is loaded
by the owner with COPY (bench/load.py, HNSW index dropped and rebuilt), measured, then emptied and
the next size loaded. Queries spread over tenants in proportion to their size run as `phivault_app`
through `Database.tenant_session` and `search.service.run_vector_query` (what POST /v1/search runs,
minus the query embedding and the audit write). Each size's query set runs `--passes` times; the
figures are the medians of the per-pass p50 and p95, with their range, so the machine's noise shows.
Figures go to bench/results/growth.json (or `--out`).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.load import SYNTHETIC_MODEL, load_corpus
from bench.search_measurement import Runner, Sample, make_query_set, summary
from bench.stack import APP_PASSWORD, SHARED_BUFFERS
from bench.zipf_corpus import DIM, NATIVE_DIM, allocate, make_corpus, zipf_sizes
from core.db import Database, create_engine, to_libpq_url
from core.keys import key_provider_from_settings
from core.migrate import ensure_search_indexes
from core.runtime import Services, throwaway_services
from core.settings import Settings

RESULTS = Path(__file__).parent / "results"
WARM_UP_QUERIES = 200


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


async def _empty(conn: asyncpg.Connection) -> None:
    """Remove the previous size's corpus (nothing else was written: no API ran, so no audit rows)."""
    await conn.execute("TRUNCATE document_chunks, documents")
    await conn.execute("DELETE FROM tenants")


async def measure_size(services: Services, settings: Settings, args: argparse.Namespace, chunks: int) -> dict[str, Any]:
    sizes = zipf_sizes(chunks, args.tenants, exponent=args.zipf)
    corpus = make_corpus(sizes, seed=args.seed, popularity=args.popularity)
    conn = await asyncpg.connect(to_libpq_url(services.owner_url))
    try:
        await _empty(conn)
        await conn.execute(f"SET maintenance_work_mem = '{args.maintenance_work_mem}'")
        loaded = await load_corpus(conn, corpus, model_id=SYNTHETIC_MODEL, keys=key_provider_from_settings(settings))
    finally:
        await conn.close()
    own = await ensure_search_indexes(services.owner_url, settings.search_tenant_index_min_rows)  # as `migrate` does
    print(f"{chunks} chunks: copy {loaded.copy_seconds:.1f}s, index build {loaded.index_seconds:.1f}s", flush=True)

    app = Database(create_engine(services.app_url, settings))
    owner = Database(create_engine(services.owner_url, settings))
    runner = Runner(corpus, settings, app, owner, SYNTHETIC_MODEL)
    queries = make_query_set(corpus, allocate(sizes, args.queries), args.seed + 1)
    passes: list[list[Sample]] = []
    try:
        for query in queries[:WARM_UP_QUERIES]:  # caches, connections, prepared plans
            await runner.as_app(query)
        for _ in range(args.passes):
            passes.append([await runner.as_app(query) for query in queries])
    finally:
        await app.dispose()
        await owner.dispose()
    per_pass = [summary(samples) for samples in passes]
    every = [sample for samples in passes for sample in samples]
    result = {
        "chunks": corpus.rows,
        "largest_tenant_rows": sizes[0],
        "smallest_tenant_rows": sizes[-1],
        "tenants_above_exact_max_rows": sum(1 for size in sizes if size > settings.search_exact_max_rows),
        "tenants_with_own_index": len(own.tenants),
        "copy_seconds": round(loaded.copy_seconds, 1),
        "index_build_seconds": round(loaded.index_seconds, 1),
        "queries_per_pass": len(queries),
        "passes": len(passes),
        "p50_ms": _spread([float(p["p50_ms"]) for p in per_pass]),
        "p95_ms": _spread([float(p["p95_ms"]) for p in per_pass]),
        "recall_at_10": summary(every)["recall_at_10"],
        "plans": {plan: sum(1 for s in passes[0] if s.plan == plan) for plan in ("exact", "hnsw")},
        "per_pass": per_pass,
    }
    print(f"{chunks} chunks: p50 {result['p50_ms']}, p95 {result['p95_ms']}, recall {result['recall_at_10']}")
    return result


async def run(services: Services, settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    began = time.perf_counter()
    conn = await asyncpg.connect(to_libpq_url(services.owner_url))
    try:
        server = {
            "postgres": await conn.fetchval("SHOW server_version"),
            "pgvector": await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'"),
            "shared_buffers": await conn.fetchval("SHOW shared_buffers"),
        }
    finally:
        await conn.close()
    by_size = [await measure_size(services, settings, args, chunks) for chunks in args.sizes]
    return {
        "date": f"{datetime.datetime.now():%Y-%m-%d %H:%M}",
        "machine": {"cpus": os.cpu_count(), **server},
        "corpus": {
            "dim": DIM,
            "native_dim": NATIVE_DIM,
            "tenants": args.tenants,
            "zipf_exponent": args.zipf,
            "topic_popularity_exponent": args.popularity,
        },
        "settings": {
            "search_ef_search": settings.search_ef_search,
            "search_exact_max_rows": settings.search_exact_max_rows,
            "search_max_scan_tuples": settings.search_max_scan_tuples,
        },
        "measured": "run_vector_query inside tenant_session as phivault_app, query embedding excluded; "
        "p50/p95: median (and range) over passes of each pass's percentile",
        "by_size": by_size,
        "seconds": round(time.perf_counter() - began, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sizes",
        type=lambda value: [int(n) for n in value.split(",")],
        default=[10_000, 50_000, 100_000],
        help="chunks per size, comma separated (default 10000,50000,100000)",
    )
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--zipf", type=float, default=1.0, help="tenant size exponent")
    parser.add_argument("--popularity", type=float, default=0.5, help="topic popularity exponent")
    parser.add_argument("--queries", type=int, default=1_000, help="queries per pass")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--maintenance-work-mem", default="1GB")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS / "growth.json")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="phivault-growth-"))
    try:
        settings = Settings(
            data_dir=data_dir,
            database_url=None,
            redis_url=None,
            app_db_password=APP_PASSWORD,
            embedded_shared_buffers=SHARED_BUFFERS,
        )
        results = asyncio.run(run(throwaway_services(settings), settings, args))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{args.out} in {results['seconds']}s")


if __name__ == "__main__":
    main()
