"""Worker metrics: task durations and outcomes, documents processed, chunks embedded.

Tasks run in Celery's pool children; `phivault worker` serves the metrics from its main
process (see `ingest.worker_metrics`) in prometheus-client's multiprocess mode: every
process writes its values to files in `PROMETHEUS_MULTIPROC_DIR` and a scrape adds them
up. Only counters and histograms are used, so the files of a child that has died still
count and need no clean-up. Outside that mode (the API process, the CLI, tests) these
metrics are plain in-memory values that nothing serves.

Tasks are measured through Celery's task signals, so task bodies stay as they are. No
label carries tenant data: task names, outcomes and document statuses only.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from celery import Task, states
from celery.signals import task_postrun, task_prerun
from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app, values
from prometheus_client.multiprocess import MultiProcessCollector

from core.errors import error_body
from core.metrics_auth import require_metrics_token
from core.security import AuthError
from core.settings import Settings
from ingest.queue import PROCESS_DOCUMENT_TASK

METRICS_PATH = "/metrics"
DOCUMENT_OUTCOMES = ("ready", "failed", "skipped")
"""What `ingest.process_document` returns; other tasks succeed as `success`."""

TASK_DURATION = Histogram(
    "phivault_worker_task_duration_seconds",
    "Time a worker spent running a task, by task name.",
    ["task"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
)
TASKS = Counter(
    "phivault_worker_tasks",
    "Tasks run, by task name and outcome: ready, failed or skipped (process_document), success (other "
    "tasks), retried (a transient failure, sent again) or error.",
    ["task", "outcome"],
)
DOCUMENTS_PROCESSED = Counter(
    "phivault_worker_documents_processed",
    "Documents whose processing ended, by the status it left them in (ready or failed).",
    ["status"],
)
CHUNKS_EMBEDDED = Counter("phivault_worker_chunks_embedded", "Chunks embedded by the worker.")

# Series that exist from the start, so `rate()` and alerts see a zero before the first event.
for _outcome in (*DOCUMENT_OUTCOMES, "retried", "error"):
    TASKS.labels(task=PROCESS_DOCUMENT_TASK, outcome=_outcome)
for _status in ("ready", "failed"):
    DOCUMENTS_PROCESSED.labels(status=_status)

_started: dict[str, float] = {}


def task_outcome(task_name: str, state: str | None, retval: Any) -> str:
    if state == states.RETRY:
        return "retried"
    if state != states.SUCCESS:
        return "error"
    if task_name == PROCESS_DOCUMENT_TASK and retval in DOCUMENT_OUTCOMES:
        return str(retval)
    return "success"


@task_prerun.connect
def _task_started(task_id: str, **_: Any) -> None:
    _started[task_id] = time.perf_counter()


@task_postrun.connect
def _task_finished(task_id: str, task: Task[Any, Any], retval: Any = None, state: str | None = None, **_: Any) -> None:
    started = _started.pop(task_id, None)
    if started is not None:
        TASK_DURATION.labels(task=task.name).observe(time.perf_counter() - started)
    outcome = task_outcome(task.name, state, retval)
    TASKS.labels(task=task.name, outcome=outcome).inc()
    if task.name == PROCESS_DOCUMENT_TASK and outcome in ("ready", "failed"):
        DOCUMENTS_PROCESSED.labels(status=outcome).inc()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log: one line per scrape is noise."""


def _error(start_response: StartResponse, status: str, code: str, message: str) -> Iterable[bytes]:
    """The service's error shape; the worker has no request id of its own, so each refusal gets one."""
    body = json.dumps(error_body(code, message, str(uuid.uuid4()))).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def metrics_app(registry: CollectorRegistry, settings: Settings) -> WSGIApplication:
    """prometheus-client's WSGI app at `/metrics` only, behind the metrics token when one is set."""
    exposition = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != METRICS_PATH:
            return _error(start_response, "404 Not Found", "not_found", "Not Found")
        try:
            require_metrics_token(settings.metrics_token, environ.get("HTTP_AUTHORIZATION"))
        except AuthError as exc:
            return _error(start_response, "401 Unauthorized", exc.reason, exc.message)
        return exposition(environ, start_response)  # type: ignore[no-any-return]

    return app


def start_metrics_server(settings: Settings, port: int) -> WSGIServer:
    """Serve every worker process's metrics from this one on `settings.listen_host:port` (a daemon thread).

    Must run after `PROMETHEUS_MULTIPROC_DIR` was set and before the pool forks.
    """
    if values.ValueClass is values.MutexValue:
        raise RuntimeError("prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set")
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    host = settings.listen_host
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]

    class Server(ThreadingMixIn, WSGIServer):
        address_family = family
        daemon_threads = True

    server = make_server(host, port, metrics_app(registry, settings), Server, _QuietHandler)
    threading.Thread(target=server.serve_forever, name="phivault-metrics", daemon=True).start()
    return server
