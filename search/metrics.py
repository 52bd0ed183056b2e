"""Search latency, by plan and mode: labels that say how a search ran, never what it asked."""

from __future__ import annotations

from typing import get_args

from prometheus_client import CollectorRegistry, Histogram

from search.repository import Plan
from search.schemas import SearchRequest

MODES: tuple[str, ...] = get_args(SearchRequest.model_fields["mode"].annotation)


class SearchMetrics:
    """A histogram in the registry it is given (the API app's); every plan and mode is shown from the start."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._duration = Histogram(
            "phivault_search_duration_seconds",
            "Search latency (embedding the query, retrieval and the audit write), by plan and mode.",
            ["plan", "mode"],
            registry=registry,
        )
        for plan in get_args(Plan):
            for mode in MODES:
                self._duration.labels(plan=plan, mode=mode)

    def observe(self, plan: Plan, mode: str, seconds: float) -> None:
        self._duration.labels(plan=plan, mode=mode).observe(seconds)
