"""Audit trail shapes: the events as the API shows them, pages, filters, exports, chain checks and the
accounting of disclosures (45 CFR 164.528)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from core.errors import InvalidInput
from core.validation import MIN_DATETIME
from models.audit import ActorType, AuditLog, Outcome

ExportFormat = Literal["jsonl", "csv"]
ReportFormat = Literal["json", "csv"]
SubjectKind = Literal["resource", "actor"]


AUDIT_EVENT_EXAMPLE: dict[str, JsonValue] = {
    "id": 1042,
    "actor_id": "alice@clinic.example",
    "actor_type": "user",
    "action": "document.viewed",
    "resource_type": "document",
    "resource_id": "8a4f2c1e-6b3d-4f9a-8e7c-2d1b0a9f8e7d",
    "outcome": "success",
    "ip_address": "10.0.4.17",
    "user_agent": "phivault-client/1.0",
    "request_id": "3f6c2a1e-8d4b-4c1e-9f0a-5b7d2e6c1a90",
    "metadata": {},
    "created_at": "2026-11-24T09:31:02.114Z",
    "prev_hash": "9c1d0e7a5b3f2a8e6d4c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e",
    "row_hash": "1f2e3d4c5b6a7f8e9d0c1b2a3f4e5d6c7b8a9f0e1d2c3b4a5f6e7d8c9b0a1f2e",
}


class AuditEventOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True, populate_by_name=True, json_schema_extra={"examples": [AUDIT_EVENT_EXAMPLE]}
    )

    id: int
    actor_id: str | None
    actor_type: ActorType = Field(description="`user` and `platform` act through tokens; `system` is the worker.")
    action: str
    resource_type: str | None
    resource_id: str | None
    outcome: Outcome
    ip_address: str | None
    user_agent: str | None
    request_id: str | None
    metadata: dict[str, Any] = Field(validation_alias="metadata_")
    created_at: datetime
    prev_hash: str
    row_hash: str

    @field_validator("ip_address", mode="before")
    @classmethod
    def _ip_text(cls, value: object) -> str | None:
        return None if value is None else str(value)


EXPORT_FIELDS = list(AuditEventOut.model_fields)


class AuditPage(BaseModel):
    """Events newest first; pass `next_cursor` back as `cursor` for the next page (null: no more)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [AUDIT_EVENT_EXAMPLE], "next_cursor": "1042"}]})

    items: list[AuditEventOut]
    next_cursor: str | None


class ChainVerification(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"valid": True, "checked": 1042, "first_broken_id": None},
                {"valid": False, "checked": 1042, "first_broken_id": 977},
            ]
        }
    )

    valid: bool
    checked: int
    first_broken_id: int | None


@dataclass(frozen=True)
class AuditFilters:
    action: str | None = None
    actor_id: str | None = None
    resource_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise InvalidInput("validation_error", "since must be earlier than until")

    def as_metadata(self) -> dict[str, str]:
        """The filters for the `audit.read` event: identifiers and times, never free text."""
        return {k: str(v) for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class ChainReport:
    valid: bool
    checked: int
    first_broken_id: int | None


@dataclass(frozen=True)
class VerificationIncomplete:
    """The check itself could not finish (it timed out, or the database refused it for lack of resources).

    This says nothing about the chain: it is reported and recorded apart from a broken link, so an
    operational failure never reads as a tamper alarm."""

    reason: str


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet may read as the start of a formula (OWASP, CSV injection)."""


def csv_cell(value: object) -> object:
    """A text cell that a spreadsheet would run as a formula gets a leading `'`, so it is shown as text."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_line(values: Sequence[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow([csv_cell(value) for value in values])
    return buffer.getvalue()


REPORT_WINDOW = timedelta(days=6 * 365 + 2)
"""Six years, leap days included: what 164.528(a) asks an accounting to cover, and the longest one window spans."""
REPORT_MAX_ENTRIES = 10_000
"""A report holds at most this many entries, oldest first; past it, `truncated` is true: narrow the window."""
SEARCH_ACTION = "search.query"


@dataclass(frozen=True)
class ReportQuery:
    """Whose accesses, over which window: a resource (a document id: who accessed it, searches that returned
    it included) or an actor (what they accessed)."""

    kind: SubjectKind
    subject_id: str
    since: datetime
    until: datetime
    format: ReportFormat = "json"

    @classmethod
    def parse(
        cls,
        *,
        resource_id: str | None,
        actor_id: str | None,
        since: datetime | None,
        until: datetime | None,
        now: datetime,
        report_format: ReportFormat = "json",
    ) -> ReportQuery:
        if (resource_id is None) == (actor_id is None):
            raise InvalidInput("validation_error", "give exactly one of resource_id and actor_id")
        until = until or now
        if since is None:
            since = until - REPORT_WINDOW if until - MIN_DATETIME > REPORT_WINDOW else MIN_DATETIME
        if since >= until:
            raise InvalidInput("validation_error", "since must be earlier than until")
        if until - since > REPORT_WINDOW:
            raise InvalidInput("validation_error", "a report covers at most six years: narrow since..until")
        if resource_id is not None:
            return cls(kind="resource", subject_id=resource_id, since=since, until=until, format=report_format)
        assert actor_id is not None
        return cls(kind="actor", subject_id=actor_id, since=since, until=until, format=report_format)


class ReportEntry(BaseModel):
    """One access: an audit event about the subject, with the documents a search returned."""

    model_config = ConfigDict(from_attributes=True)

    at: datetime
    actor_id: str | None
    actor_type: ActorType
    action: str
    outcome: Outcome
    resource_type: str | None
    resource_id: str | None
    documents: list[str] | None = Field(description="For `search.query` entries: the documents the search returned.")
    request_id: str | None
    ip_address: str | None

    @field_validator("ip_address", mode="before")
    @classmethod
    def _ip_text(cls, value: object) -> str | None:
        return None if value is None else str(value)


REPORT_FIELDS = list(ReportEntry.model_fields)


class ReportSubject(BaseModel):
    kind: SubjectKind
    id: str


class ReportWindow(BaseModel):
    since: datetime
    until: datetime


REPORT_EXAMPLE: dict[str, JsonValue] = {
    "subject": {"kind": "resource", "id": "8a4f2c1e-6b3d-4f9a-8e7c-2d1b0a9f8e7d"},
    "window": {"since": "2020-11-24T09:31:02Z", "until": "2026-11-24T09:31:02Z"},
    "generated_at": "2026-11-24T09:31:02.114Z",
    "entries": [
        {
            "at": "2026-11-24T09:30:41.002Z",
            "actor_id": "alice@clinic.example",
            "actor_type": "user",
            "action": "search.query",
            "outcome": "success",
            "resource_type": "search",
            "resource_id": None,
            "documents": ["8a4f2c1e-6b3d-4f9a-8e7c-2d1b0a9f8e7d"],
            "request_id": "3f6c2a1e-8d4b-4c1e-9f0a-5b7d2e6c1a90",
            "ip_address": "10.0.4.17",
        }
    ],
    "count": 1,
    "truncated": False,
}


class DisclosureReport(BaseModel):
    """Every access to the subject in the window, oldest first (at most `REPORT_MAX_ENTRIES`: see `truncated`)."""

    model_config = ConfigDict(json_schema_extra={"examples": [REPORT_EXAMPLE]})

    subject: ReportSubject
    window: ReportWindow
    generated_at: datetime
    entries: list[ReportEntry]
    count: int
    truncated: bool = Field(description=f"More than {REPORT_MAX_ENTRIES} entries matched: narrow the window.")


def report_entry(event: AuditLog) -> ReportEntry:
    """An audit event as a report entry."""
    searched = event.action == SEARCH_ACTION
    return ReportEntry(
        at=event.created_at,
        actor_id=event.actor_id,
        actor_type=event.actor_type,
        action=event.action,
        outcome=event.outcome,
        resource_type=event.resource_type,
        resource_id=event.resource_id,
        documents=list(event.metadata_.get("document_ids", [])) if searched else None,
        request_id=event.request_id,
        ip_address=event.ip_address,
    )


def report_csv_lines(report: DisclosureReport) -> list[str]:
    """The entries as CSV with a header row; a search's documents are one cell, ids separated by spaces."""
    lines = [csv_line(REPORT_FIELDS)]
    for entry in report.entries:
        record = entry.model_dump(mode="json")
        documents = record["documents"]
        record["documents"] = None if documents is None else " ".join(documents)
        lines.append(csv_line(["" if value is None else value for value in record.values()]))
    return lines
