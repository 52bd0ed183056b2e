"""Celery tasks of the tenant lifecycle: thin wrappers over `tenants.offboarding` and `tenants.rotation`.

Each worker process builds its own database, key provider and store on first use after the fork (like
`ingest.tasks.runtime`), and runs the services on its own event loop. Both tasks are idempotent and resumable, so
Celery's at-least-once delivery does no harm: the purge picks up where a crash left it, and a rotation continues
from its cursor.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from celery import Celery

from core.celery_app import broker_url, celery_app
from core.db import Database, create_engine
from core.keys import KeyProvider, key_provider_from_settings
from core.runtime import resolve_services
from core.settings import Settings, get_settings
from core.storage import ObjectStore, object_store_from_settings
from tenants.offboarding import purge_due_tenants
from tenants.rotation import run_tenant_rotation

PURGE_DUE_TASK = "tenants.purge_due"
ROTATE_KEY_TASK = "tenants.rotate_key"

T = TypeVar("T")


@dataclass
class LifecycleRuntime:
    pid: int
    loop: asyncio.AbstractEventLoop
    database: Database
    keys: KeyProvider
    store: ObjectStore


_runtime: LifecycleRuntime | None = None


def runtime() -> LifecycleRuntime:
    global _runtime
    if _runtime is None or _runtime.pid != os.getpid():
        settings = get_settings()
        keys = key_provider_from_settings(settings)
        _runtime = LifecycleRuntime(
            pid=os.getpid(),
            loop=asyncio.new_event_loop(),
            database=Database(create_engine(resolve_services(settings, need_redis=False).app_url, settings)),
            keys=keys,
            store=object_store_from_settings(settings, keys),
        )
    return _runtime


def run(coro: Coroutine[Any, Any, T]) -> T:
    return runtime().loop.run_until_complete(coro)


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """The periodic entries of this module, for the beat schedule (`ingest.tasks.configured_app`)."""
    return {"purge-offboarded-tenants": {"task": PURGE_DUE_TASK, "schedule": settings.purge_interval_seconds}}


@celery_app.task(name=PURGE_DUE_TASK)
def purge_due() -> int:
    rt = runtime()
    return len(run(purge_due_tenants(rt.database, rt.keys, rt.store)))


@celery_app.task(name=ROTATE_KEY_TASK, acks_late=True, reject_on_worker_lost=True)
def rotate_key(tenant_id: str) -> int:
    rt = runtime()
    return run(run_tenant_rotation(rt.database, rt.keys, rt.store, uuid.UUID(tenant_id))).migrated


def send_rotation(redis_url: str, tenant_id: uuid.UUID) -> None:
    """Send `tenants.rotate_key` for the tenant (from the command line, after the rotation started)."""
    producer = Celery("phivault-producer", broker=broker_url(redis_url), set_as_current=False)
    producer.conf.update(task_serializer="json", broker_connection_retry_on_startup=False)
    try:
        producer.send_task(ROTATE_KEY_TASK, args=[str(tenant_id)])
    finally:
        producer.close()
