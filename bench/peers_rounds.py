"""The contenders of bench/peers.py and the interleaved rounds that time them.

A contender answers a batch of queries and returns each one's milliseconds and chunk ids:
PHIVault over HTTP (`PHIVaultClient`), or a peer in the runner process (`peer_contender`).
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx
import numpy as np
import numpy.typing as npt

from bench.peers_env import PeerRunner
from bench.stack import Stack
from bench.stats import percentile
from bench.zipf_corpus import Floats
from core.security import mint_token

K = 10


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
        print(
            f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {percentile(samples[n].by_round[-1], 50):.1f}" for n in names)
        )
    return samples


def exact_truth(vectors: Floats, ids: Sequence[str], rows: npt.NDArray[np.int64], query: Floats) -> list[str]:
    scores = vectors[rows] @ query
    order = np.argsort(-scores, kind="stable")[:K]
    return [ids[int(rows[i])] for i in order]


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
