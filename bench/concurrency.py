"""Concurrency benchmark (issue 13, goal 3): does one busy tenant serialise its searches?

Run by hand: `make bench-concurrency` (options: `python -m bench.concurrency --help`); never in CI.
A fresh embedded stack (bench/stack.py: the real `phivault api` and one worker) gets `--tenants`
tenants, each with the same clinical-style documents (bench/corpus.py) uploaded through the API
and processed by the worker, so every tenant holds the same few hundred chunks. Then
`POST /v1/search` (k = 10, query embedding included) from 1, 4 and 16 concurrent clients, each an
`httpx.AsyncClient` with its own connection, in three configurations:

* one_user: all clients in one tenant, with one user's token;
* user_each: all clients in one tenant, a user each;
* spread: client i in tenant i mod 16, a user each.

Each cell (configuration x clients) runs `--searches-per-cell` searches split evenly over its
clients, all released at once, and stops early at `--cell-seconds`. Rounds repeat every cell, the
order of client counts and of configurations rotating by round; throughput is searches / wall
seconds of the cell, and the ratios one-tenant / spread are taken within each round (their median
resists a round another process disturbed). The load generator runs on the same machine and
takes its share of the CPU; "API cores" is the API process's CPU seconds per wall second.

Results go to bench/results/concurrency.json and a markdown table to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

from bench.corpus import clinical_documents, clinical_questions
from bench.peers_report import spread
from bench.stack import Stack, running_stack
from bench.stats import percentile
from core.db import to_libpq_url
from core.security import mint_token

RESULTS = Path(__file__).parent / "results"
K = 10
CLIENTS = (1, 4, 16)
CONFIGS = {
    "one_user": "one tenant, one user",
    "user_each": "one tenant, a user per client",
    "spread": "clients spread over the tenants, a user each",
}
TARGET_RATIO = 0.9
TOKEN_TTL = 6 * 3600


@dataclass(frozen=True)
class Cell:
    config: str
    clients: int


@dataclass
class Measured:
    ms: list[float]
    took_ms: list[float]
    errors: dict[str, int]
    seconds: float
    api_cpu_seconds: float
    machine_busy: float  # fraction of all cores busy during the cell


def rotated(items: Sequence[Any], by: int) -> list[Any]:
    by %= len(items)
    return [*items[by:], *items[:by]]


def schedule(round_number: int) -> list[Cell]:
    """One round: every cell once; the client counts and, within each, the configurations in rotating order.

    The configurations of one client count run back to back, so the per-round ratios compare
    cells measured a few seconds apart."""
    return [
        Cell(config, clients)
        for clients in rotated(CLIENTS, round_number)
        for config in rotated(list(CONFIGS), round_number)
    ]


async def ingest(stack: Stack, tenants: int, documents: Sequence[str]) -> dict[str, Any]:
    """Create the tenants, upload the same documents to each, wait until the worker has them all."""
    settings = stack.settings
    admin = {"Authorization": "Bearer " + mint_token(settings, subject="bench", role="platform_admin")}
    tenant_ids: list[uuid.UUID] = []
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=120) as client:
        for t in range(tenants):
            response = await client.post("/v1/tenants", json={"name": f"Concurrency bench {t}"}, headers=admin)
            response.raise_for_status()
            tenant = uuid.UUID(response.json()["id"])
            tenant_ids.append(tenant)
            token = mint_token(settings, subject="bench-uploader", role="member", tenant_id=tenant)
            for i, body in enumerate(documents):
                upload = await client.post(
                    "/v1/documents",
                    files={"file": (f"note-{i}.txt", body.encode())},
                    headers={"Authorization": f"Bearer {token}"},
                )
                upload.raise_for_status()
    expected = tenants * len(documents)
    conn = await asyncpg.connect(to_libpq_url(stack.services.owner_url))
    try:
        deadline = time.monotonic() + 1800
        while (done := await conn.fetchval("SELECT count(*) FROM documents WHERE status IN ('ready', 'failed')")) < (
            expected
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {done} of {expected} documents were processed in time")
            await asyncio.sleep(0.5)
        seconds = time.perf_counter() - started
        failed = await conn.fetchval("SELECT count(*) FROM documents WHERE status = 'failed'")
        counts = await conn.fetch("SELECT tenant_id, count(*) AS n FROM document_chunks GROUP BY tenant_id")
    finally:
        await conn.close()
    per_tenant = {row["tenant_id"]: int(row["n"]) for row in counts}
    return {
        "tenant_ids": tenant_ids,
        "chunks_per_tenant": [per_tenant.get(t, 0) for t in tenant_ids],
        "failed_documents": int(failed or 0),
        "seconds": seconds,
    }


class Load:
    """The clients, their tokens per configuration, and the query texts they take in turn."""

    def __init__(self, stack: Stack, tenant_ids: Sequence[uuid.UUID], queries: Sequence[str]) -> None:
        self.clients = [httpx.AsyncClient(base_url=stack.base_url, timeout=60) for _ in range(max(CLIENTS))]
        self.queries = list(queries)
        self.next_query = 0
        settings = stack.settings

        def bearer(tenant: uuid.UUID, subject: str) -> dict[str, str]:
            token = mint_token(settings, subject=subject, role="viewer", tenant_id=tenant, ttl_seconds=TOKEN_TTL)
            return {"Authorization": f"Bearer {token}"}

        shared = bearer(tenant_ids[0], "bench-shared")
        self.headers: dict[str, list[dict[str, str]]] = {
            "one_user": [shared] * max(CLIENTS),
            "user_each": [bearer(tenant_ids[0], f"bench-client-{i}") for i in range(max(CLIENTS))],
            "spread": [bearer(tenant_ids[i % len(tenant_ids)], f"bench-client-{i}") for i in range(max(CLIENTS))],
        }
        api = [p for p in psutil.Process().children() if p.cmdline()[1:4] == ["-m", "cli", "api"]]
        if len(api) != 1:
            raise RuntimeError("could not find the API process among this process's children")
        self.api = api[0]

    def query(self) -> str:
        text = self.queries[self.next_query % len(self.queries)]
        self.next_query += 1
        return text

    async def search(self, client: int, headers: dict[str, str]) -> tuple[float, httpx.Response]:
        started = time.perf_counter()
        response = await self.clients[client].post("/v1/search", json={"query": self.query(), "k": K}, headers=headers)
        return (time.perf_counter() - started) * 1000, response

    async def run(self, cell: Cell, searches: int, seconds: float) -> Measured:
        per_client = max(1, searches // cell.clients)
        headers = self.headers[cell.config]
        go = asyncio.Event()
        deadline = 0.0
        ms: list[float] = []
        took: list[float] = []
        errors: dict[str, int] = {}

        async def client(i: int) -> None:
            await go.wait()
            for _ in range(per_client):
                if time.monotonic() > deadline:
                    errors["stopped_at_deadline"] = errors.get("stopped_at_deadline", 0) + 1
                    return
                try:
                    wall, response = await self.search(i, headers[i])
                except httpx.TransportError as error:
                    errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
                    continue
                if response.status_code != 200:
                    errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1
                    continue
                ms.append(wall)
                took.append(float(response.json()["took_ms"]))

        tasks = [asyncio.create_task(client(i)) for i in range(cell.clients)]
        await asyncio.sleep(0)  # every client is waiting on `go`
        cpu_before, machine_before = self.api.cpu_times(), psutil.cpu_times()
        started = time.perf_counter()
        deadline = time.monotonic() + seconds
        go.set()
        await asyncio.gather(*tasks)
        wall_seconds = time.perf_counter() - started
        cpu_after, machine_after = self.api.cpu_times(), psutil.cpu_times()
        total = sum(machine_after) - sum(machine_before)
        idle = (machine_after.idle + machine_after.iowait) - (machine_before.idle + machine_before.iowait)
        return Measured(
            ms=ms,
            took_ms=took,
            errors=errors,
            seconds=wall_seconds,
            api_cpu_seconds=(cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system),
            machine_busy=1.0 - idle / total if total > 0 else float("nan"),
        )

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()


def cell_row(round_number: int, cell: Cell, m: Measured, cpus: int) -> dict[str, Any]:
    rate = len(m.ms) / m.seconds
    return {
        "round": round_number,
        "config": cell.config,
        "clients": cell.clients,
        "searches": len(m.ms),
        "errors": m.errors,
        "seconds": round(m.seconds, 3),
        "searches_per_s": round(rate, 2),
        "searches_per_s_per_core": round(rate / cpus, 2),
        "p50_ms": round(percentile(m.ms, 50), 2),
        "p95_ms": round(percentile(m.ms, 95), 2),
        "server_took_p50_ms": round(percentile(m.took_ms, 50), 2),
        "api_cores": round(m.api_cpu_seconds / m.seconds, 2),
        "machine_busy_cores": round(m.machine_busy * cpus, 2),
    }


def summarise(cells: list[dict[str, Any]], rounds: int, cpus: int) -> dict[str, Any]:
    """Per configuration and client count: the spread across rounds; the one-tenant / spread ratios per round."""
    by: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in cells:
        by.setdefault((row["config"], row["clients"]), []).append(row)
    summary: dict[str, dict[str, Any]] = {}
    for (config, clients), rows in sorted(by.items(), key=lambda item: (item[0][1], list(CONFIGS).index(item[0][0]))):
        rates = [r["searches_per_s"] for r in rows]
        summary.setdefault(config, {})[str(clients)] = {
            "searches_per_s": spread(rates),
            "searches_per_s_per_core": round(percentile(rates, 50) / cpus, 2),
            "p50_ms": spread([r["p50_ms"] for r in rows]),
            "p95_ms": spread([r["p95_ms"] for r in rows]),
            "server_took_p50_ms": round(percentile([r["server_took_p50_ms"] for r in rows], 50), 2),
            "api_cores": round(percentile([r["api_cores"] for r in rows], 50), 2),
            "machine_busy_cores": round(percentile([r["machine_busy_cores"] for r in rows], 50), 2),
            "errors": sum(sum(r["errors"].values()) for r in rows),
        }
    rate = {(r["round"], r["config"], r["clients"]): r["searches_per_s"] for r in cells}
    ratios: dict[str, dict[str, Any]] = {}
    for clients in CLIENTS[1:]:
        for config in ("one_user", "user_each"):
            per_round = [
                round(rate[(n, config, clients)] / rate[(n, "spread", clients)], 3) for n in range(1, rounds + 1)
            ]
            ratios.setdefault(str(clients), {})[f"{config}_to_spread"] = {
                "per_round": per_round,
                "median": round(percentile(per_round, 50), 3),
            }
    top = str(max(CLIENTS))
    worst = min(ratios[top]["one_user_to_spread"]["median"], ratios[top]["user_each_to_spread"]["median"])
    return {
        "by_config": summary,
        "ratios_one_tenant_to_spread": ratios,
        "goal": {
            "statement": f"{top} clients in one tenant reach at least {TARGET_RATIO}x the throughput of {top} "
            f"clients spread over {top} tenants (median of the per-round ratios; the worse of one_user and "
            "user_each)",
            "target": TARGET_RATIO,
            "measured": worst,
            "met": worst >= TARGET_RATIO,
        },
    }


def markdown(results: dict[str, Any]) -> str:
    corpus = results["corpus"]
    lines = [
        f"Concurrent `POST /v1/search` (k = {K}, embedding included), {results['date']}: {results['rounds']} rounds, "
        f"{results['searches_per_cell']} searches per cell, {corpus['tenants']} tenants of "
        f"{min(corpus['chunks_per_tenant'])}-{max(corpus['chunks_per_tenant'])} chunks, "
        f"{results['machine']['cpus']} cores.",
        "",
        "Per round figures: the median across rounds (min-max).",
        "",
        "| configuration | clients | searches/s | searches/s per core | p50 ms | p95 ms | server took p50 ms | "
        "API cores | machine busy cores |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for clients in CLIENTS:
        for config, label in CONFIGS.items():
            s = results["by_config"][config][str(clients)]
            lines.append(
                f"| {label} | {clients} | {_spread(s['searches_per_s'])} | {s['searches_per_s_per_core']:.1f} | "
                f"{_spread(s['p50_ms'])} | {_spread(s['p95_ms'])} | {s['server_took_p50_ms']:.1f} | "
                f"{s['api_cores']:.2f} | {s['machine_busy_cores']:.2f} |"
            )
    lines += ["", "| throughput ratio, per round | clients | per round | median |", "|---|---|---|---|"]
    for clients, pair in results["ratios_one_tenant_to_spread"].items():
        for name, ratio in pair.items():
            label = CONFIGS[name.removesuffix("_to_spread")]
            rounds = ", ".join(f"{r:.2f}" for r in ratio["per_round"])
            lines.append(f"| {label} / spread | {clients} | {rounds} | {ratio['median']:.2f} |")
    goal = results["goal"]
    first = results["first_search"]
    lines += [
        "",
        f"Goal: {goal['statement']}: {goal['measured']:.2f} against {goal['target']} — "
        f"{'met' if goal['met'] else 'not met'}.",
        f"First search of the API process (after /readyz and the ingestion): {first['wall_ms']:.1f} ms "
        f"(server took {first['took_ms']:.1f} ms).",
    ]
    return "\n".join(lines)


def _spread(values: Sequence[float]) -> str:
    low, median, high = values
    return f"{median:.1f} ({low:.1f}-{high:.1f})"


async def run(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    cpus = os.cpu_count() or 1
    documents = clinical_documents(args.documents_per_tenant, seed=args.seed)
    print(f"ingesting {args.documents_per_tenant} documents into each of {args.tenants} tenants", flush=True)
    ingested = await ingest(stack, args.tenants, documents)
    print(
        f"{sum(ingested['chunks_per_tenant'])} chunks ready in {ingested['seconds']:.0f}s "
        f"({ingested['chunks_per_tenant'][0]} per tenant)",
        flush=True,
    )
    load = Load(stack, ingested["tenant_ids"], clinical_questions(args.queries, seed=args.seed + 1))
    try:
        wall, response = await load.search(0, load.headers["one_user"][0])
        response.raise_for_status()
        first = {"wall_ms": round(wall, 2), "took_ms": float(response.json()["took_ms"])}
        for config in CONFIGS:  # every user provisioned, every connection open, before anything is timed
            await load.run(Cell(config, max(CLIENTS)), max(CLIENTS) * 2, args.cell_seconds)
        cells: list[dict[str, Any]] = []
        load_before = os.getloadavg()
        for n in range(1, args.rounds + 1):
            for cell in schedule(n - 1):
                cells.append(cell_row(n, cell, await load.run(cell, args.searches_per_cell, args.cell_seconds), cpus))
            print(
                f"round {n}/{args.rounds}: "
                + ", ".join(
                    f"{r['config']}x{r['clients']} {r['searches_per_s']:.0f}/s" for r in cells[-len(CLIENTS) * 3 :]
                ),
                flush=True,
            )
    finally:
        await load.close()
    return {
        "date": datetime.date.today().isoformat(),
        "machine": {
            "cpus": cpus,
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_before_rounds": [round(x, 2) for x in load_before],
            "load_average_after_rounds": [round(x, 2) for x in os.getloadavg()],
        },
        "rounds": args.rounds,
        "searches_per_cell": args.searches_per_cell,
        "cell_seconds_limit": args.cell_seconds,
        "k": K,
        "configs": CONFIGS,
        "corpus": {
            "tenants": args.tenants,
            "documents_per_tenant": len(documents),
            "chunks_per_tenant": ingested["chunks_per_tenant"],
            "failed_documents": ingested["failed_documents"],
            "ingest_seconds_upload_to_ready": round(ingested["seconds"], 1),
            "generator": "bench/corpus.py clinical_documents (the same documents in every tenant)",
            "distinct_query_texts": args.queries,
        },
        "first_search": first,
        **summarise(cells, args.rounds, cpus),
        "cells": cells,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=16)
    parser.add_argument("--documents-per-tenant", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--searches-per-cell", type=int, default=96, help="split evenly over the cell's clients")
    parser.add_argument("--cell-seconds", type=float, default=60.0, help="a cell stops there even if unfinished")
    parser.add_argument("--queries", type=int, default=600, help="distinct query texts, taken in turn")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.tenants < max(CLIENTS):
        parser.error(f"--tenants must be at least {max(CLIENTS)}")
    started = time.perf_counter()
    with running_stack() as stack:
        results = asyncio.run(run(stack, args))
    results["seconds"] = round(time.perf_counter() - started, 1)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "concurrency.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(markdown(results))
    print(f"\n{out} in {results['seconds']}s")


if __name__ == "__main__":
    main()
