"""Background upkeep that visits every tenant: re-sending stale work and purging deleted documents."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, or_, select, text

from core.db import Database
from core.storage import ObjectStore
from ingest.processing import WORKER_ACTOR
from models.audit import write_audit_event
from models.document import Document
from models.tenant import Tenant

log = logging.getLogger(__name__)

Enqueue = Callable[[uuid.UUID, uuid.UUID], Awaitable[bool]]


async def tenant_ids(db: Database) -> list[uuid.UUID]:
    """Every tenant's id, through the one directory function the app role may call."""
    async with db.engine.connect() as conn:
        ids = list((await conn.scalars(text("SELECT phivault_tenant_ids()"))).all())
        await conn.rollback()
    return ids


async def reconcile(
    db: Database, enqueue: Enqueue, *, queued_after: timedelta, processing_after: timedelta, batch: int = 500
) -> int:
    """Send again the documents left `queued` or `processing` longer than the given ages."""
    now = datetime.now(UTC)
    sent = 0
    for tenant_id in await tenant_ids(db):
        async with db.tenant_session(tenant_id) as session:
            tenant = await session.get(Tenant, tenant_id)
            if tenant is None or tenant.status != "active":
                continue
            stale = list(
                (
                    await session.scalars(
                        select(Document.id)
                        .where(
                            Document.tenant_id == tenant_id,
                            Document.deleted_at.is_(None),
                            or_(
                                (Document.status == "queued") & (Document.updated_at < now - queued_after),
                                (Document.status == "processing") & (Document.updated_at < now - processing_after),
                            ),
                        )
                        .order_by(Document.updated_at)
                        .limit(batch)
                    )
                ).all()
            )
            for document_id in stale:
                await write_audit_event(
                    session,
                    WORKER_ACTOR.event(
                        tenant_id, "document.requeued", resource_type="document", resource_id=document_id
                    ),
                )
        for document_id in stale:
            sent += int(await enqueue(tenant_id, document_id))
    return sent


async def purge_deleted(db: Database, store: ObjectStore, *, retention: timedelta, batch: int = 200) -> int:
    """Remove documents deleted before the retention window: object, chunks and row; audit a receipt."""
    cutoff = datetime.now(UTC) - retention
    purged = 0
    for tenant_id in await tenant_ids(db):
        async with db.tenant_session(tenant_id) as session:
            expired = list(
                (
                    await session.scalars(
                        select(Document)
                        .where(Document.tenant_id == tenant_id, Document.deleted_at < cutoff)
                        .order_by(Document.deleted_at)
                        .limit(batch)
                        .with_for_update(skip_locked=True)
                    )
                ).all()
            )
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
                await session.execute(
                    delete(Document).where(Document.tenant_id == tenant_id, Document.id.in_([d.id for d in expired]))
                )
            purged += len(expired)
    return purged
