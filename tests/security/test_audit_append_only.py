"""`audit_logs` rejects UPDATE, DELETE and TRUNCATE for every role, the owner (a superuser here) included."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import Database
from tests.conftest import TenantFactory, owner_scalar
from tests.security.tenant_rows import TenantRows, seed_rows

CHANGES = [
    "UPDATE audit_logs SET action = 'rewritten' WHERE id = :id",
    "DELETE FROM audit_logs WHERE id = :id",
    "TRUNCATE audit_logs",
]


@pytest.fixture
async def rows(db: Database, make_tenant: TenantFactory) -> TenantRows:
    return await seed_rows(db, (await make_tenant()).id)


async def _still_there(owner_engine: AsyncEngine, rows: TenantRows) -> bool:
    action = await owner_scalar(owner_engine, "SELECT action FROM audit_logs WHERE id = :id", id=rows.audit_id)
    return action == "test.seeded"


@pytest.mark.parametrize("sql", CHANGES)
async def test_app_role_cannot_change_audit_logs(
    db: Database, owner_engine: AsyncEngine, rows: TenantRows, sql: str
) -> None:
    with pytest.raises(DBAPIError) as refused:
        async with db.tenant_session(rows.tenant_id) as session:
            await session.execute(text(sql), {"id": rows.audit_id})
    assert "permission denied" in str(refused.value.orig)
    assert await _still_there(owner_engine, rows)


@pytest.mark.parametrize("sql", CHANGES)
async def test_owner_cannot_change_audit_logs(owner_engine: AsyncEngine, rows: TenantRows, sql: str) -> None:
    with pytest.raises(DBAPIError) as refused:
        async with owner_engine.begin() as conn:
            await conn.execute(text(sql), {"id": rows.audit_id})
    assert "audit_logs is append-only" in str(refused.value.orig)
    assert await _still_there(owner_engine, rows)


async def test_triggers_fire_even_in_replica_mode(owner_engine: AsyncEngine, rows: TenantRows) -> None:
    with pytest.raises(DBAPIError, match="append-only"):
        async with owner_engine.begin() as conn:
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
            await conn.execute(text("DELETE FROM audit_logs WHERE id = :id"), {"id": rows.audit_id})
    assert await _still_there(owner_engine, rows)


async def test_inserted_rows_are_chained(db: Database, owner_engine: AsyncEngine, rows: TenantRows) -> None:
    """The trigger links each row to the previous one of its tenant; a forged hash is overwritten."""
    async with db.tenant_session(rows.tenant_id) as session:
        await session.execute(
            text(
                "INSERT INTO audit_logs (tenant_id, actor_type, action, outcome, prev_hash, row_hash) "
                "VALUES (:t, 'system', 'test.forged', 'success', 'forged', 'forged')"
            ),
            {"t": rows.tenant_id},
        )
    async with owner_engine.connect() as conn:
        chain = (
            await conn.execute(
                text(
                    "SELECT prev_hash, row_hash, audit_log_digest(prev_hash, a) AS recomputed "
                    "FROM audit_logs a WHERE tenant_id = :t ORDER BY id"
                ),
                {"t": rows.tenant_id},
            )
        ).all()
        head = await conn.scalar(
            text("SELECT last_hash FROM audit_chain_heads WHERE tenant_id = :t"), {"t": rows.tenant_id}
        )
    assert len(chain) == 3  # tenant.created, test.seeded, test.forged
    assert chain[0].prev_hash == "0" * 64
    for previous, current in itertools.pairwise(chain):
        assert current.prev_hash == previous.row_hash
    assert all(link.row_hash == link.recomputed for link in chain)
    assert head == chain[-1].row_hash
