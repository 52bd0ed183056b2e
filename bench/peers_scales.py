"""The two scales of bench/peers.py: each loads the same chunks into PHIVault and the peers, makes the
queries with their exact top k, runs the interleaved rounds and the diagnostics.

small: clinical-style documents through the API and the real worker, one tenant; 100k: the
synthetic Zipf-sized corpus (bench/zipf_corpus.py) over many tenants, loaded directly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np

from bench.corpus import clinical_documents, clinical_questions
from bench.load import load_corpus
from bench.peers_diagnostics import phivault_explain, statement_trace, vector_literal_cost
from bench.peers_env import PeerRunner
from bench.peers_report import summarise
from bench.peers_rounds import Contender, K, PHIVaultClient, Query, exact_truth, interleaved, peer_contender
from bench.stack import Stack
from bench.stats import counted_latency
from bench.zipf_corpus import allocate, make_corpus, size_band, unit, zipf_sizes
from core.db import to_libpq_url
from core.keys import key_provider_from_settings
from core.migrate import ensure_search_indexes
from core.security import mint_token
from models.chunk import EMBEDDING_DIM

NATIVE_DIM = 384  # all-MiniLM-L6-v2


async def ingest_documents(stack: Stack, documents: Sequence[str]) -> dict[str, Any]:
    """Upload the documents as one tenant's member and wait until the worker has them all ready."""
    settings = stack.settings
    platform_admin = {"Authorization": "Bearer " + mint_token(settings, subject="bench", role="platform_admin")}
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=120) as client:
        response = await client.post("/v1/tenants", json={"name": "Peers bench"}, headers=platform_admin)
        response.raise_for_status()
        tenant = uuid.UUID(response.json()["id"])
        member = {"Authorization": "Bearer " + mint_token(settings, subject="bench", role="member", tenant_id=tenant)}
        started = time.perf_counter()
        for i, body in enumerate(documents):
            upload = await client.post(
                "/v1/documents", files={"file": (f"note-{i}.txt", body.encode())}, headers=member
            )
            upload.raise_for_status()
    conn = await asyncpg.connect(to_libpq_url(stack.services.owner_url))
    try:
        deadline = time.monotonic() + 1800
        while True:
            done = await conn.fetchval(
                "SELECT count(*) FROM documents WHERE tenant_id = $1 AND status IN ('ready', 'failed')", tenant
            )
            if done == len(documents):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {done} of {len(documents)} documents were processed in time")
            await asyncio.sleep(0.2)
        seconds = time.perf_counter() - started
        failed = await conn.fetchval(
            "SELECT count(*) FROM documents WHERE tenant_id = $1 AND status = 'failed'", tenant
        )
        rows = await conn.fetch(
            "SELECT id, text, embedding::text AS embedding FROM document_chunks WHERE tenant_id = $1 "
            "ORDER BY document_id, chunk_index",
            tenant,
        )
    finally:
        await conn.close()
    vectors = np.asarray([json.loads(r["embedding"])[:NATIVE_DIM] for r in rows], dtype=np.float32)
    return {
        "tenant": tenant,
        "ids": [str(r["id"]) for r in rows],
        "texts": [r["text"] for r in rows],
        "vectors": vectors,
        "seconds": seconds,
        "failed": int(failed or 0),
    }


def run_small(stack: Stack, runner: PeerRunner, args: argparse.Namespace) -> dict[str, Any]:
    documents = clinical_documents(args.documents, seed=args.seed)
    print(f"ingesting {len(documents)} documents through the API and the worker", flush=True)
    ingested = asyncio.run(ingest_documents(stack, documents))
    ids, texts, vectors = ingested["ids"], ingested["texts"], ingested["vectors"]
    print(f"{len(ids)} chunks ready in {ingested['seconds']:.1f}s; loading the peers", flush=True)
    with tempfile.TemporaryDirectory(prefix="phivault-peers-") as scratch:
        chunks = Path(scratch) / "chunks.json"
        chunks.write_text(json.dumps([{"id": i, "text": t, "tenant": ""} for i, t in zip(ids, texts, strict=True)]))
        loaded = runner.call({"op": "load", "chunks": str(chunks), "hnsw": False})

    needed = args.warmup + args.rounds * args.per_round
    texts_q = clinical_questions(min(needed, 600), seed=args.seed + 1)
    query_vectors = unit(np.asarray(runner.call({"op": "embed", "texts": texts_q})["vectors"], dtype=np.float32))
    rows = np.arange(len(ids), dtype=np.int64)
    queries = [Query(t, 0, exact_truth(vectors, ids, rows, v)) for t, v in zip(texts_q, query_vectors, strict=True)]
    client = PHIVaultClient(stack, [ingested["tenant"]])
    try:
        first_ms, _, first_took = client.search(queries[0])
        contenders: dict[str, Contender] = {
            "phivault": client.contender,
            "langchain": peer_contender(runner, "langchain", None),
            "llama": peer_contender(runner, "llama", None),
            "embed": peer_contender(runner, "embed", None),
        }
        samples = interleaved(contenders, queries, rounds=args.rounds, per_round=args.per_round, warmup=args.warmup)
        diagnostics: dict[str, Any] = {
            "first_search_after_ingestion": {"wall_ms": round(first_ms, 2), "took_ms": first_took},
            "server_took_ms": counted_latency(client.took),
            "http_floor_healthz": counted_latency(client.floor),
            "query_vector_literal": vector_literal_cost(query_vectors[0].tolist()),
            "phivault_explain": asyncio.run(
                phivault_explain(
                    stack, ingested["tenant"], query_vectors[0].tolist() + [0.0] * (EMBEDDING_DIM - NATIVE_DIM)
                )
            ),
            "peers_explain": runner.call({"op": "explain", "text": queries[0].text, "k": K}),
        }
        if args.trace_searches:
            diagnostics["statement_trace"] = statement_trace(stack, client, queries[: args.trace_searches])
    finally:
        client.close()
    return {
        "corpus": {
            "documents": len(documents),
            "failed_documents": ingested["failed"],
            "chunks": len(ids),
            "tenants": 1,
            "document_chars_total": sum(len(d) for d in documents),
            "ingest_seconds_upload_to_ready": round(ingested["seconds"], 2),
            "generator": "bench/corpus.py clinical_documents",
        },
        "peers_load": loaded,
        "queries": {"distinct_texts": len(texts_q), "warmup_per_contender": args.warmup},
        "contenders": summarise(samples),
        "diagnostics": diagnostics,
    }


def run_100k(stack: Stack, runner: PeerRunner, args: argparse.Namespace) -> dict[str, Any]:
    settings = stack.settings
    sizes = zipf_sizes(args.chunks, args.tenants, exponent=1.0)
    corpus = make_corpus(sizes, seed=args.seed, native_dim=NATIVE_DIM)
    padded = corpus.embeddings
    native = np.ascontiguousarray(padded[:, :NATIVE_DIM])
    print(f"corpus: {corpus.rows} chunks over {len(sizes)} tenants ({sizes[0]}..{sizes[-1]} rows)", flush=True)

    async def load_phivault() -> float:
        conn = await asyncpg.connect(to_libpq_url(stack.services.owner_url))
        try:
            await conn.execute("SET maintenance_work_mem = '1GB'")
            started = time.perf_counter()
            await load_corpus(
                conn, corpus, model_id=settings.embedding_model, keys=key_provider_from_settings(settings)
            )
            # What `phivault migrate` does once the data is there: the large tenants' own indexes.
            await ensure_search_indexes(stack.services.owner_url, settings.search_tenant_index_min_rows)
            return time.perf_counter() - started
        finally:
            await conn.close()

    phivault_load = asyncio.run(load_phivault())
    print(f"PHIVault loaded (COPY, HNSW builds) in {phivault_load:.0f}s; loading the peers", flush=True)
    ids = [str(c) for c in corpus.chunk_ids]
    tenant_keys = [str(t) for t in corpus.tenant_ids]
    tenant_of_row = np.empty(corpus.rows, dtype=np.int64)
    for t, rows in enumerate(corpus.tenant_rows):
        tenant_of_row[rows] = t
    with tempfile.TemporaryDirectory(prefix="phivault-peers-") as scratch:
        chunks = Path(scratch) / "chunks.json"
        chunks.write_text(
            json.dumps(
                [
                    {"id": ids[row], "text": f"chunk {row}", "tenant": tenant_keys[int(tenant_of_row[row])]}
                    for row in range(corpus.rows)
                ]
            )
        )
        vectors_file = Path(scratch) / "vectors.npy"
        np.save(vectors_file, native)
        loaded = runner.call(
            {"op": "load", "chunks": str(chunks), "vectors": str(vectors_file), "hnsw": True, "filter_key": "tenant"}
        )
    print(f"peers loaded: {loaded}", flush=True)

    needed = args.warmup + args.rounds * args.per_round
    texts_q = clinical_questions(min(needed, 600), seed=args.seed + 1)
    query_vectors = unit(np.asarray(runner.call({"op": "embed", "texts": texts_q})["vectors"], dtype=np.float32))
    counts = allocate(sizes, len(texts_q))
    tenants = [t for t, count in enumerate(counts) for _ in range(count)]
    random.Random(args.seed).shuffle(tenants)
    queries = [
        Query(t, tenant, exact_truth(native, ids, corpus.tenant_rows[tenant], v))
        for t, v, tenant in zip(texts_q, query_vectors, tenants, strict=False)
    ]
    client = PHIVaultClient(stack, corpus.tenant_ids)
    try:
        contenders: dict[str, Contender] = {
            "phivault": client.contender,
            "langchain": peer_contender(runner, "langchain", tenant_keys),
            "llama": peer_contender(runner, "llama", tenant_keys),
            "embed": peer_contender(runner, "embed", tenant_keys),
        }
        samples = interleaved(
            contenders,
            queries,
            rounds=args.rounds,
            per_round=args.per_round,
            warmup=args.warmup,
            band_of=lambda q: size_band(sizes[q.tenant]),
        )
        small, large = len(sizes) - 1, 0
        diagnostics: dict[str, Any] = {
            "server_took_ms": counted_latency(client.took),
            "http_floor_healthz": counted_latency(client.floor),
            "peers_explain_smallest_tenant": runner.call(
                {"op": "explain", "text": texts_q[0], "tenant": tenant_keys[small], "k": K}
            ),
            "peers_explain_largest_tenant": runner.call(
                {"op": "explain", "text": texts_q[0], "tenant": tenant_keys[large], "k": K}
            ),
        }
        for name, tenant in (("smallest", small), ("largest", large)):
            diagnostics[f"phivault_explain_{name}_tenant"] = asyncio.run(
                phivault_explain(stack, corpus.tenant_ids[tenant], padded[0].tolist())
            )
    finally:
        client.close()
    return {
        "corpus": {
            "chunks": corpus.rows,
            "tenants": len(sizes),
            "largest_tenant_rows": sizes[0],
            "smallest_tenant_rows": sizes[-1],
            "vectors": f"bench/zipf_corpus.py make_corpus at {NATIVE_DIM} dimensions; "
            f"PHIVault stores them padded to {EMBEDDING_DIM}",
            "phivault_load_seconds": round(phivault_load, 1),
        },
        "peers_load": loaded,
        "peers_index": {
            "hnsw_m": 16,
            "hnsw_ef_construction": 64,
            "langchain_ef_search": "40 (pgvector default)",
            "llama_ef_search": 100,
            "filter": "metadata key `tenant`",
        },
        "queries": {"distinct_texts": len(texts_q), "warmup_per_contender": args.warmup},
        "contenders": summarise(samples),
        "diagnostics": diagnostics,
    }
