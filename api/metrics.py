"""The API's Prometheus metrics: request latency, documents by status, queue depth, search latency.

Each app has its own registry, so several apps in one process (the tests) never share or
collide. No label carries tenant data: requests are labelled by route template (never
the path, so no ids), by a method from a fixed list and by status code; documents by
status only; searches by plan and mode.

The documents and queue gauges are read from PostgreSQL and Redis when scraped, each
within `SCRAPE_TIMEOUT_SECONDS`. A source that fails or is slow leaves its series out of
that scrape and sets `phivault_metrics_source_up{source}` to 0, so the scrape itself
still answers promptly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import FastAPI
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator.metrics import Info
from redis.asyncio import Redis

from core.db import Database
from ingest.queue import QUEUE, queue_depth
from ingest.repository import document_status_counts
from models.document import DOCUMENT_STATUSES
from search.metrics import SearchMetrics

log = logging.getLogger(__name__)

T = TypeVar("T")

METRICS_PATH = "/metrics"
SCRAPE_TIMEOUT_SECONDS = 2.0
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Any other method a client sends is labelled `other`, so it cannot add series."""
UNMATCHED = "unmatched"


def route_template(info: Info) -> str:
    """The matched route's template, or `unmatched`.

    Read from the route the router chose (`scope["route"]`, also set for a 405), never from
    the path: the instrumentator reports the raw path of a request it would redirect for a
    trailing slash, and that path can hold an id.
    """
    return str(getattr(info.request.scope.get("route"), "path", None) or UNMATCHED)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        self._requests = Histogram(
            "phivault_http_request_duration_seconds",
            "HTTP request latency, by route template, method and status code (/metrics itself excluded).",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self._documents = Gauge(
            "phivault_documents",
            "Live (not deleted) documents of all tenants, by processing status; read when scraped.",
            ["status"],
            registry=self.registry,
        )
        self._queue_depth = Gauge(
            "phivault_queue_depth",
            "Messages waiting in the worker queue in Redis; read when scraped.",
            ["queue"],
            registry=self.registry,
        )
        self._source_up = Gauge(
            "phivault_metrics_source_up",
            "Whether this scrape could read the source (database, broker) within the scrape timeout.",
            ["source"],
            registry=self.registry,
        )
        self.search = SearchMetrics(self.registry)

    def instrument(self, app: FastAPI) -> None:
        """Time every request except scrapes (prometheus-fastapi-instrumentator's middleware)."""
        Instrumentator(
            should_group_status_codes=False,
            excluded_handlers=[f"^{METRICS_PATH}$"],
            registry=self.registry,
        ).add(self._observe_request).instrument(app)

    def _observe_request(self, info: Info) -> None:
        method = info.method if info.method in METHODS else "other"
        self._requests.labels(route=route_template(info), method=method, status=info.modified_status).observe(
            info.modified_duration
        )

    async def render(self, database: Database, redis: Redis) -> bytes:
        """Read the scrape-time gauges, then the whole registry in Prometheus text format."""
        counts, depth = await asyncio.gather(
            _bounded("database", _document_counts(database)), _bounded("broker", queue_depth(redis))
        )
        self._documents.clear()
        if counts is not None:
            for status in sorted({*DOCUMENT_STATUSES, *counts}):
                self._documents.labels(status=status).set(counts.get(status, 0))
        self._queue_depth.clear()
        if depth is not None:
            self._queue_depth.labels(queue=QUEUE).set(depth)
        self._source_up.labels(source="database").set(counts is not None)
        self._source_up.labels(source="broker").set(depth is not None)
        return generate_latest(self.registry)


async def _document_counts(database: Database) -> dict[str, int]:
    async with database.engine.connect() as conn:
        return await document_status_counts(conn)


async def _bounded(source: str, work: Awaitable[T]) -> T | None:
    """`work`'s result, or None when it fails or outlasts the scrape timeout (logged by type only)."""
    try:
        return await asyncio.wait_for(work, SCRAPE_TIMEOUT_SECONDS)
    except Exception as exc:  # a scrape reports a missing source, it does not fail
        log.warning("metrics source unavailable", extra={"source": source, "error_type": type(exc).__name__})
        return None
