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

Every worker also runs the reconciler itself, in a thread of its main process (see
`PeriodicReconciler`), so that work a killed worker held is sent again even where no beat runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import uuid
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from celery import Celery, Task
from celery.signals import worker_process_init, worker_ready, worker_shutdown
from redis.asyncio import Redis

from core.celery_app import celery_app, configure_celery
from core.db import Database, create_engine
from core.keys import key_provider_from_settings
from core.runtime import Services, resolve_services
from core.settings import Settings, get_settings
from core.storage import ObjectStore, object_store_from_settings
from embeddings.base import Embedder
from embeddings.model_thread import model_executor
from embeddings.sentence_transformer import limit_threads, warm_embedder, worker_threads
from ingest.maintenance import purge_deleted, reconcile
from ingest.processing import is_transient
from ingest.processing import process_document as process
from ingest.queue import PROCESS_DOCUMENT_TASK, TaskQueue, waiting_documents
from tenants import tasks as tenant_tasks  # registers the tenant lifecycle's tasks on the worker and beat

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
    redis: Redis
    _embedder: Future[Embedder] | None = field(default=None, repr=False)

    def start_loading_embedder(self) -> None:
        """Begin loading the model, and running it once, without blocking the caller (idempotent): the
        first document does not pay for the model's slow first encode."""
        if self._embedder is None:
            self._embedder = model_executor().submit(warm_embedder, self.settings)  # where it will encode

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
            redis=Redis.from_url(services.redis_url),
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
    # Back because its pool child died (or its worker, after the visibility timeout), or its own retry:
    # the earlier run holds the claim no more.
    take_over = bool((self.request.delivery_info or {}).get("redelivered")) or self.request.retries > 0
    try:
        return run(
            process(
                rt.database,
                rt.store,
                rt.get_embedder(),
                rt.settings,
                uuid.UUID(tenant_id),
                uuid.UUID(document_id),
                take_over=take_over,
            )
        )
    except Exception as exc:
        if is_transient(exc):
            delay = min(2**self.request.retries, 300)
            log.warning(
                "transient failure; retrying", extra={"document_id": document_id, "error_type": type(exc).__name__}
            )
            raise self.retry(exc=exc, countdown=delay) from exc
        raise


async def reconcile_now(database: Database, queue: TaskQueue, redis: Redis, settings: Settings) -> int:
    """One reconciler run with the configured thresholds; the broker's queue says what still waits."""
    return await reconcile(
        database,
        queue.enqueue,
        queued_after=timedelta(seconds=settings.queued_timeout_seconds),
        processing_after=timedelta(seconds=settings.processing_timeout_seconds),
        in_queue=await waiting_documents(redis),
    )


RECONCILE_TASK = "ingest.reconcile"
PURGE_TASK = "ingest.purge_deleted"


def configured_app(redis_url: str, settings: Settings) -> Celery:
    """The Celery app with this module's tasks registered and beat's schedule for the periodic ones."""
    app = configure_celery(redis_url, settings)
    app.conf.beat_schedule = {
        "reconcile-stale-documents": {"task": RECONCILE_TASK, "schedule": settings.reconcile_interval_seconds},
        "purge-deleted-documents": {"task": PURGE_TASK, "schedule": settings.purge_interval_seconds},
        **tenant_tasks.beat_schedule(settings),
    }
    return app


@celery_app.task(name=RECONCILE_TASK)
def reconcile_stale() -> int:
    rt = runtime()
    return run(reconcile_now(rt.database, rt.queue, rt.redis, rt.settings))


@celery_app.task(name=PURGE_TASK)
def purge() -> int:
    rt = runtime()
    return run(purge_deleted(rt.database, rt.store, retention=timedelta(days=rt.settings.retention_days)))


@worker_process_init.connect
def _warm_up(**_: Any) -> None:
    """Start loading the model as the child starts, with its share of the cores; the handshake does not wait."""
    rt = runtime()
    limit_threads(worker_threads(rt.settings, int(celery_app.conf.worker_concurrency or 1)))
    rt.start_loading_embedder()


class PeriodicReconciler:
    """The reconciler every `reconcile_interval_seconds`, in a thread of the worker's main process.

    The first run is at once, when the worker is ready. A run that fails (the database or the
    broker away) is logged and the next one tries again. Each run opens its own connections and
    closes them, and the process never forks a pool child during a run (`os.register_at_fork`): a
    child never inherits a lock or a connection the thread was using.
    """

    FORK_WAIT_SECONDS = 30.0
    """How long a fork waits for a run to end (a run stuck longer than this no longer holds forks back)."""
    STOP_WAIT_SECONDS = 30.0

    def __init__(self, settings: Settings, services: Services) -> None:
        self.settings = settings
        self.services = services
        self._stopping = threading.Event()
        self._running = threading.Lock()
        self._fork_held = False
        self._thread = threading.Thread(target=self._loop, name="phivault-reconciler", daemon=True)

    def start(self) -> None:
        os.register_at_fork(before=self._before_fork, after_in_parent=self._after_fork, after_in_child=self._after_fork)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(self.STOP_WAIT_SECONDS)

    def _before_fork(self) -> None:
        self._fork_held = self._running.acquire(timeout=self.FORK_WAIT_SECONDS)

    def _after_fork(self) -> None:
        if self._fork_held:
            self._fork_held = False
            self._running.release()

    def _loop(self) -> None:
        delay = 0.0
        while not self._stopping.wait(delay):
            delay = self.settings.reconcile_interval_seconds
            with self._running:
                try:
                    sent = asyncio.run(self._run())
                except Exception as exc:  # the next run tries again
                    report = log.warning if is_transient(exc) else log.error
                    report("reconciler run failed", extra={"error_type": type(exc).__name__})
                    continue
            if sent:
                log.info("reconciler sent stale documents again", extra={"count": sent})

    async def _run(self) -> int:
        database = Database(create_engine(self.services.app_url, self.settings))
        queue = TaskQueue(self.services.redis_url)
        redis = Redis.from_url(self.services.redis_url)
        try:
            return await reconcile_now(database, queue, redis, self.settings)
        finally:
            queue.close()
            await redis.aclose()
            await database.dispose()


_reconciler: PeriodicReconciler | None = None


@worker_ready.connect
def _start_reconciler(**_: Any) -> None:
    """One reconciler per worker (the main process), from the moment it is ready."""
    global _reconciler
    if _reconciler is None:
        settings = get_settings()
        _reconciler = PeriodicReconciler(settings, resolve_services(settings))
        _reconciler.start()


@worker_shutdown.connect
def _stop_reconciler(**_: Any) -> None:
    if _reconciler is not None:
        _reconciler.stop()
