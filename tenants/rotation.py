"""Key rotation (issue 15, item 4): the master key, and one tenant's key. Nothing is unreadable at any point.

**Master key** (`rotate_master_key`, `phivault keys rotate-master`; local key provider only): every tenant key is
unwrapped with the old master key and wrapped again under the new one, one tenant per transaction, audited
`tenant.key_rotated` (`{"kind": "master"}`). A tenant whose key the new master key already unwraps is skipped, so a
rotation that stopped is resumed by running it again. Meanwhile the API and workers read with both keys
(`PHIVAULT_OLD_MASTER_KEY`, the fallback of `LocalKeyProvider`), removed once the rotation is done.

**Tenant key** (`start_tenant_rotation`, then `rotation_step` until done; `phivault keys rotate-tenant`, the
`tenants.rotate_key` task): the tenant gets a new key, and the old one stays on the row as the previous key
(`previous_wrapped_key` / `previous_kms_key_id`), which readers try after the current one. Each step moves a batch
of objects, in document id order after `key_rotation_cursor`, to the new key (`ObjectStore.rekey`: envelope stores
re-wrap the data key in the header, SSE-KMS copies the object onto itself under the new KMS key), each under its
document row's lock, so a concurrent purge never sees it half-done. New uploads use the new key already. When no
object is left the previous key is retired (KMS: scheduled for deletion, 30-day window) and cleared from the row,
audited `tenant.key_rotation_completed`; the start is audited `tenant.key_rotated` (`{"kind": "tenant"}`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from core.db import Database, written
from core.errors import NotFound
from core.keys import KeyProvider, LocalKeyProvider, TenantKeyRef, key_fingerprint
from core.storage import ObjectNotFoundError, ObjectStore
from models.audit import Actor, write_audit_event
from models.tenant import Tenant
from tenants import repository
from tenants.schemas import KeyRotationStatus
from tenants.service import QUERY_KEY_PURPOSE, refuse_if_purged, tenant_key_ref

ROTATION_BATCH = 100
ROTATION_ACTOR = Actor(actor_id="phivault:key-rotation", actor_type="system")


def _key_id(ref: TenantKeyRef) -> str | None:
    """How a receipt or an audit event names a key: its KMS ARN, or the fingerprint of the wrapped key."""
    if ref.kms_key_id:
        return ref.kms_key_id
    return key_fingerprint(ref.wrapped_key) if ref.wrapped_key else None


async def _locked(session: AsyncSession, tenant_id: uuid.UUID) -> Tenant:
    tenant = await repository.get_tenant(session, tenant_id, for_update=True)
    if tenant is None or tenant.deleted_at is not None:
        raise NotFound("tenant", tenant_id)
    return tenant


async def _status(session: AsyncSession, tenant: Tenant) -> KeyRotationStatus:
    total = await repository.count_documents(session, tenant.id)
    if tenant.key_rotation_started_at is None:
        migrated = total
    elif tenant.key_rotation_cursor is None:
        migrated = 0
    else:
        migrated = await repository.count_documents(session, tenant.id, through=tenant.key_rotation_cursor)
    return KeyRotationStatus(
        tenant_id=tenant.id,
        in_progress=tenant.key_rotation_started_at is not None,
        started_at=tenant.key_rotation_started_at,
        migrated=migrated,
        total=total,
    )


async def start_tenant_rotation(
    db: Database, keys: KeyProvider, tenant_id: uuid.UUID, actor: Actor
) -> KeyRotationStatus:
    """Give the tenant a new key, keeping the current one as the previous key; a rotation under way is resumed."""
    async with db.tenant_session(tenant_id) as session:
        tenant = await _locked(session, tenant_id)
        refuse_if_purged(tenant)
        if tenant.key_rotation_started_at is None:
            old = tenant_key_ref(tenant)
            new = await asyncio.to_thread(keys.rotate_tenant_key, old)
            if tenant.query_key_wrapped is not None:
                secret = await asyncio.to_thread(keys.unwrap_secret, old, tenant.query_key_wrapped, QUERY_KEY_PURPOSE)
                tenant.query_key_wrapped = await asyncio.to_thread(keys.wrap_secret, new, secret, QUERY_KEY_PURPOSE)
            tenant.kms_key_id, tenant.wrapped_key = new.kms_key_id, new.wrapped_key
            tenant.previous_kms_key_id, tenant.previous_wrapped_key = new.previous_kms_key_id, new.previous_wrapped_key
            tenant.key_rotation_started_at = datetime.now(UTC)
            tenant.key_rotation_cursor = None
            await written(session, tenant)
            await write_audit_event(
                session,
                actor.event(
                    tenant_id,
                    "tenant.key_rotated",
                    resource_type="tenant",
                    resource_id=tenant_id,
                    metadata={"kind": "tenant", "from": _key_id(old), "to": _key_id(new)},
                ),
            )
        return await _status(session, tenant)


async def rotation_step(
    db: Database, keys: KeyProvider, store: ObjectStore, tenant_id: uuid.UUID, batch: int = ROTATION_BATCH
) -> KeyRotationStatus:
    """Move up to `batch` objects to the tenant's current key, or complete the rotation when none is left."""
    async with db.tenant_session(tenant_id) as session:
        tenant = await _locked(session, tenant_id)
        if tenant.key_rotation_started_at is None:
            return await _status(session, tenant)
        ref = tenant_key_ref(tenant)
        page = await repository.document_ids_after(session, tenant_id, tenant.key_rotation_cursor, batch)
        for document_id in page:
            document = await repository.lock_document(session, tenant_id, document_id)
            if document is None:
                continue
            try:
                await asyncio.to_thread(store.rekey, ref, document_id)
            except ObjectNotFoundError:
                continue
            if document.kms_key_id is not None:
                document.kms_key_id = ref.kms_key_id
        if page:
            tenant.key_rotation_cursor = page[-1]
        else:
            await asyncio.to_thread(keys.retire_previous_key, ref)
            total = await repository.count_documents(session, tenant_id)
            tenant.previous_kms_key_id = tenant.previous_wrapped_key = None
            tenant.key_rotation_started_at = tenant.key_rotation_cursor = None
            await write_audit_event(
                session,
                ROTATION_ACTOR.event(
                    tenant_id,
                    "tenant.key_rotation_completed",
                    resource_type="tenant",
                    resource_id=tenant_id,
                    metadata={"kind": "tenant", "key": _key_id(ref), "documents": total},
                ),
            )
        await written(session, tenant)
        return await _status(session, tenant)


async def run_tenant_rotation(
    db: Database, keys: KeyProvider, store: ObjectStore, tenant_id: uuid.UUID, batch: int = ROTATION_BATCH
) -> KeyRotationStatus:
    """Steps until the rotation is complete (the `tenants.rotate_key` task)."""
    while (status := await rotation_step(db, keys, store, tenant_id, batch)).in_progress:
        pass
    return status


async def key_rotation_status(db: Database, tenant_id: uuid.UUID) -> KeyRotationStatus:
    async with db.tenant_session(tenant_id) as session:
        tenant = await repository.get_tenant(session, tenant_id)
        if tenant is None or tenant.deleted_at is not None:
            raise NotFound("tenant", tenant_id)
        return await _status(session, tenant)


@dataclass
class MasterRotation:
    rotated: int = 0
    skipped: int = 0


async def rotate_master_key(
    db: Database, keys: LocalKeyProvider, actor: Actor, progress: Callable[[uuid.UUID, bool], None] | None = None
) -> MasterRotation:
    """Re-wrap every tenant's keys (current and previous) under `keys`' master key, one tenant per transaction.

    `keys` must hold the old master key as its fallback. `progress(tenant_id, rotated)` is called after each tenant.
    """
    result = MasterRotation()
    for tenant_id in await repository.tenant_ids(db):
        async with db.tenant_session(tenant_id) as session:
            tenant = await repository.get_tenant(session, tenant_id, for_update=True)
            if tenant is None:
                continue
            wrapped = {
                name: await asyncio.to_thread(keys.rewrap_tenant_key, tenant_id, value) if value else None
                for name, value in (
                    ("wrapped_key", tenant.wrapped_key),
                    ("previous_wrapped_key", tenant.previous_wrapped_key),
                )
            }
            rotated = any(value is not None for value in wrapped.values())
            if rotated:
                for name, value in wrapped.items():
                    if value is not None:
                        setattr(tenant, name, value)
                await written(session, tenant)
                await write_audit_event(
                    session,
                    actor.event(
                        tenant_id,
                        "tenant.key_rotated",
                        resource_type="tenant",
                        resource_id=tenant_id,
                        metadata={"kind": "master"},
                    ),
                )
        result.rotated += int(rotated)
        result.skipped += int(not rotated)
        if progress is not None:
            progress(tenant_id, rotated)
    return result
