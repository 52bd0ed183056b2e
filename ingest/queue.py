"""Enqueueing work after commit. A broker outage never fails an upload: the row stays
`queued` and the reconciler sends it again once the broker is back."""

from __future__ import annotations

import asyncio
import logging
import uuid

from core.celery_app import celery_app

log = logging.getLogger(__name__)

PROCESS_DOCUMENT_TASK = "ingest.process_document"
_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def send_process_document(tenant_id: uuid.UUID, document_id: uuid.UUID) -> bool:
    try:
        celery_app.send_task(
            PROCESS_DOCUMENT_TASK, args=[str(tenant_id), str(document_id)], retry=True, retry_policy=_RETRY_POLICY
        )
    except Exception as exc:  # the broker's errors vary by transport; the reconciler recovers all of them
        log.warning(
            "enqueue failed; the reconciler will retry",
            extra={"tenant_id": str(tenant_id), "document_id": str(document_id), "error_type": type(exc).__name__},
        )
        return False
    return True


async def enqueue_process_document(tenant_id: uuid.UUID, document_id: uuid.UUID) -> bool:
    return await asyncio.to_thread(send_process_document, tenant_id, document_id)
