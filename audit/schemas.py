"""Audit trail shapes: the events as the API shows them, pages, filters, exports and chain checks."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from core.errors import InvalidInput
from models.audit import ActorType, Outcome

ExportFormat = Literal["jsonl", "csv"]


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
