"""SQL for reading the audit trail: filtered pages, streamed exports, disclosure reports, and the chain verification."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

from sqlalchemy import Select, and_, literal_column, or_, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from audit.schemas import AuditFilters, ChainReport, ReportQuery, VerificationIncomplete
from models.audit import GENESIS_HASH, AuditLog


def _query(tenant_id: uuid.UUID, filters: AuditFilters) -> Select[AuditLog]:
    query = select(AuditLog).where(AuditLog.tenant_id == tenant_id)
    if filters.action is not None:
        query = query.where(AuditLog.action == filters.action)
    if filters.actor_id is not None:
        query = query.where(AuditLog.actor_id == filters.actor_id)
    if filters.resource_id is not None:
        query = query.where(AuditLog.resource_id == filters.resource_id)
    if filters.since is not None:
        query = query.where(AuditLog.created_at >= filters.since)
    if filters.until is not None:
        query = query.where(AuditLog.created_at < filters.until)
    return query


async def list_events(
    session: AsyncSession, tenant_id: uuid.UUID, filters: AuditFilters, *, limit: int, before_id: int | None
) -> list[AuditLog]:
    """Newest first; `before_id` continues after the last id of the previous page."""
    query = _query(tenant_id, filters)
    if before_id is not None:
        query = query.where(AuditLog.id < before_id)
    return list((await session.scalars(query.order_by(AuditLog.id.desc()).limit(limit))).all())


async def stream_events(session: AsyncSession, tenant_id: uuid.UUID, filters: AuditFilters) -> AsyncIterator[AuditLog]:
    """Oldest first, through a server-side cursor, so large ranges never sit in memory."""
    result = await session.stream_scalars(
        _query(tenant_id, filters).order_by(AuditLog.id).execution_options(yield_per=500)
    )
    async for event in result:
        yield event


_SEARCHED_DOCUMENTS = literal_column("(audit_logs.metadata -> 'document_ids')", JSONB)
"""Spelled as `ix_audit_logs_search_document_ids` (migration 0009) is, literals included, so the index matches."""
_IS_SEARCH = text("audit_logs.action = 'search.query'")


async def report_events(
    session: AsyncSession, tenant_id: uuid.UUID, query: ReportQuery, *, limit: int
) -> list[AuditLog]:
    """Oldest first, at most `limit`: every event by the actor, or every event about the resource together with
    every search that returned it (a bitmap OR of the resource-id index and the GIN index on searched ids)."""
    statement = select(AuditLog).where(
        AuditLog.tenant_id == tenant_id, AuditLog.created_at >= query.since, AuditLog.created_at < query.until
    )
    if query.kind == "actor":
        statement = statement.where(AuditLog.actor_id == query.subject_id)
    else:
        returned = and_(_IS_SEARCH, _SEARCHED_DOCUMENTS.contains([query.subject_id]))
        statement = statement.where(or_(AuditLog.resource_id == query.subject_id, returned))
    return list((await session.scalars(statement.order_by(AuditLog.id).limit(limit))).all())


OPERATIONAL_SQLSTATE_CLASSES = {"40", "53", "54", "57", "58"}
"""Transaction rollback, insufficient resources, program limits, operator intervention (timeouts,
cancels), system errors: the database stopped the check, the data did not fail it."""
QUERY_CANCELED = "57014"


_VERIFY = text(
    """
    WITH chain AS (
      SELECT a.id, a.prev_hash, a.row_hash, audit_log_digest(a.prev_hash, a) AS recomputed,
             lag(a.row_hash) OVER (ORDER BY a.id) AS expected_prev
        FROM audit_logs a WHERE a.tenant_id = :tenant_id
    )
    SELECT count(*) AS checked,
           max(id) AS last_id,
           (array_agg(row_hash ORDER BY id DESC))[1] AS last_hash,
           min(id) FILTER (
             WHERE row_hash IS DISTINCT FROM recomputed
                OR prev_hash IS DISTINCT FROM coalesce(expected_prev, :genesis)
           ) AS first_broken_id,
           (SELECT h.last_id FROM audit_chain_heads h WHERE h.tenant_id = :tenant_id) AS head_id,
           (SELECT h.last_hash FROM audit_chain_heads h WHERE h.tenant_id = :tenant_id) AS head_hash
      FROM chain
    """
)
"""One statement, so one snapshot: the rows and the chain head are read as of the same instant.

A writer commits its rows and the head's move together; read in two statements, a commit between
them would make an intact chain's tail look one link short of the head (a false tamper alarm)."""


_SET_TIMEOUT = text("SELECT set_config('statement_timeout', :value, true)")


def _sqlstate(error: DBAPIError) -> str:
    return str(getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None) or "")


async def verify_chain(
    session: AsyncSession, tenant_id: uuid.UUID, *, timeout_seconds: float
) -> ChainReport | VerificationIncomplete:
    """Recompute every link of the tenant's chain and compare the tail with the chain head.

    An edited row breaks its own hash; a deleted row breaks the next row's `prev_hash`;
    a deleted tail no longer matches `audit_chain_heads`. The check runs in a savepoint under its
    own `statement_timeout`, so when the database stops it the transaction lives on to record that.
    """
    try:
        async with session.begin_nested():
            previous = await session.scalar(text("SELECT current_setting('statement_timeout')"))
            await session.execute(_SET_TIMEOUT, {"value": f"{max(1, int(timeout_seconds * 1000))}ms"})
            result = await session.execute(_VERIFY, {"tenant_id": tenant_id, "genesis": GENESIS_HASH})
            row = result.mappings().one()
            await session.execute(_SET_TIMEOUT, {"value": previous})
    except DBAPIError as error:
        state = _sqlstate(error)
        if error.connection_invalidated or state[:2] not in OPERATIONAL_SQLSTATE_CLASSES:
            raise
        return VerificationIncomplete(reason="timeout" if state == QUERY_CANCELED else "database_error")
    broken: int | None = row["first_broken_id"]
    has_head = row["head_id"] is not None
    if broken is None and has_head and (row["head_id"], row["head_hash"]) != (row["last_id"], row["last_hash"]):
        broken = int(row["head_id"])
    return ChainReport(valid=broken is None, checked=int(row["checked"]), first_broken_id=broken)
