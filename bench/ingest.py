"""Ingestion benchmark: N documents end to end (upload → ready) against raw embedding throughput.

Run by hand: `make bench-ingest` (options: `python -m bench.ingest --help`). Both figures come
from the same run, the same model and the same chunks: the raw figure embeds exactly the chunk
texts the pipeline stored, in the same batch size, in this process, with the worker idle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import text

from bench.stack import Stack, running_stack
from core.db import create_engine
from core.security import mint_token
from embeddings.sentence_transformer import get_embedder

RESULTS = Path(__file__).parent / "results"
TOPICS = [
    "hypertension", "type 2 diabetes", "asthma", "chronic kidney disease", "heart failure", "pneumonia",
    "atrial fibrillation", "migraine", "osteoarthritis", "hypothyroidism", "sepsis", "depression",
]  # fmt: skip
SENTENCES = [
    "The patient reports {t} symptoms for several weeks.",
    "Examination findings are consistent with {t}.",
    "Management of {t} was reviewed with the patient and family.",
    "Laboratory results were discussed in the context of {t}.",
    "Follow-up for {t} is arranged in the outpatient clinic.",
    "Medication for {t} was adjusted and side effects explained.",
]


def clinical_text(rng: random.Random, size_bytes: int) -> bytes:
    parts: list[str] = [f"Document {uuid.uuid4()}"]
    while sum(len(p) + 1 for p in parts) < size_bytes:
        topic = rng.choice(TOPICS)
        parts.append(" ".join(rng.choice(SENTENCES).format(t=topic) for _ in range(rng.randint(3, 7))))
    return "\n\n".join(parts).encode()[:size_bytes]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(stack: Stack, documents: int, doc_bytes: int, latency_uploads: int) -> dict[str, float | int]:
    rng = random.Random(42)
    settings = stack.settings
    platform = {"Authorization": "Bearer " + mint_token(settings, subject="bench", role="platform_admin")}
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=120) as client:
        tenant = (await client.post("/v1/tenants", json={"name": "Bench"}, headers=platform)).json()["id"]
        headers = {
            "Authorization": "Bearer "
            + mint_token(settings, subject="bench", role="member", tenant_id=uuid.UUID(tenant))
        }

        # 1. Pipeline throughput: upload N documents, wait until all are ready.
        started = time.perf_counter()
        ids = []
        for i in range(documents):
            response = await client.post(
                "/v1/documents", files={"file": (f"doc{i}.txt", clinical_text(rng, doc_bytes))}, headers=headers
            )
            response.raise_for_status()
            ids.append(response.json()["id"])
        engine = create_engine(stack.services.owner_url, settings)
        # Completion is read straight from the database (one cheap query), so watching does not
        # compete with the worker for the CPU the way polling every document over HTTP would.
        while True:
            async with engine.connect() as conn:
                done = await conn.scalar(
                    text("SELECT count(*) FROM documents WHERE tenant_id = :t AND status IN ('ready', 'failed')"),
                    {"t": uuid.UUID(tenant)},
                )
            if done == len(ids):
                break
            await asyncio.sleep(0.1)
        pipeline_seconds = time.perf_counter() - started

        async with engine.connect() as conn:
            texts = list(
                (
                    await conn.execute(
                        text("SELECT text FROM document_chunks WHERE tenant_id = :t ORDER BY document_id, chunk_index"),
                        {"t": uuid.UUID(tenant)},
                    )
                ).scalars()
            )
            failed = await conn.scalar(
                text("SELECT count(*) FROM documents WHERE tenant_id = :t AND status = 'failed'"),
                {"t": uuid.UUID(tenant)},
            )
        await engine.dispose()

        # 2. Raw embedding throughput on exactly those chunks, same model, same batch size.
        embedder = get_embedder(settings)
        embedder.embed_documents(texts[:8])  # warm-up
        raw_started = time.perf_counter()
        embedder.embed_documents(texts)
        raw_seconds = time.perf_counter() - raw_started

        # 3. Upload latency for 1 MB files (local storage), measured one at a time.
        latencies = []
        for _ in range(latency_uploads):
            body = clinical_text(rng, 1024 * 1024)
            t0 = time.perf_counter()
            response = await client.post("/v1/documents", files={"file": ("big.txt", body)}, headers=headers)
            latencies.append((time.perf_counter() - t0) * 1000)
            response.raise_for_status()

    pipeline_chunks_per_s = len(texts) / pipeline_seconds
    raw_chunks_per_s = len(texts) / raw_seconds
    return {
        "documents": documents,
        "failed_documents": int(failed or 0),
        "chunks": len(texts),
        "pipeline_seconds": round(pipeline_seconds, 2),
        "documents_per_s": round(documents / pipeline_seconds, 3),
        "pipeline_chunks_per_s": round(pipeline_chunks_per_s, 2),
        "raw_embedding_chunks_per_s": round(raw_chunks_per_s, 2),
        "ratio_pipeline_to_raw": round(pipeline_chunks_per_s / raw_chunks_per_s, 3),
        "upload_1mb_p50_ms": round(percentile(latencies, 0.5), 1),
        "upload_1mb_p95_ms": round(percentile(latencies, 0.95), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--documents", type=int, default=40)
    parser.add_argument("--doc-bytes", type=int, default=24_000)
    parser.add_argument("--latency-uploads", type=int, default=40)
    args = parser.parse_args()
    with running_stack() as stack:
        results = asyncio.run(run(stack, args.documents, args.doc_bytes, args.latency_uploads))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps(results, indent=2) + "\n")
    for key, value in results.items():
        print(f"{key:>28}: {value}")


if __name__ == "__main__":
    main()
