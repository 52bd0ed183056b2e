"""Untimed diagnostics of bench/peers.py: what each PHIVault search sends (from PostgreSQL's statement
log), EXPLAIN ANALYZE of its search statement, and the cost of the query vector's SQL literal.
"""

from __future__ import annotations

import asyncio
import datetime
import re
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from sqlalchemy import text

from bench.peers_rounds import K, PHIVaultClient, Query
from bench.stack import Stack
from bench.stats import counted_latency
from bench.zipf_corpus import NATIVE_DIM
from core.db import Database, create_engine, to_libpq_url
from models.chunk import EMBEDDING_DIM
from search.repository import (
    Plan,
    Scope,
    _vector_literal,
    plan_for_tenant,
    query_literal,
    vector_sql,
)

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
        "client_wall": counted_latency(walls),
        "server_took_ms": counted_latency(took),
        "transaction_span": counted_latency(spans),
        "database_time_in_transaction": counted_latency(db_ms),
        "longest_idle_gap_in_transaction": counted_latency(longest_gap),
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
            scope = Scope(tenant_id=tenant, model_id=settings.embedding_model, dims=NATIVE_DIM)
            plan: Plan = await plan_for_tenant(
                session,
                scope,
                exact_max_rows=settings.search_exact_max_rows,
                ef_search=max(settings.search_ef_search, K),
                max_scan_tuples=settings.search_max_scan_tuples,
            )
            params: dict[str, Any] = {"query_vector": query_literal(scope, vector)}
            sql = vector_sql(scope, K, plan, params)
            rows = await session.execute(text("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql), params)
            lines = [str(row[0]) for row in rows]
    finally:
        await database.dispose()
    return {"plan_chosen": plan, "tenant_rows": int(count or 0), "plan": lines}


def vector_literal_cost(vector: list[float]) -> dict[str, float]:
    """Client-side cost of turning the padded query vector into SQL text, as search.repository does."""
    padded = vector + [0.0] * (EMBEDDING_DIM - len(vector))
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
