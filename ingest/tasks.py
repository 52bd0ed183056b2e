"""Celery tasks: thin wrappers that run the async services on the worker process's own loop.

Each worker process has one event loop, one engine and one embedder, created on
first use after the fork (prefork children must not share the parent's sockets).
Delivery is at least once (`acks_late`, `reject_on_worker_lost`): the services
are idempotent, so a redelivered message does no harm.

The model loads in a background thread of the pool child, started when the child
starts: Celery's liveness handshake (the child's UP message) never waits on it, so a
child that replaces a killed one comes up at once, and its first task waits for the
load instead. Loading in the parent before the fork would let children share the
weights, but torch's OpenMP pool is not fork-safe once used.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from celery import Task
from celery.signals import worker_process_init, worker_ready

from core.celery_app import celery_app
from core.db import Database, create_engine
from core.keys import key_provider_from_settings
from core.runtime import resolve_services
from core.settings import Settings, get_settings
from core.storage import ObjectStore, object_store_from_settings
from embeddings.base import Embedder
from embeddings.sentence_transformer import get_embedder
from ingest.maintenance import purge_deleted, reconcile
from ingest.processing import is_transient
from ingest.processing import process_document as process
from ingest.queue import PROCESS_DOCUMENT_TASK, TaskQueue

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class WorkerRuntime:
    pid: int
    loop: asyncio.AbstractEventLoop
    settings: Settings
    database: Database
    store: ObjectStore
    queue: TaskQueue
    _embedder: Future[Embedder] | None = field(default=None, repr=False)

    def start_loading_embedder(self) -> None:
        """Begin loading the model without blocking the caller (idempotent)."""
        if self._embedder is None:
            loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="phivault-model")
            self._embedder = loader.submit(get_embedder, self.settings)
            loader.shutdown(wait=False)  # the thread ends once the load is done

    def get_embedder(self) -> Embedder:
        """The loaded model; waits for a load in progress (and raises what the load raised)."""
        self.start_loading_embedder()
        assert self._embedder is not None
        return self._embedder.result()


_runtime: WorkerRuntime | None = None


def runtime() -> WorkerRuntime:
    global _runtime
    if _runtime is None or _runtime.pid != os.getpid():
        settings = get_settings()
        services = resolve_services(settings)
        keys = key_provider_from_settings(settings)
        _runtime = WorkerRuntime(
            pid=os.getpid(),
            loop=asyncio.new_event_loop(),
            settings=settings,
            database=Database(create_engine(services.app_url, settings)),
            store=object_store_from_settings(settings, keys),
            queue=TaskQueue(services.redis_url),
        )
    return _runtime


def run(coro: Coroutine[Any, Any, T]) -> T:
    return runtime().loop.run_until_complete(coro)


@celery_app.task(
    name=PROCESS_DOCUMENT_TASK,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=8,
)
def process_document(self: Task[Any, Any], tenant_id: str, document_id: str) -> str:
    rt = runtime()
    try:
        return run(
            process(rt.database, rt.store, rt.get_embedder(), rt.settings, uuid.UUID(tenant_id), uuid.UUID(document_id))
        )
    except Exception as exc:
        if is_transient(exc):
            delay = min(2**self.request.retries, 300)
            log.warning(
                "transient failure; retrying", extra={"document_id": document_id, "error_type": type(exc).__name__}
            )
            raise self.retry(exc=exc, countdown=delay) from exc
        raise


@celery_app.task(name="ingest.reconcile")
def reconcile_stale() -> int:
    rt = runtime()
    return run(
        reconcile(
            rt.database,
            rt.queue.enqueue,
            queued_after=timedelta(seconds=rt.settings.queued_timeout_seconds),
            processing_after=timedelta(seconds=rt.settings.processing_timeout_seconds),
        )
    )


@celery_app.task(name="ingest.purge_deleted")
def purge() -> int:
    rt = runtime()
    return run(purge_deleted(rt.database, rt.store, retention=timedelta(days=rt.settings.retention_days)))


@worker_process_init.connect
def _warm_up(**_: Any) -> None:
    """Start loading the model as the child starts; the handshake does not wait for it."""
    runtime().start_loading_embedder()


@worker_ready.connect
def _reconcile_at_start(**_: Any) -> None:
    """Work orphaned by a crashed worker is sent again as soon as a worker is up."""
    reconcile_stale.delay()
