"""Retention purge and the reconciler, run as the worker runs them (app role, every tenant)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import Database
from core.keys import key_provider_from_settings
from core.settings import Settings
from core.storage import object_store_from_settings
from ingest.maintenance import purge_deleted, reconcile
from tenants.repository import tenant_ids
from tests.conftest import TenantFactory, owner_scalar
from tests.harness import SentTasks, Tokens, audit_actions, upload


async def _age(owner_engine: AsyncEngine, sql: str, document_id: str) -> None:
    async with owner_engine.begin() as conn:
        await conn.execute(text(sql), {"d": uuid.UUID(document_id)})


async def test_purge_removes_object_chunks_and_row_after_retention(
    client: httpx.AsyncClient,
    tokens: Tokens,
    tenant_id: uuid.UUID,
    owner_engine: AsyncEngine,
    db: Database,
    settings: Settings,
) -> None:
    headers = tokens.headers("admin", tenant_id)
    kept = (await upload(client, headers, b"Recently deleted: keep for now.", "recent.txt")).json()["id"]
    old = (await upload(client, headers, b"Deleted long ago: purge.", "old.txt")).json()["id"]
    for document_id in (kept, old):
        assert (await client.delete(f"/v1/documents/{document_id}", headers=headers)).status_code == 204
    await _age(owner_engine, "UPDATE documents SET deleted_at = now() - interval '31 days' WHERE id = :d", old)

    too_late = await client.post(f"/v1/documents/{old}/restore", headers=headers)
    assert too_late.status_code == 409
    assert too_late.json()["error"]["code"] == "retention_expired"

    store = object_store_from_settings(settings, key_provider_from_settings(settings))
    assert store.exists(tenant_id, uuid.UUID(old))
    purged = await purge_deleted(db, store, retention=timedelta(days=30))
    assert purged >= 1
    assert not store.exists(tenant_id, uuid.UUID(old))
    assert store.exists(tenant_id, uuid.UUID(kept))
    assert await owner_scalar(owner_engine, "SELECT count(*) FROM documents WHERE id = :d", d=uuid.UUID(old)) == 0
    assert await owner_scalar(owner_engine, "SELECT count(*) FROM documents WHERE id = :d", d=uuid.UUID(kept)) == 1
    assert ("document.purged", "success", old) in await audit_actions(owner_engine, tenant_id)
    assert (await client.post(f"/v1/documents/{kept}/restore", headers=headers)).status_code == 200


async def _queued_document(db: Database, tenant_id: uuid.UUID, age: timedelta) -> str:
    """A `queued` row whose message was never sent (so no worker touches it), last updated `age` ago."""
    async with db.tenant_session(tenant_id) as session:
        document_id = await session.scalar(
            text(
                "INSERT INTO documents (tenant_id, filename, content_type, size_bytes, sha256, storage_key, "
                "updated_at) "
                "VALUES (:t, 'n.txt', 'text/plain', 1, :h, 'k', CAST(:updated AS timestamptz)) RETURNING id"
            ),
            {"t": tenant_id, "h": uuid.uuid4().hex, "updated": datetime.now(UTC) - age},
        )
    return str(document_id)


async def test_reconciler_resends_only_stale_work(
    tenant_id: uuid.UUID, owner_engine: AsyncEngine, db: Database
) -> None:
    fresh = await _queued_document(db, tenant_id, timedelta(seconds=1))
    stale = await _queued_document(db, tenant_id, timedelta(hours=1))

    tasks = SentTasks()
    await reconcile(db, tasks, queued_after=timedelta(minutes=5), processing_after=timedelta(minutes=15))
    mine = tasks.documents(tenant_id)
    assert mine == [uuid.UUID(stale)]
    assert uuid.UUID(fresh) not in mine
    assert ("document.requeued", "success", stale) in await audit_actions(owner_engine, tenant_id)


async def test_tenant_directory_lists_ids_only_for_the_app_role(db: Database, tenant_id: uuid.UUID) -> None:
    ids = await tenant_ids(db)
    assert tenant_id in ids
    assert uuid.UUID(int=0) not in ids


@pytest.mark.parametrize(
    "inactive",
    [
        "UPDATE tenants SET status = 'suspended' WHERE id = :t",
        "UPDATE tenants SET deleted_at = now() WHERE id = :t",
    ],
    ids=["suspended", "deleted"],
)
async def test_reconciler_leaves_an_inactive_tenant_alone(
    make_tenant: TenantFactory, owner_engine: AsyncEngine, db: Database, inactive: str
) -> None:
    """The reconciler acts only in tenants `tenants.service.require_active` admits. A deleted tenant is also left
    out of the directory it walks (`phivault_tenant_ids()`), so that case holds twice over."""
    tenant = await make_tenant()
    stale = await _queued_document(db, tenant.id, timedelta(hours=1))
    async with owner_engine.begin() as conn:
        await conn.execute(text(inactive), {"t": tenant.id})
    tasks = SentTasks()
    await reconcile(db, tasks, queued_after=timedelta(minutes=5), processing_after=timedelta(minutes=15))
    assert tasks.documents(tenant.id) == []
    assert ("document.requeued", "success", stale) not in await audit_actions(owner_engine, tenant.id)
