"""The Celery application: Redis broker, at-least-once delivery settings."""

from __future__ import annotations

from celery import Celery

celery_app = Celery("phivault")

PROC_ALIVE_TIMEOUT_SECONDS = 60.0
"""How long the worker waits for a new pool child's UP message before killing it (Celery's default is 4 s)."""


def broker_url(redis_url: str) -> str:
    """Celery spells a Redis unix socket `redis+socket://`; redis-py spells it `unix://`."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url.removeprefix("unix://")
    return redis_url


def configure_celery(redis_url: str, *, reconcile_every: float = 60, purge_every: float = 3600) -> Celery:
    url = broker_url(redis_url)
    celery_app.conf.update(
        include=["ingest.tasks"],
        beat_schedule={
            "reconcile-stale-documents": {"task": "ingest.reconcile", "schedule": reconcile_every},
            "purge-deleted-documents": {"task": "ingest.purge_deleted", "schedule": purge_every},
        },
        broker_url=url,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # A new pool child reports UP before it loads the model (see ingest.tasks), so this
        # only has to cover the fork itself, with room for a loaded machine.
        worker_proc_alive_timeout=PROC_ALIVE_TIMEOUT_SECONDS,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return celery_app
