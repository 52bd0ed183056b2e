"""Offboarding: a tenant's scheduled destruction by crypto-shredding (issue 15, item 3).

`schedule_offboarding` (`DELETE /v1/tenants/{id}`, `phivault tenant offboard`) suspends the tenant at once, so its
tokens are refused from the next request (`require_active`), and sets `purge_after`; until the purge starts,
`cancel_offboarding` clears it (the tenant stays suspended until it is resumed with `PATCH`).

`purge_tenant` destroys a tenant whose deadline has passed, in two transactions, each safe to repeat:

1. **The key first.** The key provider destroys the tenant's keys (`destroy_tenant_key`: KMS keys scheduled for
   deletion with the shortest window and the alias removed; local keys are erased from the row here), and the row
   keeps the draft receipt (`purge_receipt`: the key ids destroyed, the counts of what is deleted next). From this
   commit on, every stored object and every wrapped data key of the tenant, backups included, is unreadable.
2. **Then the data.** Every object under the tenant's prefix is deleted (orphans too), then the document rows (their
   chunks by cascade); `purged_at` is set and `tenant.purged` closes the tenant's audit chain with the receipt.

A run that stops after step 1 leaves the draft receipt; the next run skips step 1 and finishes step 2 (deleting a
missing object is no error). The audit trail is kept (HIPAA: six years); the users rows are kept too, so the trail's
user ids still resolve.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from core.db import SYSTEM_TENANT_ID, Database, written
from core.errors import Conflict
from core.keys import KeyProvider
from core.storage import ObjectStore
from models.audit import Actor, write_audit_event
from models.tenant import Tenant
from tenants import repository
from tenants.schemas import PurgeReceipt
from tenants.service import live, refuse_if_purged, refuse_while_offboarding, tenant_key_ref

PURGE_ACTOR = Actor(actor_id="phivault:offboarding", actor_type="system")
_PAGE = 1000


async def schedule_offboarding(db: Database, tenant_id: uuid.UUID, actor: Actor, retention: timedelta) -> Tenant | None:
    """Suspend the tenant and schedule its destruction `retention` from now; None for an unknown tenant."""
    if tenant_id == SYSTEM_TENANT_ID:
        return None
    async with db.tenant_session(tenant_id) as session:
        tenant = live(await repository.get_tenant(session, tenant_id, for_update=True))
        if tenant is None:
            return None
        refuse_while_offboarding(tenant)
        previous = tenant.status
        tenant.status = "suspended"
        tenant.purge_after = datetime.now(UTC) + retention
        await written(session, tenant)
        await write_audit_event(
            session,
            actor.event(
                tenant_id,
                "tenant.offboarding_scheduled",
                resource_type="tenant",
                resource_id=tenant_id,
                metadata={
                    "purge_after": tenant.purge_after.isoformat(),
                    "status": {"from": previous, "to": "suspended"},
                },
            ),
        )
        return tenant


async def cancel_offboarding(db: Database, tenant_id: uuid.UUID, actor: Actor) -> Tenant | None:
    """Clear a scheduled destruction that has not started; the tenant stays suspended. None for an unknown tenant."""
    if tenant_id == SYSTEM_TENANT_ID:
        return None
    async with db.tenant_session(tenant_id) as session:
        tenant = live(await repository.get_tenant(session, tenant_id, for_update=True))
        if tenant is None:
            return None
        refuse_if_purged(tenant)
        if tenant.purge_after is None:
            raise Conflict("offboarding_not_scheduled", "this tenant has no offboarding scheduled")
        cancelled = tenant.purge_after
        tenant.purge_after = None
        await written(session, tenant)
        await write_audit_event(
            session,
            actor.event(
                tenant_id,
                "tenant.offboarding_cancelled",
                resource_type="tenant",
                resource_id=tenant_id,
                metadata={"purge_after": cancelled.isoformat() if cancelled else None},
            ),
        )
        return tenant


async def purge_due_tenants(db: Database, keys: KeyProvider, store: ObjectStore) -> list[PurgeReceipt]:
    """Destroy every tenant whose offboarding deadline has passed (beat, hourly; `phivault tenant purge-due`)."""
    receipts = []
    for tenant_id in await repository.tenants_due_for_purge(db):
        receipt = await purge_tenant(db, keys, store, tenant_id)
        if receipt is not None:
            receipts.append(receipt)
    return receipts


async def purge_tenant(
    db: Database, keys: KeyProvider, store: ObjectStore, tenant_id: uuid.UUID
) -> PurgeReceipt | None:
    """Destroy the tenant's key, then its data (see the module docstring); None when it is not due or already done."""
    if not await _destroy_key(db, keys, store, tenant_id):
        return None
    return await _delete_data(db, store, tenant_id)


async def _destroy_key(db: Database, keys: KeyProvider, store: ObjectStore, tenant_id: uuid.UUID) -> bool:
    """Step 1 (once): destroy the keys and draft the receipt. Whether step 2 is to be run."""
    async with db.tenant_session(tenant_id) as session:
        tenant = live(await repository.get_tenant(session, tenant_id, for_update=True))
        if tenant is None or tenant.purged_at is not None:
            return False
        if tenant.purge_receipt is not None:
            return True  # the key is gone already: a run stopped halfway
        if tenant.purge_after is None or tenant.purge_after > datetime.now(UTC):
            return False
        objects = await asyncio.to_thread(store.document_ids, tenant_id)
        draft = {
            "key_provider": keys.name,
            "destroyed_key_ids": await asyncio.to_thread(keys.destroy_tenant_key, tenant_key_ref(tenant)),
            "documents": await repository.count_documents(session, tenant_id),
            "chunks": await repository.count_chunks(session, tenant_id),
            "objects": len(objects),
        }
        tenant.purge_receipt = draft
        tenant.wrapped_key = tenant.previous_wrapped_key = tenant.query_key_wrapped = None
        tenant.kms_key_id = tenant.previous_kms_key_id = None
        tenant.key_rotation_started_at = tenant.key_rotation_cursor = None
        await written(session, tenant)
        return True


async def _delete_data(db: Database, store: ObjectStore, tenant_id: uuid.UUID) -> PurgeReceipt | None:
    """Step 2: objects, then rows, then the receipt, in one transaction (a repeat deletes what is left)."""
    async with db.tenant_session(tenant_id) as session:
        tenant = await repository.get_tenant(session, tenant_id, for_update=True)
        if tenant is None or tenant.purged_at is not None or tenant.purge_receipt is None:
            return None
        documents = set(await asyncio.to_thread(store.document_ids, tenant_id))
        after = None
        while page := await repository.document_ids_after(session, tenant_id, after, _PAGE):
            documents.update(page)
            after = page[-1]
        for document_id in sorted(documents):
            await asyncio.to_thread(store.delete, tenant_id, document_id)
        await repository.delete_all_documents(session, tenant_id)
        tenant.purged_at = datetime.now(UTC)
        receipt = PurgeReceipt.model_validate(
            {**tenant.purge_receipt, "tenant_id": tenant_id, "purged_at": tenant.purged_at}
        )
        await written(session, tenant)
        await write_audit_event(
            session,
            PURGE_ACTOR.event(
                tenant_id,
                "tenant.purged",
                resource_type="tenant",
                resource_id=tenant_id,
                metadata=receipt.model_dump(mode="json"),
            ),
        )
        return receipt


async def purge_receipt(db: Database, tenant_id: uuid.UUID) -> PurgeReceipt | None:
    """The receipt of a purged tenant, read from its audit trail (the `tenant.purged` event); None if not purged."""
    if tenant_id == SYSTEM_TENANT_ID:
        return None
    async with db.tenant_session(tenant_id) as session:
        metadata = await repository.latest_event_metadata(session, tenant_id, "tenant.purged")
    return None if metadata is None else PurgeReceipt.model_validate(metadata)
