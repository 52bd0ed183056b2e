"""The upload service: an object never outlives a row that failed to commit."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import Database
from core.keys import key_provider_from_settings
from core.settings import Settings
from core.storage import object_store_from_settings
from ingest.service import store_upload
from ingest.spool import spooled
from models.audit import ActingSession, Actor, TransactionFactory
from tenants.service import tenant_transactions
from tests.conftest import TenantFactory, owner_scalar
from tests.harness import SentTasks

ACTOR = Actor(actor_id="test", actor_type="system")


class DatabaseWentAway(Exception):
    pass


def failing_on_call(transaction: TransactionFactory, failing_call: int) -> TransactionFactory:
    """The `failing_call`-th transaction fails at commit time, after its statements ran."""
    calls = 0

    @asynccontextmanager
    async def factory() -> AsyncIterator[ActingSession]:
        nonlocal calls
        calls += 1
        async with transaction() as tx:
            yield tx
            if calls == failing_call:
                raise DatabaseWentAway

    return factory


async def test_object_is_removed_when_the_row_cannot_be_committed(
    db: Database, settings: Settings, make_tenant: TenantFactory, owner_engine: AsyncEngine
) -> None:
    keys = key_provider_from_settings(settings)
    tenant_id = (await make_tenant()).id
    store = object_store_from_settings(settings, keys)
    tasks = SentTasks()

    transaction = failing_on_call(tenant_transactions(db, tenant_id, ACTOR), failing_call=2)
    before = sorted(p for p in (settings.data_dir / "objects").rglob("*") if p.is_file())
    with pytest.raises(DatabaseWentAway):
        async with spooled(io.BytesIO(b"Lost row, no orphan object."), settings.data_dir / "spool", 1024) as upload:
            await store_upload(
                transaction, store, tasks, upload, filename="n.txt", content_type="text/plain", metadata={}
            )
    after = sorted(p for p in (settings.data_dir / "objects").rglob("*") if p.is_file())
    assert after == before
    assert tasks.sent == []
    assert await owner_scalar(owner_engine, "SELECT count(*) FROM documents WHERE tenant_id = :t", t=tenant_id) == 0
