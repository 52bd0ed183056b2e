"""Sending work to the workers, after commit.

A broker outage never fails an upload: the row stays `queued` and the reconciler
sends it again once the broker is back. Each process that sends work holds its own
producer for its own broker URL, so nothing depends on global Celery state.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid

from celery import Celery
from kombu.transport.redis import PRIORITY_STEPS, Channel
from redis.asyncio import Redis

from core.celery_app import broker_url

log = logging.getLogger(__name__)

PROCESS_DOCUMENT_TASK = "ingest.process_document"
QUEUE = "celery"
"""Celery's default queue (`task_default_queue`), where every PHIVault task goes."""
_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
_PRODUCER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2.0, "socket_timeout": 5.0}
"""An unreachable broker costs an upload seconds, not the operating system's connect timeout (minutes)."""
WAITING_SCAN_LIMIT = 20_000
"""`waiting_documents` reads the queue only up to this many messages (about 1.2 KB each)."""


class TaskQueue:
    def __init__(self, redis_url: str) -> None:
        self._producer = Celery("phivault-producer", broker=broker_url(redis_url), set_as_current=False)
        self._producer.conf.update(
            task_serializer="json",
            broker_connection_retry_on_startup=False,
            broker_transport_options=_PRODUCER_TRANSPORT_OPTIONS,
        )

    def send_process_document(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> bool:
        try:
            self._producer.send_task(
                PROCESS_DOCUMENT_TASK, args=[str(tenant_id), str(document_id)], retry=True, retry_policy=_RETRY_POLICY
            )
        except Exception as exc:  # the broker's errors vary by transport; the reconciler recovers all of them
            log.warning(
                "enqueue failed; the reconciler will send it again",
                extra={"tenant_id": str(tenant_id), "document_id": str(document_id), "error_type": type(exc).__name__},
            )
            return False
        return True

    async def enqueue(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> bool:
        return await asyncio.to_thread(self.send_process_document, tenant_id, document_id)

    def close(self) -> None:
        self._producer.close()


_LISTS = [QUEUE, *(f"{QUEUE}{Channel.sep}{step}" for step in PRIORITY_STEPS if step)]
"""The Redis lists kombu keeps for the queue, one per priority step."""


async def queue_depth(redis: Redis) -> int:
    """Messages waiting in the queue, summed over the Redis lists kombu keeps for its priority steps.

    Messages a worker has taken but not yet acknowledged are not counted.
    """
    async with redis.pipeline(transaction=False) as pipe:
        for name in _LISTS:
            pipe.llen(name)
        sizes = await pipe.execute()
    return sum(int(size) for size in sizes)


async def waiting_documents(redis: Redis) -> frozenset[uuid.UUID] | None:
    """The documents whose `process_document` message waits in the queue; None if it is too long to read.

    A message a worker has taken is no longer here, so a `queued` document missing from this set
    either was never sent (the broker was down) or was taken by a worker that may have died.
    """
    if await queue_depth(redis) > WAITING_SCAN_LIMIT:
        return None
    async with redis.pipeline(transaction=False) as pipe:
        for name in _LISTS:
            pipe.lrange(name, 0, WAITING_SCAN_LIMIT)
        lists = await pipe.execute()
    return frozenset(
        document_id for messages in lists for raw in messages if (document_id := _document_of(raw)) is not None
    )


def _document_of(raw: bytes) -> uuid.UUID | None:
    """The document id of a kombu message carrying a Celery (protocol 2) `process_document` task."""
    try:
        message = json.loads(raw)
        if message["headers"]["task"] != PROCESS_DOCUMENT_TASK:
            return None
        body = message["body"]
        if message["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return uuid.UUID(args[1])
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None  # not one of ours: it holds no document back
