"""The audit trail for tenant administrators: read, export and verify. Each is itself audited."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from api.context import TenantScope, tenant_scope
from api.errors import APIError
from api.openapi import BEARER, error_responses
from api.schemas import AuditEventOut, AuditPage, ChainVerification
from core.validation import PG_TEXT, PgDateTime
from models.audit_trail import AuditFilters, VerificationIncomplete, list_events, stream_events, verify_and_record

router = APIRouter(prefix="/v1/audit-logs", tags=["audit"])

Admins = Annotated[TenantScope, Depends(tenant_scope("admin"))]
EXPORT_FIELDS = list(AuditEventOut.model_fields)
VERIFY_RETRY_AFTER_SECONDS = 60


def _filters(
    action: Annotated[str | None, Query(max_length=100), PG_TEXT] = None,
    actor_id: Annotated[str | None, Query(max_length=255), PG_TEXT] = None,
    resource_id: Annotated[str | None, Query(max_length=255), PG_TEXT] = None,
    since: PgDateTime | None = None,
    until: PgDateTime | None = None,
) -> AuditFilters:
    """A dependency, so a bad filter is refused before the export's stream starts (never a 200 cut off)."""
    if since is not None and until is not None and since >= until:
        raise APIError(422, "validation_error", "since must be earlier than until")
    return AuditFilters(action=action, actor_id=actor_id, resource_id=resource_id, since=since, until=until)


Filters = Annotated[AuditFilters, Depends(_filters)]


@router.get("", response_model=AuditPage, responses=error_responses(401, 403, 422, 503), openapi_extra=BEARER)
async def read_audit_logs(
    scope: Admins,
    filters: Filters,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$"), PG_TEXT] = None,
) -> AuditPage:
    async with scope.transaction() as tx:
        events = await list_events(
            tx.session, tx.tenant.id, filters, limit=limit + 1, before_id=int(cursor) if cursor else None
        )
        page, more = events[:limit], len(events) > limit
        items = [AuditEventOut.model_validate(event) for event in page]
        await tx.audit(
            "audit.read", resource_type="audit_log", metadata={"filters": filters.as_metadata(), "count": len(items)}
        )
    return AuditPage(items=items, next_cursor=str(page[-1].id) if more and page else None)


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet may read as the start of a formula (OWASP, CSV injection)."""


def csv_cell(value: object) -> object:
    """A text cell that a spreadsheet would run as a formula gets a leading `'`, so it is shown as text."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _csv_line(values: Sequence[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow([csv_cell(value) for value in values])
    return buffer.getvalue()


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/x-ndjson": {}, "text/csv": {}}, "description": "the events, oldest first"},
        **error_responses(401, 403, 422, 503),
    },
    openapi_extra=BEARER,
)
async def export_audit_logs(
    scope: Admins, filters: Filters, export_format: Annotated[Literal["jsonl", "csv"], Query(alias="format")] = "jsonl"
) -> StreamingResponse:
    # The export is recorded (and committed) before the first row leaves.
    async with scope.transaction() as tx:
        await tx.audit(
            "audit.exported",
            resource_type="audit_log",
            metadata={"filters": filters.as_metadata(), "format": export_format},
        )

    async def rows() -> AsyncIterator[str]:
        if export_format == "csv":
            yield _csv_line(EXPORT_FIELDS)
        async with scope.state.database.tenant_session(scope.tenant_id) as session:
            async for event in stream_events(session, scope.tenant_id, filters):
                record = AuditEventOut.model_validate(event).model_dump(mode="json")
                if export_format == "csv":
                    yield _csv_line([json.dumps(v) if isinstance(v, dict) else v for v in record.values()])
                else:
                    yield json.dumps(record, separators=(",", ":")) + "\n"

    media_type = "text/csv" if export_format == "csv" else "application/x-ndjson"
    filename = f"audit-{scope.tenant_id}.{export_format}"
    return StreamingResponse(
        rows(),
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


@router.get("/verify", response_model=ChainVerification, responses=error_responses(401, 403, 503), openapi_extra=BEARER)
async def verify_audit_logs(scope: Admins) -> ChainVerification:
    async with scope.transaction() as tx:
        report = await verify_and_record(tx, timeout_seconds=scope.state.settings.audit_verify_timeout_seconds)
    if isinstance(report, VerificationIncomplete):
        raise APIError(
            503,
            "verification_incomplete",
            f"the audit chain could not be checked ({report.reason}); this is no verdict on the chain, try again later",
            headers={"Retry-After": str(VERIFY_RETRY_AFTER_SECONDS)},
        )
    return ChainVerification(valid=report.valid, checked=report.checked, first_broken_id=report.first_broken_id)
