"""The Celery application: Redis broker, at-least-once delivery settings.

Core names no task: the tasks register themselves on `celery_app` when `ingest.tasks` is imported,
which the edge that starts a worker or beat does (`cli.services`)."""

from __future__ import annotations

from celery import Celery

from core.settings import Settings

celery_app = Celery("phivault")

PROC_ALIVE_TIMEOUT_SECONDS = 60.0
"""How long the worker waits for a new pool child's UP message before killing it (Celery's default is 4 s)."""


def broker_url(redis_url: str) -> str:
    """Celery spells a Redis unix socket `redis+socket://`; redis-py spells it `unix://`."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url.removeprefix("unix://")
    return redis_url


def configure_celery(redis_url: str, settings: Settings) -> Celery:
    url = broker_url(redis_url)
    celery_app.conf.update(
        broker_url=url,
        broker_transport_options={"visibility_timeout": settings.broker_visibility_timeout_seconds},
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        # A message is acknowledged once its task is done, and a message whose pool child died goes
        # back to the queue. The worker takes one message per pool process (an executing one holds its
        # place until acknowledged), so a killed worker loses at most `--concurrency` messages; the
        # reconciler sends those documents again.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # A new pool child reports UP before it loads the model (see ingest.tasks), so this
        # only has to cover the fork itself, with room for a loaded machine.
        worker_proc_alive_timeout=PROC_ALIVE_TIMEOUT_SECONDS,
        broker_connection_retry_on_startup=True,
        # However long Redis is away, the worker keeps reconnecting (Celery's default gives up after
        # 100 tries, about 50 minutes, and the worker exits); tasks running meanwhile finish.
        broker_connection_max_retries=None,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
    )
    return celery_app
