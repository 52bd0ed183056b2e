"""Row-level security on every tenant table, exercised as `phivault_app` through `tenant_session`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import Database
from tests.conftest import TenantFactory, owner_scalar
from tests.security.tenant_rows import VECTOR_1024, TenantRows, seed_rows

TABLES = ["tenants", "users", "documents", "document_chunks", "audit_logs", "audit_chain_heads"]

# A change to one column per table, to show a cross-tenant UPDATE changes nothing.
HIJACK = {
    "tenants": "name = 'hijacked'",
    "users": "full_name = 'hijacked'",
    "documents": "filename = 'hijacked'",
    "document_chunks": "text = 'hijacked'",
    "audit_logs": "action = 'hijacked'",
    "audit_chain_heads": "last_hash = 'hijacked'",
}

# An insert of a new row belonging to :t (never the tenant whose context is set).
INSERTS = {
    "tenants": "INSERT INTO tenants (id, name, slug) VALUES (:t, 'x', :slug)",
    "users": "INSERT INTO users (tenant_id, subject, role) VALUES (:t, :slug, 'admin')",
    "documents": "INSERT INTO documents (tenant_id, filename, content_type, size_bytes, sha256, storage_key) "
    "VALUES (:t, 'x', 'text/plain', 1, :slug, 'k')",
    "document_chunks": "INSERT INTO document_chunks (tenant_id, document_id, chunk_index, text, token_count, "
    "embedding, embedding_dims, embedding_model) VALUES (:t, :doc, 99, 'x', 1, CAST(:vec AS vector), 1024, 'test')",
    "audit_logs": "INSERT INTO audit_logs (tenant_id, actor_type, action, outcome, prev_hash, row_hash) "
    "VALUES (:t, 'system', 'forged', 'success', '', '')",
    "audit_chain_heads": "INSERT INTO audit_chain_heads (tenant_id, last_id, last_hash, updated_at) "
    "VALUES (:t, 0, 'x', now())",
}

REFUSALS = ("row-level security", "permission denied", "append-only")


@dataclass(frozen=True)
class Pair:
    a: TenantRows
    b: TenantRows


@pytest.fixture
async def pair(db: Database, make_tenant: TenantFactory) -> Pair:
    a, b = await make_tenant(), await make_tenant()
    return Pair(await seed_rows(db, a.id), await seed_rows(db, b.id))


async def _attempt(db: Database, tenant_id: uuid.UUID, sql: str, **params: object) -> int | str:
    """Run `sql` as `tenant_id`: the affected row count, or the refusal message."""
    try:
        async with db.tenant_session(tenant_id) as session:
            result = await session.execute(text(sql), params)
            return int(getattr(result, "rowcount", -1))
    except DBAPIError as exc:
        message = str(exc.orig)
        assert any(reason in message for reason in REFUSALS), message
        return message


async def _row_exists_unchanged(owner_engine: AsyncEngine, table: str, rows: TenantRows) -> bool:
    column, value = rows.key_of(table)
    unchanged = "NOT (" + HIJACK[table].replace(" = ", " IS NOT DISTINCT FROM ") + ")"
    count = await owner_scalar(
        owner_engine, f"SELECT count(*) FROM {table} WHERE {column} = :v AND {unchanged}", v=value
    )
    return count == 1


@pytest.mark.parametrize("table", TABLES)
async def test_tenant_cannot_select_another_tenants_rows(db: Database, pair: Pair, table: str) -> None:
    column, value = pair.b.key_of(table)
    async with db.tenant_session(pair.a.tenant_id) as session:
        assert await session.scalar(text(f"SELECT count(*) FROM {table} WHERE {column} = :v"), {"v": value}) == 0
        tenant_column = "id" if table == "tenants" else "tenant_id"
        seen = set((await session.execute(text(f"SELECT DISTINCT {tenant_column} FROM {table}"))).scalars())
    assert seen == {pair.a.tenant_id}


@pytest.mark.parametrize("table", TABLES)
async def test_tenant_cannot_update_another_tenants_rows(
    db: Database, owner_engine: AsyncEngine, pair: Pair, table: str
) -> None:
    column, value = pair.b.key_of(table)
    outcome = await _attempt(db, pair.a.tenant_id, f"UPDATE {table} SET {HIJACK[table]} WHERE {column} = :v", v=value)
    assert outcome == 0 or isinstance(outcome, str)
    assert await _row_exists_unchanged(owner_engine, table, pair.b)


@pytest.mark.parametrize("table", ["users", "documents", "document_chunks"])
async def test_tenant_cannot_move_its_rows_to_another_tenant(db: Database, pair: Pair, table: str) -> None:
    column, value = pair.a.key_of(table)
    outcome = await _attempt(
        db, pair.a.tenant_id, f"UPDATE {table} SET tenant_id = :b WHERE {column} = :v", b=pair.b.tenant_id, v=value
    )
    assert isinstance(outcome, str)


@pytest.mark.parametrize("table", TABLES)
async def test_tenant_cannot_delete_another_tenants_rows(
    db: Database, owner_engine: AsyncEngine, pair: Pair, table: str
) -> None:
    column, value = pair.b.key_of(table)
    outcome = await _attempt(db, pair.a.tenant_id, f"DELETE FROM {table} WHERE {column} = :v", v=value)
    assert outcome == 0 or isinstance(outcome, str)
    assert await _row_exists_unchanged(owner_engine, table, pair.b)


@pytest.mark.parametrize("table", TABLES)
async def test_tenant_cannot_insert_rows_for_another_tenant(
    db: Database, owner_engine: AsyncEngine, pair: Pair, table: str
) -> None:
    target = uuid.uuid4() if table == "tenants" else pair.b.tenant_id
    before = await owner_scalar(owner_engine, f"SELECT count(*) FROM {table}")
    outcome = await _attempt(
        db,
        pair.a.tenant_id,
        INSERTS[table],
        t=target,
        slug=uuid.uuid4().hex,
        doc=pair.b.document_id,
        vec=VECTOR_1024,
    )
    assert isinstance(outcome, str)
    assert await owner_scalar(owner_engine, f"SELECT count(*) FROM {table}") == before


@pytest.mark.parametrize("table", TABLES)
async def test_without_tenant_context_select_returns_nothing(
    db: Database, owner_engine: AsyncEngine, pair: Pair, table: str
) -> None:
    assert await owner_scalar(owner_engine, f"SELECT count(*) FROM {table}") > 0  # type: ignore[operator]
    async with db.engine.connect() as conn:
        assert await conn.scalar(text(f"SELECT count(*) FROM {table}")) == 0
        await conn.rollback()


@pytest.mark.parametrize("table", TABLES)
async def test_without_tenant_context_insert_fails(
    db: Database, owner_engine: AsyncEngine, pair: Pair, table: str
) -> None:
    target = uuid.uuid4() if table == "tenants" else pair.a.tenant_id
    before = await owner_scalar(owner_engine, f"SELECT count(*) FROM {table}")
    async with db.engine.connect() as conn:
        with pytest.raises(DBAPIError) as refused:
            await conn.execute(
                text(INSERTS[table]),
                {"t": target, "slug": uuid.uuid4().hex, "doc": pair.a.document_id, "vec": VECTOR_1024},
            )
        await conn.rollback()
    assert any(reason in str(refused.value.orig) for reason in REFUSALS)
    assert await owner_scalar(owner_engine, f"SELECT count(*) FROM {table}") == before


async def test_an_empty_tenant_context_is_no_context(db: Database, pair: Pair) -> None:
    async with db.engine.connect() as conn:
        await conn.execute(text("SELECT set_config('app.tenant_id', '', true)"))
        assert await conn.scalar(text("SELECT count(*) FROM documents")) == 0
        await conn.rollback()
