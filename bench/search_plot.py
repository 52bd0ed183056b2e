"""The search benchmark's latency/recall plot, drawn by hand as SVG (matplotlib is not a dependency)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def svg_plot(sweep: list[dict[str, Any]], path: Path) -> None:
    """Recall@10 against p95 latency for each ef_search: all queries, and the HNSW-plan ones."""
    width, height, left, right, top, bottom = 640, 420, 70, 30, 40, 60
    series = [
        ("all queries (chosen plan)", "p95_ms", "recall_at_10", "#1f77b4"),
        ("HNSW-plan queries", "hnsw_p95_ms", "hnsw_recall_at_10", "#d62728"),
    ]
    xs = [float(row[key]) for row in sweep for _, key, _, _ in series]
    ys = [float(row[key]) for row in sweep for _, _, key, _ in series]
    x_max = max(xs) * 1.15
    y_min = min(0.9, float(np.floor(min(ys) * 100)) / 100 - 0.01)

    def px(x: float) -> float:
        return left + (width - left - right) * x / x_max

    def py(y: float) -> float:
        return top + (height - top - bottom) * (1.0 - (y - y_min) / (1.0 - y_min))

    base, mid_y = height - bottom, (top + height - bottom) / 2
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="14">'
        "Recall@10 vs p95 latency by hnsw.ef_search</text>",
        f'<line x1="{left}" y1="{base}" x2="{width - right}" y2="{base}" stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{base}" stroke="black"/>',
        f'<text x="{(left + width - right) / 2}" y="{height - 18}" text-anchor="middle">'
        "p95 latency in the database (ms)</text>",
        f'<text x="18" y="{mid_y}" text-anchor="middle" transform="rotate(-90 18 {mid_y})">recall@10</text>',
    ]
    for i in range(6):
        x = x_max * i / 5
        parts.append(f'<line x1="{px(x):.1f}" y1="{base}" x2="{px(x):.1f}" y2="{base + 5}" stroke="black"/>')
        parts.append(f'<text x="{px(x):.1f}" y="{base + 18}" text-anchor="middle">{x:.1f}</text>')
        y = y_min + (1.0 - y_min) * i / 5
        parts.append(f'<line x1="{left - 5}" y1="{py(y):.1f}" x2="{left}" y2="{py(y):.1f}" stroke="black"/>')
        parts.append(f'<text x="{left - 8}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.3f}</text>')
        parts.append(f'<line x1="{left}" y1="{py(y):.1f}" x2="{width - right}" y2="{py(y):.1f}" stroke="#eee"/>')
    for n, (label, x_key, y_key, colour) in enumerate(series):
        points = [(px(float(row[x_key])), py(float(row[y_key])), row["ef_search"]) for row in sweep]
        path_d = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y, _) in enumerate(points))
        parts.append(f'<path d="{path_d}" fill="none" stroke="{colour}" stroke-opacity="0.4"/>')
        for i, (x, y, ef) in enumerate(points):
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>')
            label_y = y - 6 if i % 2 == 0 else y + 16  # alternate above and below: close points stay legible
            parts.append(f'<text x="{x + 6:.1f}" y="{label_y:.1f}" fill="{colour}">ef {ef}</text>')
        parts.append(f'<circle cx="{width - 220}" cy="{height - bottom - 40 + 16 * n}" r="4" fill="{colour}"/>')
        parts.append(f'<text x="{width - 210}" y="{height - bottom - 36 + 16 * n}">{label}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")
