"""Ingestion benchmark: documents end to end (upload → ready) against raw embedding throughput.

Run by hand: `make bench-ingest` (options: `python -m bench.ingest --help`). One stack (bench/stack.py)
serves every run in turn, each in a tenant of its own: ~4 KB, ~24 KB and ~200 KB documents (goal 5 of
issue 13), then 10 and 100 documents of ~24 KB (goal 6, cost growth). Each run's raw figure embeds
exactly the chunk texts the pipeline stored for it, in the same batch size, in this process, with the
worker idle. While documents of `--progress-min-bytes` or more process, `GET /v1/documents/{id}` is
polled for the one being worked on and the distinct `progress` values seen are counted. The memory
(RSS and USS) of the API and worker processes is read after a warm-up document and after the runs;
then 1 MB uploads are timed one at a time. Figures go to bench/results/ingest.json (or `--out`).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.stack import Stack, running_stack
from bench.stats import percentile
from core.db import create_engine
from core.security import mint_token
from core.settings import Settings
from embeddings.base import Embedder
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
DONE_POLL_SECONDS = 0.1
PROGRESS_POLL_SECONDS = 0.25
MB = 2**20


def clinical_text(rng: random.Random, size_bytes: int) -> bytes:
    parts: list[str] = [f"Document {uuid.uuid4()}"]
    while sum(len(p) + 1 for p in parts) < size_bytes:
        topic = rng.choice(TOPICS)
        parts.append(" ".join(rng.choice(SENTENCES).format(t=topic) for _ in range(rng.randint(3, 7))))
    return "\n\n".join(parts).encode()[:size_bytes]


@dataclass(frozen=True)
class RunSpec:
    goal: str  # "size" (goal 5) or "count" (goal 6)
    documents: int
    doc_bytes: int
    watch_progress: bool


class ProgressWatch:
    """What `GET /v1/documents/{id}` said while the documents processed, one request per poll."""

    def __init__(self, ids: list[str]) -> None:
        self.pending = list(ids)
        self.seen: dict[str, list[int]] = {}
        self.requests = 0

    async def poll(self, client: httpx.AsyncClient, headers: dict[str, str]) -> None:
        """Ask about the oldest document not yet seen finished (the worker takes them in upload order)."""
        while self.pending:
            self.requests += 1
            response = await client.get(f"/v1/documents/{self.pending[0]}", headers=headers)
            response.raise_for_status()
            body = response.json()
            if body.get("progress"):
                values = self.seen.setdefault(self.pending[0], [])
                embedded = int(body["progress"]["chunks_embedded"])
                if not values or values[-1] != embedded:
                    values.append(embedded)
            if body["status"] not in ("ready", "failed"):
                return
            self.pending.pop(0)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "distinct_values": sum(len(set(v)) for v in self.seen.values()),
            "documents_with_progress": len(self.seen),
            "documents_seen_rising": sum(1 for v in self.seen.values() if len(set(v)) > 1),
            "never_decreased": all(v == sorted(v) for v in self.seen.values()),
        }


def stack_memory() -> dict[str, Any]:
    """RSS and USS (memory unique to the process) of the API and worker processes, pool children included.

    The stack's processes are this process's children (`python -m cli api|worker`, bench/stack.py)."""
    roles: dict[str, list[psutil.Process]] = {}
    for child in psutil.Process().children():
        try:
            command = child.cmdline()
            if command[1:3] == ["-m", "cli"] and command[3] in ("api", "worker"):
                roles.setdefault(command[3], []).extend([child, *child.children(recursive=True)])
        except (psutil.NoSuchProcess, IndexError):
            continue
    memory: dict[str, Any] = {}
    for role, processes in roles.items():
        rss, uss = [], []
        for process in processes:
            try:
                info = process.memory_full_info()
            except psutil.NoSuchProcess:
                continue
            rss.append(round(info.rss / MB, 1))
            uss.append(round(info.uss / MB, 1))
        memory[role] = {
            "processes": len(rss),
            "rss_mb": round(sum(rss), 1),
            "uss_mb": round(sum(uss), 1),
            "rss_mb_per_process": rss,
        }
    return memory


class Bench:
    def __init__(self, stack: Stack, client: httpx.AsyncClient, engine: AsyncEngine, embedder: Embedder) -> None:
        self.settings: Settings = stack.settings
        self.client = client
        self.engine = engine
        self.embedder = embedder
        self.rng = random.Random(42)
        self.platform = {"Authorization": "Bearer " + mint_token(self.settings, subject="bench", role="platform_admin")}

    async def tenant(self, name: str) -> tuple[uuid.UUID, dict[str, str]]:
        response = await self.client.post("/v1/tenants", json={"name": name}, headers=self.platform)
        response.raise_for_status()
        tenant = uuid.UUID(response.json()["id"])
        token = mint_token(self.settings, subject="bench", role="member", tenant_id=tenant)
        return tenant, {"Authorization": f"Bearer {token}"}

    async def _count(self, sql: str, tenant: uuid.UUID) -> int:
        async with self.engine.connect() as conn:
            return int(await conn.scalar(text(sql), {"t": tenant}) or 0)

    async def wait_finished(
        self, tenant: uuid.UUID, documents: int, headers: dict[str, str], watch: ProgressWatch | None
    ) -> None:
        """Completion is read straight from the database (one cheap query), so watching does not
        compete with the worker for the CPU the way polling every document over HTTP would."""
        finished = "SELECT count(*) FROM documents WHERE tenant_id = :t AND status IN ('ready', 'failed')"
        while True:
            if await self._count(finished, tenant) >= documents:
                return
            if watch is not None:
                await watch.poll(self.client, headers)
            await asyncio.sleep(PROGRESS_POLL_SECONDS if watch is not None else DONE_POLL_SECONDS)

    async def run(self, spec: RunSpec, label: str) -> dict[str, Any]:
        tenant, headers = await self.tenant(label)

        # 1. Pipeline throughput: upload the documents, wait until all are ready.
        started = time.perf_counter()
        ids = []
        for i in range(spec.documents):
            body = clinical_text(self.rng, spec.doc_bytes)
            response = await self.client.post("/v1/documents", files={"file": (f"doc{i}.txt", body)}, headers=headers)
            response.raise_for_status()
            ids.append(response.json()["id"])
        watch = ProgressWatch(ids) if spec.watch_progress else None
        await self.wait_finished(tenant, len(ids), headers, watch)
        pipeline_seconds = time.perf_counter() - started

        async with self.engine.connect() as conn:
            chunks = "SELECT text FROM document_chunks WHERE tenant_id = :t ORDER BY document_id, chunk_index"
            texts = list((await conn.execute(text(chunks), {"t": tenant})).scalars())
        failed = await self._count("SELECT count(*) FROM documents WHERE tenant_id = :t AND status = 'failed'", tenant)

        # 2. Raw embedding throughput on exactly those chunks, same model, same batch size.
        self.embedder.embed_documents(texts[:8])  # warm-up
        raw_started = time.perf_counter()
        self.embedder.embed_documents(texts)
        raw_seconds = time.perf_counter() - raw_started

        pipeline_chunks_per_s = len(texts) / pipeline_seconds
        raw_chunks_per_s = len(texts) / raw_seconds
        result: dict[str, Any] = {
            "goal": spec.goal,
            "doc_bytes": spec.doc_bytes,
            "documents": spec.documents,
            "failed_documents": failed,
            "chunks": len(texts),
            "pipeline_seconds": round(pipeline_seconds, 2),
            "documents_per_s": round(spec.documents / pipeline_seconds, 3),
            "pipeline_chunks_per_s": round(pipeline_chunks_per_s, 2),
            "raw_embedding_chunks_per_s": round(raw_chunks_per_s, 2),
            "ratio_pipeline_to_raw": round(pipeline_chunks_per_s / raw_chunks_per_s, 3),
        }
        if watch is not None:
            result["progress"] = watch.summary()
        print(f"{label}: {result}", flush=True)
        return result

    async def warm_up(self) -> None:
        """One small document through the pipeline, so the memory read afterwards is the warm figure."""
        tenant, headers = await self.tenant("Bench warm-up")
        body = clinical_text(self.rng, 4_000)
        response = await self.client.post("/v1/documents", files={"file": ("warm.txt", body)}, headers=headers)
        response.raise_for_status()
        await self.wait_finished(tenant, 1, headers, None)

    async def upload_latencies(self, uploads: int) -> list[float]:
        """1 MB uploads (local storage), one at a time, in a tenant of their own."""
        _, headers = await self.tenant("Bench uploads")
        latencies = []
        for _ in range(uploads):
            body = clinical_text(self.rng, 1024 * 1024)
            t0 = time.perf_counter()
            response = await self.client.post("/v1/documents", files={"file": ("big.txt", body)}, headers=headers)
            latencies.append((time.perf_counter() - t0) * 1000)
            response.raise_for_status()
        return latencies


async def run(stack: Stack, specs: list[RunSpec], latency_uploads: int, worker_concurrency: int) -> dict[str, Any]:
    settings = stack.settings
    embedder = get_embedder(settings)
    engine = create_engine(stack.services.owner_url, settings)
    try:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=120) as client:
            bench = Bench(stack, client, engine, embedder)
            await bench.warm_up()
            memory = {"after_warm_up": stack_memory()}
            runs = [await bench.run(spec, f"Bench {spec.goal} {n}") for n, spec in enumerate(specs)]
            memory["after_runs"] = stack_memory()
            latencies = await bench.upload_latencies(latency_uploads) if latency_uploads else []
    finally:
        await engine.dispose()
    return {
        "date": f"{datetime.datetime.now():%Y-%m-%d %H:%M}",
        "machine": {"cpus": os.cpu_count()},
        "settings": {
            "embedding_model": settings.embedding_model,
            "embedding_batch_size": settings.embedding_batch_size,
            "chunk_tokens": settings.chunk_tokens,
            "worker_concurrency": worker_concurrency,
        },
        "runs": runs,
        "memory": memory,
        "upload_1mb": {
            "uploads": len(latencies),
            "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
            "p95_ms": round(percentile(latencies, 95), 1) if latencies else None,
        },
    }


def parse_runs(value: str) -> list[tuple[int, int]]:
    """`BYTES:DOCUMENTS,...`, e.g. `4000:120,24000:40`."""
    pairs = []
    for item in value.split(","):
        size, _, documents = item.partition(":")
        pairs.append((int(size), int(documents)))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sizes",
        type=parse_runs,
        default=parse_runs("4000:120,24000:40,200000:6"),
        help="goal 5 runs as BYTES:DOCUMENTS,... (default 4000:120,24000:40,200000:6: ~20-45 s of embedding each)",
    )
    parser.add_argument("--counts", default="10,100", help="goal 6 runs: documents per run, comma separated")
    parser.add_argument("--count-bytes", type=int, default=24_000, help="document size of the --counts runs")
    parser.add_argument("--progress-min-bytes", type=int, default=100_000, help="watch progress from this size up")
    parser.add_argument("--latency-uploads", type=int, default=40, help="1 MB uploads timed one at a time")
    parser.add_argument("--worker-concurrency", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "ingest.json")
    args = parser.parse_args()
    counts = [int(n) for n in args.counts.split(",") if n]
    specs = [RunSpec("size", n, size, size >= args.progress_min_bytes) for size, n in args.sizes]
    specs += [RunSpec("count", n, args.count_bytes, args.count_bytes >= args.progress_min_bytes) for n in counts]
    with running_stack(args.worker_concurrency) as stack:
        results = asyncio.run(run(stack, specs, args.latency_uploads, args.worker_concurrency))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{args.out}: memory {results['memory']}, 1 MB uploads {results['upload_1mb']}")


if __name__ == "__main__":
    main()
