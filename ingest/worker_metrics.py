"""The worker's metrics endpoint, around `phivault worker` (see `ingest.metrics` for what it serves).

prometheus-client chooses between in-memory and file-backed values once, when it is
first imported, so this module sets `PROMETHEUS_MULTIPROC_DIR` before it imports
`ingest.metrics`, and `phivault worker` enters `serve_worker_metrics` before Celery
loads the tasks and forks the pool (the children inherit the variable).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from core.settings import Settings

log = logging.getLogger(__name__)

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def multiprocess_directory() -> Iterator[str]:
    """A new, empty directory as `PROMETHEUS_MULTIPROC_DIR` for this worker, removed afterwards.

    New for every start, so no values from an earlier run (or another worker) are added in.
    """
    previous = os.environ.get(MULTIPROC_DIR_ENV)
    directory = tempfile.mkdtemp(prefix="phivault-worker-metrics-")
    os.environ[MULTIPROC_DIR_ENV] = directory
    try:
        yield directory
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_DIR_ENV, None)
        else:
            os.environ[MULTIPROC_DIR_ENV] = previous
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def serve_worker_metrics(settings: Settings) -> Iterator[None]:
    """Serve the worker's metrics on `settings.worker_metrics_port` while the block runs (nothing when unset)."""
    port = settings.worker_metrics_port
    if port is None:
        yield
        return
    with multiprocess_directory() as directory:
        from ingest.metrics import start_metrics_server  # only now: see the module docstring

        server = start_metrics_server(settings, port)
        log.info("serving worker metrics", extra={"host": settings.listen_host, "port": port, "directory": directory})
        try:
            yield
        finally:
            server.shutdown()
            server.server_close()
