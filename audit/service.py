"""The audit trail for tenant administrators (read, export, verify, each itself audited), and the
record of refusals, which are written in a transaction of their own because the refused one rolls back."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from audit import repository
from audit.schemas import (
    EXPORT_FIELDS,
    AuditEventOut,
    AuditFilters,
    AuditPage,
    ChainReport,
    ExportFormat,
    VerificationIncomplete,
    csv_line,
)
from core.db import SYSTEM_TENANT_ID, Database
from models.audit import ActingSession, Actor, write_audit_event
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
