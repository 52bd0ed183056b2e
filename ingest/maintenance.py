"""Background upkeep that visits every tenant: re-sending stale work and purging deleted documents."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime, timedelta

from core.db import Database
from core.storage import ObjectStore
from ingest import repository
from ingest.processing import WORKER_ACTOR
from models.audit import write_audit_event
from tenants.repository import get_tenant, tenant_ids
from tenants.service import TenantUnavailable, require_active

log = logging.getLogger(__name__)

Enqueue = Callable[[uuid.UUID, uuid.UUID], Awaitable[bool]]


async def reconcile(
    db: Database,
    enqueue: Enqueue,
    *,
    queued_after: timedelta,
    processing_after: timedelta,
    in_queue: Collection[uuid.UUID] | None = frozenset(),
    batch: int = 500,
) -> int:
    """Send again what no worker holds: documents `queued` longer than `queued_after` whose message is
    not waiting in the queue (`in_queue`; None: unknown, so no `queued` one is sent), and documents
    whose `processing` claim has not been renewed for `processing_after` (its worker died).

    Safe to run from every worker and beat at once: each such document is locked (rows another run
    holds are skipped), set back to `queued` with a fresh `updated_at` and audited in one transaction,
    and sent after the commit, so a concurrent or later run finds it fresh and leaves it alone. A
    document sent twice is still processed once (see `ingest.processing.claim`).
    """
    sent = 0
    for tenant_id in await tenant_ids(db):
        async with db.tenant_session(tenant_id) as session:
            try:
                require_active(await get_tenant(session, tenant_id))
            except TenantUnavailable:
                continue
            candidates = await repository.stale_candidates(
                session,
                tenant_id,
                queued_after=queued_after,
                processing_after=processing_after,
                include_queued=in_queue is not None,
                batch=batch,
            )
            waiting = in_queue or frozenset()
            stale = [
                document for document in candidates if document.status == "processing" or document.id not in waiting
            ]
            for document in stale:
                repository.mark_requeued(document)
                await write_audit_event(
                    session,
                    WORKER_ACTOR.event(
                        tenant_id, "document.requeued", resource_type="document", resource_id=document.id
                    ),
                )
            stale_ids = [document.id for document in stale]
        for document_id in stale_ids:
            sent += int(await enqueue(tenant_id, document_id))
    return sent


async def purge_deleted(db: Database, store: ObjectStore, *, retention: timedelta, batch: int = 200) -> int:
    """Remove documents deleted before the retention window: object, chunks and row; audit a receipt."""
    cutoff = datetime.now(UTC) - retention
    purged = 0
    for tenant_id in await tenant_ids(db):
        async with db.tenant_session(tenant_id) as session:
            expired = await repository.deleted_before(session, tenant_id, cutoff, batch)
            for document in expired:
                # The object goes first: a crash after this leaves a row the next run finishes.
                await asyncio.to_thread(store.delete, tenant_id, document.id)
                await write_audit_event(
                    session,
                    WORKER_ACTOR.event(
                        tenant_id,
                        "document.purged",
                        resource_type="document",
                        resource_id=document.id,
                        metadata={"sha256": document.sha256, "deleted_at": str(document.deleted_at)},
                    ),
                )
            if expired:
                await repository.delete_documents(session, tenant_id, [d.id for d in expired])
            purged += len(expired)
    return purged
