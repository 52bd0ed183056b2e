"""Cold start (goal 4): the first search after `/readyz` against the ones after it, and `phivault search`
through a running API against the same command loading the model itself.

Run by hand: `make bench-cold-start` (options: `python -m bench.cold_start --help`). One stack (bench/stack.py):
a tenant with a few ready documents whose user is known before the API's first search (an upload provisions it,
as any user's first request does), then, right after that, its first search and `--warm` more, in one sequence.
Then `--cli-runs` pairs of `python -m cli search`, through the API and with `--local`, interleaved, each timed
as a whole process (start-up included: that is what an operator waits for).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.corpus import clinical_documents, clinical_questions
from bench.stack import Stack, running_stack
from bench.stats import percentile
from core.security import mint_token

RESULTS = Path(__file__).parent / "results"


async def _ready_tenant(stack: Stack, documents: int) -> tuple[uuid.UUID, dict[str, str]]:
    platform = {"Authorization": f"Bearer {mint_token(stack.settings, subject='bench', role='platform_admin')}"}
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as client:
        created = await client.post("/v1/tenants", json={"name": "Cold start"}, headers=platform)
        created.raise_for_status()
        tenant_id = uuid.UUID(created.json()["id"])
        token = mint_token(stack.settings, subject="clinician", role="member", tenant_id=tenant_id)
        headers = {"Authorization": f"Bearer {token}"}
        ids = []
        for i, body in enumerate(clinical_documents(documents, seed=11)):
            response = await client.post("/v1/documents", files={"file": (f"note-{i}.txt", body)}, headers=headers)
            response.raise_for_status()
            ids.append(response.json()["id"])
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            states = [(await client.get(f"/v1/documents/{d}", headers=headers)).json()["status"] for d in ids]
            if all(s in ("ready", "failed") for s in states):
                return tenant_id, headers
            await asyncio.sleep(0.5)
    raise RuntimeError("documents did not become ready")


async def _searches(stack: Stack, headers: dict[str, str], warm: int) -> dict[str, Any]:
    """The API process's first search, then `warm` more, timed one after another (wall, client side)."""
    queries = clinical_questions(warm + 1, seed=5)
    walls, took = [], []
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as client:
        for query in queries:
            started = time.perf_counter()
            response = await client.post("/v1/search", json={"query": query, "k": 10}, headers=headers)
            walls.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            took.append(float(response.json()["took_ms"]))
    rest = walls[1:]
    return {
        "first_wall_ms": round(walls[0], 2),
        "first_took_ms": took[0],
        "warm_searches": len(rest),
        "warm_p50_ms": round(percentile(rest, 50), 2),
        "warm_p95_ms": round(percentile(rest, 95), 2),
        "hundredth_wall_ms": round(walls[min(99, len(walls) - 1)], 2),
        "first_over_warm_p50": round(walls[0] / percentile(rest, 50), 3),
    }


def _cli_search(stack: Stack, tenant_id: uuid.UUID, port: str, local: bool) -> float:
    command = [sys.executable, "-m", "cli", "search", "follow-up plan", "--tenant", str(tenant_id)]
    env = dict(stack.env, PHIVAULT_API_PORT=port)
    started = time.perf_counter()
    done = subprocess.run([*command, *(["--local"] if local else [])], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"phivault search failed: {done.stderr[-500:]}")
    expected = "with the local model" if local else "with the running API"
    if expected not in done.stderr:
        raise RuntimeError(f"phivault search did not say {expected!r}: {done.stderr[-500:]}")
    return seconds


def run(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    tenant_id, headers = asyncio.run(_ready_tenant(stack, args.documents))
    first = asyncio.run(_searches(stack, headers, args.warm))
    port = stack.base_url.rsplit(":", 1)[1]
    api_s: list[float] = []
    local_s: list[float] = []
    for n in range(args.cli_runs):  # interleaved, the order alternating from one pair to the next
        for local in (False, True) if n % 2 == 0 else (True, False):
            (local_s if local else api_s).append(_cli_search(stack, tenant_id, port, local))
    ratios = [a / b for a, b in zip(api_s, local_s, strict=True)]
    return {
        "date": datetime.date.today().isoformat(),
        "documents": args.documents,
        "first_search": first,
        "cli_search": {
            "runs": args.cli_runs,
            "via_api_s": [round(s, 3) for s in api_s],
            "local_model_s": [round(s, 3) for s in local_s],
            "via_api_p50_s": round(percentile(api_s, 50), 3),
            "local_model_p50_s": round(percentile(local_s, 50), 3),
            "ratio_per_pair": [round(r, 3) for r in ratios],
            "ratio_median": round(percentile(ratios, 50), 3),
            "measured": "whole `python -m cli search` processes, interleaved pairs; via the API the command "
            "imports neither torch nor sentence_transformers (tests/cli/test_search_via_api.py)",
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--documents", type=int, default=5)
    parser.add_argument("--warm", type=int, default=120, help="searches after the first")
    parser.add_argument("--cli-runs", type=int, default=5, help="pairs of phivault search runs")
    parser.add_argument("--out", type=Path, default=RESULTS / "cold_start.json")
    args = parser.parse_args()
    with running_stack() as stack:
        results = run(stack, args)
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
