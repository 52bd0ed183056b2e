"""The audit trail for tenant administrators: read, export, verify and the disclosures report (the rules are in
`audit.service`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response, StreamingResponse

from api.context import TenantScope, tenant_scope
from api.errors import APIError
from api.openapi import BEARER, error_responses
from audit import service
from audit.schemas import (
    AUDIT_EVENT_EXAMPLE,
    EXPORT_FIELDS,
    REPORT_EXAMPLE,
    REPORT_FIELDS,
    REPORT_MAX_ENTRIES,
    AuditFilters,
    AuditPage,
    ChainVerification,
    DisclosureReport,
    ExportFormat,
    ReportFormat,
    ReportQuery,
    VerificationIncomplete,
    csv_line,
    report_csv_lines,
)
from core.validation import PG_TEXT, PgDateTime

router = APIRouter(prefix="/v1/audit-logs", tags=["audit"])

Admins = Annotated[TenantScope, Depends(tenant_scope("admin"))]
VERIFY_RETRY_AFTER_SECONDS = 60
EXPORT_MEDIA_TYPES = {"csv": "text/csv", "jsonl": "application/x-ndjson"}


def _filters(
    action: Annotated[str | None, Query(max_length=100), PG_TEXT] = None,
    actor_id: Annotated[str | None, Query(max_length=255), PG_TEXT] = None,
    resource_id: Annotated[str | None, Query(max_length=255), PG_TEXT] = None,
    since: PgDateTime | None = None,
    until: PgDateTime | None = None,
) -> AuditFilters:
    """A dependency, so a bad filter is refused before the export's stream starts (never a 200 cut off)."""
    return AuditFilters(action=action, actor_id=actor_id, resource_id=resource_id, since=since, until=until)


Filters = Annotated[AuditFilters, Depends(_filters)]


def _report_query(
    resource_id: Annotated[str | None, Query(max_length=255), PG_TEXT] = None,
    actor_id: Annotated[str | None, Query(max_length=255), PG_TEXT] = None,
    since: PgDateTime | None = None,
    until: PgDateTime | None = None,
    report_format: Annotated[ReportFormat, Query(alias="format")] = "json",
) -> ReportQuery:
    """The subject, the window and the format, all validated before any of them is judged (a bad `format` is a
    422 naming it, whatever the subject)."""
    return ReportQuery.parse(
        resource_id=resource_id,
        actor_id=actor_id,
        since=since,
        until=until,
        now=datetime.now(UTC),
        report_format=report_format,
    )


ReportSubjectQuery = Annotated[ReportQuery, Depends(_report_query)]


@router.get(
    "",
    response_model=AuditPage,
    responses=error_responses(401, 403, 422, 503),
    openapi_extra=BEARER,
    summary="Read the audit trail",
    description=(
        "The tenant's audit events, newest first, filtered by `action`, `actor_id`, `resource_id` and a "
        "`since`..`until` window. Pages hold `limit` events (1 to 500, default 100); pass `next_cursor` back as "
        "`cursor` until it is null. Events carry ids and hashes, never document text or queries. Role: `admin`. "
        "Audited as `audit.read`."
    ),
)
async def read_audit_logs(
    scope: Admins,
    filters: Filters,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$"), PG_TEXT] = None,
) -> AuditPage:
    async with scope.transaction() as tx:
        return await service.read_page(tx, filters, limit=limit, cursor=cursor)


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {
                "application/x-ndjson": {"example": json.dumps(AUDIT_EVENT_EXAMPLE, separators=(",", ":")) + "\n"},
                "text/csv": {"example": csv_line(EXPORT_FIELDS)},
            },
            "description": "the events, oldest first",
        },
        **error_responses(401, 403, 422, 503),
    },
    openapi_extra=BEARER,
    summary="Export the audit trail",
    description=(
        "Every event that matches the filters, oldest first, streamed as JSON lines (`format=jsonl`, the "
        "default) or CSV with a header row (`format=csv`; cells a spreadsheet would run as formulas are "
        "prefixed with `'`). Each line has the fields of an audit event. Role: `admin`. Audited as "
        "`audit.exported` before the first line is sent."
    ),
)
async def export_audit_logs(
    scope: Admins, filters: Filters, export_format: Annotated[ExportFormat, Query(alias="format")] = "jsonl"
) -> StreamingResponse:
    async with scope.transaction() as tx:
        await service.record_export(tx, filters, export_format)
    filename = f"audit-{scope.tenant_id}.{export_format}"
    return StreamingResponse(
        service.export_lines(scope.state.database, scope.tenant_id, filters, export_format),
        media_type=EXPORT_MEDIA_TYPES[export_format],
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


@router.get(
    "/verify",
    response_model=ChainVerification,
    responses=error_responses(401, 403, 503),
    openapi_extra=BEARER,
    summary="Verify the audit chain",
    description=(
        "Recomputes the tenant's hash chain: `valid` is false, with `first_broken_id`, when a row was edited, "
        "removed or inserted out of band. A check that cannot finish in time answers 503 "
        "`verification_incomplete`, which says nothing about the chain. Role: `admin`. Audited as "
        "`audit.verified` with the result."
    ),
)
async def verify_audit_logs(scope: Admins) -> ChainVerification:
    async with scope.transaction() as tx:
        report = await service.verify_and_record(tx, timeout_seconds=scope.state.settings.audit_verify_timeout_seconds)
    if isinstance(report, VerificationIncomplete):
        raise APIError(
            503,
            "verification_incomplete",
            f"the audit chain could not be checked ({report.reason}); this is no verdict on the chain, try again later",
            headers={"Retry-After": str(VERIFY_RETRY_AFTER_SECONDS)},
        )
    return ChainVerification(valid=report.valid, checked=report.checked, first_broken_id=report.first_broken_id)


@router.get(
    "/report",
    response_model=DisclosureReport,
    responses={
        200: {
            "content": {
                "application/json": {"example": REPORT_EXAMPLE},
                "text/csv": {"example": csv_line(REPORT_FIELDS)},
            },
            "description": "the accesses, oldest first",
        },
        **error_responses(401, 403, 422, 503),
    },
    openapi_extra=BEARER,
    summary="Account for disclosures (45 CFR 164.528)",
    description=(
        "Who accessed a document (`resource_id`: every event about it, and every search whose results included "
        "its chunks) or what a person accessed (`actor_id`: every event by them, with the documents each search "
        "returned); exactly one of the two. The window is `since`..`until`, by default the six years before now, "
        "and at most six years long. Entries come oldest first, at most "
        f"{REPORT_MAX_ENTRIES}; `truncated` is true when more matched (narrow the window). `format=csv` gives the "
        "entries as CSV with a header row (a search's documents separated by spaces; formula-looking cells "
        "prefixed with `'`) and the flag in `X-Report-Truncated`. Another tenant's ids match nothing. Role: "
        "`admin`. Audited as `audit.report`."
    ),
)
async def disclosures_report(scope: Admins, query: ReportSubjectQuery) -> Response:
    async with scope.transaction() as tx:
        report = await service.disclosure_report(tx, query)
    if query.format == "json":
        return JSONResponse(report.model_dump(mode="json"), headers={"Cache-Control": "no-store"})
    headers = {"Cache-Control": "no-store", "X-Report-Truncated": str(report.truncated).lower()}
    return Response("".join(report_csv_lines(report)), media_type="text/csv", headers=headers)
