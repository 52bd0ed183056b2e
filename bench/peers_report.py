"""What bench/peers.py reports: per-contender figures with their spread across rounds, and a markdown table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.peers_rounds import K, Samples
from bench.stats import counted_latency, percentile
from bench.zipf_corpus import BANDS

CONTENDERS = ("phivault", "langchain", "llama", "embed")
LABELS = {
    "phivault": "PHIVault `POST /v1/search` over HTTP",
    "langchain": "langchain-postgres `PGVector.similarity_search`, in-process",
    "llama": "llama-index `PGVectorStore`, in-process",
    "embed": "the query embedding alone",
}


def spread(values: Sequence[float], digits: int = 2) -> list[float]:
    """[min, median, max] across rounds: the median resists the rounds another process disturbed."""
    return [round(min(values), digits), round(percentile(values, 50), digits), round(max(values), digits)]


def summarise(samples: dict[str, Samples]) -> dict[str, Any]:
    """Per contender: latency over all timed queries, its spread across rounds, ratios to PHIVault."""
    base = samples["phivault"]
    out: dict[str, Any] = {}
    for name, s in samples.items():
        round_p50 = [percentile(ms, 50) for ms in s.by_round]
        round_p95 = [percentile(ms, 95) for ms in s.by_round]
        ratio_p50 = [percentile(ms, 50) / percentile(b, 50) for ms, b in zip(s.by_round, base.by_round, strict=True)]
        ratio_p95 = [percentile(ms, 95) / percentile(b, 95) for ms, b in zip(s.by_round, base.by_round, strict=True)]
        entry: dict[str, Any] = {
            **counted_latency(s.ms),
            "round_p50_ms": spread(round_p50),
            "round_p95_ms": spread(round_p95),
            "ratio_p50_to_phivault": round(percentile(s.ms, 50) / percentile(base.ms, 50), 3),
            "ratio_p95_to_phivault": round(percentile(s.ms, 95) / percentile(base.ms, 95), 3),
            "round_ratio_p50_to_phivault": spread(ratio_p50, 3),
            "round_ratio_p95_to_phivault": spread(ratio_p95, 3),
        }
        if s.recall:
            entry["recall_at_10"] = round(float(np.mean(s.recall)), 4)
            entry["short_results"] = s.short
        if s.bands:
            entry["by_tenant_rows"] = {
                band: {
                    **counted_latency([t for t, _ in s.bands[band]]),
                    "recall_at_10": round(float(np.mean([r for _, r in s.bands[band]])), 4),
                }
                for band in BANDS
                if s.bands.get(band)
            }
        out[name] = entry
    return out


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
