"""Small SVG charts drawn by hand for bench/report.py (matplotlib is not a dependency): lines over
categories and grouped bars, each with a legend and an optional dashed reference line (a goal).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from pathlib import Path

WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 680, 420, 70, 200, 44, 64
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")


@dataclass(frozen=True)
class Series:
    label: str
    values: list[float | None]  # one per category; None where not measured
    dashed: bool = False


@dataclass(frozen=True)
class Reference:
    label: str
    value: float


def _nice_max(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above `value`."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in (1.0, 2.0, 2.5, 5.0, 10.0) if step * power >= value)


class _Frame:
    def __init__(self, title: str, x_label: str, y_label: str, categories: list[str], y_max: float) -> None:
        self.categories = categories
        self.y_max = _nice_max(y_max * 1.05)
        self.base = HEIGHT - BOTTOM
        self.plot_width = WIDTH - LEFT - RIGHT
        mid_y = (TOP + self.base) / 2
        self.parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            'font-family="sans-serif" font-size="12">',
            f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
            f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="24" text-anchor="middle" font-size="14">{escape(title)}</text>',
            f'<text x="{LEFT + self.plot_width / 2}" y="{HEIGHT - 18}" text-anchor="middle">{escape(x_label)}</text>',
            f'<text x="18" y="{mid_y}" text-anchor="middle" transform="rotate(-90 18 {mid_y})">'
            f"{escape(y_label)}</text>",
        ]
        for i in range(6):
            value = self.y_max * i / 5
            y = self.y(value)
            self.parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#eee"/>')
            self.parts.append(f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{value:g}</text>')
        self.parts.append(f'<line x1="{LEFT}" y1="{self.base}" x2="{WIDTH - RIGHT}" y2="{self.base}" stroke="black"/>')
        self.parts.append(f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{self.base}" stroke="black"/>')
        for i, name in enumerate(categories):
            self.parts.append(
                f'<text x="{self.x(i):.1f}" y="{self.base + 18}" text-anchor="middle">{escape(name)}</text>'
            )
        self.legend = 0

    def x(self, i: int) -> float:
        return LEFT + self.plot_width * (i + 0.5) / len(self.categories)

    def y(self, value: float) -> float:
        return self.base - (self.base - TOP) * value / self.y_max

    def key(self, label: str, colour: str, dashed: bool = False) -> None:
        y = TOP + 10 + 18 * self.legend
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        x0 = WIDTH - RIGHT + 14
        self.parts.append(
            f'<line x1="{x0}" y1="{y}" x2="{x0 + 22}" y2="{y}" stroke="{colour}" stroke-width="3"{dash}/>'
        )
        self.parts.append(f'<text x="{x0 + 28}" y="{y + 4}">{escape(label)}</text>')
        self.legend += 1

    def reference(self, reference: Reference | None) -> None:
        if reference is None:
            return
        y = self.y(reference.value)
        self.parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="black" stroke-dasharray="3 3"/>'
        )
        self.key(reference.label, "black", dashed=True)

    def write(self, path: Path) -> None:
        path.write_text("\n".join([*self.parts, "</svg>"]) + "\n")


def _top(series: list[Series], reference: Reference | None) -> float:
    values = [v for s in series for v in s.values if v is not None]
    return max([*values, reference.value if reference else 0.0])


def line_chart(
    path: Path,
    *,
    title: str,
    x_label: str,
    y_label: str,
    categories: list[str],
    series: list[Series],
    reference: Reference | None = None,
) -> None:
    frame = _Frame(title, x_label, y_label, categories, _top(series, reference))
    for n, s in enumerate(series):
        colour = COLOURS[n % len(COLOURS)]
        points = [(frame.x(i), frame.y(v)) for i, v in enumerate(s.values) if v is not None]
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        path_d = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(points))
        frame.parts.append(f'<path d="{path_d}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        for x, y in points:
            frame.parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}"/>')
        frame.key(s.label, colour, s.dashed)
    frame.reference(reference)
    frame.write(path)


def bar_chart(
    path: Path,
    *,
    title: str,
    x_label: str,
    y_label: str,
    categories: list[str],
    series: list[Series],
    reference: Reference | None = None,
) -> None:
    """One group of bars per category, one bar per series, its value written above it."""
    frame = _Frame(title, x_label, y_label, categories, _top(series, reference))
    group = frame.plot_width / len(categories) * 0.8
    bar = group / len(series)
    for n, s in enumerate(series):
        colour = COLOURS[n % len(COLOURS)]
        for i, value in enumerate(s.values):
            if value is None:
                continue
            x = frame.x(i) - group / 2 + n * bar
            y = frame.y(value)
            frame.parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" height="{frame.base - y:.1f}" fill="{colour}"/>'
            )
            frame.parts.append(
                f'<text x="{x + (bar - 2) / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle" font-size="10">'
                f"{value:.1f}</text>"
            )
        frame.key(s.label, colour)
    frame.reference(reference)
    frame.write(path)
