"""The audit trail for tenant administrators (read, export, verify, the disclosures report, the query hash,
each itself audited), and the record of refusals, which are written in a transaction of their own because the
refused one rolls back."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from audit import repository
from audit.schemas import (
    EXPORT_FIELDS,
    REPORT_MAX_ENTRIES,
    AuditEventOut,
    AuditFilters,
    AuditPage,
    ChainReport,
    DisclosureReport,
    ExportFormat,
    ReportQuery,
    ReportSubject,
    ReportWindow,
    VerificationIncomplete,
    csv_line,
    report_entry,
)
from core.db import SYSTEM_TENANT_ID, Database
from models.audit import ActingSession, Actor, write_audit_event
from tenants.query_keys import QueryKeys
from tenants.repository import tenant_exists


async def read_page(tx: ActingSession, filters: AuditFilters, *, limit: int, cursor: str | None) -> AuditPage:
    """One page of the tenant's events, newest first; `cursor` is the previous page's `next_cursor`."""
    events = await repository.list_events(
        tx.session, tx.tenant.id, filters, limit=limit + 1, before_id=int(cursor) if cursor else None
    )
    page, more = events[:limit], len(events) > limit
    items = [AuditEventOut.model_validate(event) for event in page]
    await tx.audit(
        "audit.read", resource_type="audit_log", metadata={"filters": filters.as_metadata(), "count": len(items)}
    )
    return AuditPage(items=items, next_cursor=str(page[-1].id) if more and page else None)


async def record_export(tx: ActingSession, filters: AuditFilters, export_format: ExportFormat) -> None:
    """The export is recorded (and committed by the caller) before the first row leaves."""
    await tx.audit(
        "audit.exported",
        resource_type="audit_log",
        metadata={"filters": filters.as_metadata(), "format": export_format},
    )


async def export_lines(
    db: Database, tenant_id: uuid.UUID, filters: AuditFilters, export_format: ExportFormat
) -> AsyncIterator[str]:
    """The events oldest first as JSON lines, or CSV with a header row (formula-looking cells defused)."""
    if export_format == "csv":
        yield csv_line(EXPORT_FIELDS)
    async with db.tenant_session(tenant_id) as session:
        async for event in repository.stream_events(session, tenant_id, filters):
            record = AuditEventOut.model_validate(event).model_dump(mode="json")
            if export_format == "csv":
                yield csv_line([json.dumps(v) if isinstance(v, dict) else v for v in record.values()])
            else:
                yield json.dumps(record, separators=(",", ":")) + "\n"


async def disclosure_report(tx: ActingSession, query: ReportQuery) -> DisclosureReport:
    """The accounting of disclosures for one document (or other resource) or one actor, audited as `audit.report`.

    Read in the tenant's transaction: another tenant's ids match nothing (row-level security), so a foreign
    document id gives an empty report, the same as an unknown one."""
    events = await repository.report_events(tx.session, tx.tenant.id, query, limit=REPORT_MAX_ENTRIES + 1)
    entries = [report_entry(event) for event in events[:REPORT_MAX_ENTRIES]]
    truncated = len(events) > REPORT_MAX_ENTRIES
    await tx.audit(
        "audit.report",
        resource_type="audit_log",
        metadata={
            "subject": query.kind,
            "subject_id": query.subject_id,
            "since": query.since.isoformat(),
            "until": query.until.isoformat(),
            "format": query.format,
            "count": len(entries),
            "truncated": truncated,
        },
    )
    return DisclosureReport(
        subject=ReportSubject(kind=query.kind, id=query.subject_id),
        window=ReportWindow(since=query.since, until=query.until),
        generated_at=datetime.now(UTC),
        entries=entries,
        count=len(entries),
        truncated=truncated,
    )


async def compute_query_hash(tx: ActingSession, query_keys: QueryKeys, query: str) -> str:
    """The `query_hmac` a search for `query` records in this tenant; audited (`audit.query_hash_computed`) with
    the HMAC, never the text."""
    digest = await query_keys.digest(tx.tenant, query)
    await tx.audit("audit.query_hash_computed", resource_type="audit_log", metadata={"query_hmac": digest})
    return digest


async def verify_and_record(tx: ActingSession, *, timeout_seconds: float) -> ChainReport | VerificationIncomplete:
    """Verify the tenant's chain and record the check (`audit.verified`) in the same transaction.

    The event's `result` tells the three endings apart: `intact`, `broken` (with the first broken
    link), or `incomplete` (with the operational reason, and no verdict on the chain)."""
    report = await repository.verify_chain(tx.session, tx.tenant.id, timeout_seconds=timeout_seconds)
    if isinstance(report, VerificationIncomplete):
        await tx.audit(
            "audit.verified",
            resource_type="audit_log",
            outcome="error",
            metadata={"result": "incomplete", "reason": report.reason},
        )
        return report
    await tx.audit(
        "audit.verified",
        resource_type="audit_log",
        outcome="success" if report.valid else "error",
        metadata={
            "result": "intact" if report.valid else "broken",
            "valid": report.valid,
            "checked": report.checked,
            "first_broken_id": report.first_broken_id,
        },
    )
    return report


async def record_denial(
    db: Database,
    actor: Actor,
    tenant_id: uuid.UUID | None,
    action: str,
    reason: str,
    *,
    route: str,
    resource_type: str | None = None,
    resource_id: object = None,
) -> None:
    """Record a refusal under the tenant it concerns, or the system tenant when there is none."""
    metadata: dict[str, Any] = {"reason": reason, "route": route}
    target = tenant_id or SYSTEM_TENANT_ID
    if tenant_id is not None:
        async with db.tenant_session(tenant_id) as session:
            exists = await tenant_exists(session, tenant_id)
        if not exists:
            target = SYSTEM_TENANT_ID
            metadata["claimed_tenant_id"] = str(tenant_id)
    async with db.tenant_session(target) as session:
        await write_audit_event(
            session,
            actor.event(
                target,
                action,
                outcome="denied",
                resource_type=resource_type,
                resource_id=resource_id,
                metadata=metadata,
            ),
        )
