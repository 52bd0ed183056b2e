"""The shared columns: `updated_at` follows every ORM change (claims measure their lease from it)."""

from __future__ import annotations

from sqlalchemy import func, select

from core.db import Database
from models import Document
from tests.conftest import TenantFactory
from tests.security.tenant_rows import seed_rows


async def test_an_orm_change_moves_updated_at_to_the_transaction_time(db: Database, make_tenant: TenantFactory) -> None:
    rows = await seed_rows(db, (await make_tenant()).id)
    async with db.tenant_session(rows.tenant_id) as session:
        document = await session.get(Document, rows.document_id)
        assert document is not None
        created_at, updated_at = document.created_at, document.updated_at
        document.status = "processing"
        await session.flush()
        await session.refresh(document)
        now = await session.scalar(select(func.now()))
    assert document.updated_at == now
    assert document.updated_at > updated_at
    assert document.created_at == created_at
