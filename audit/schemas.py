"""Audit trail shapes: the events as the API shows them, pages, filters, exports and chain checks."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.errors import InvalidInput

ExportFormat = Literal["jsonl", "csv"]


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    id: int
    actor_id: str | None
    actor_type: str
    action: str
    resource_type: str | None
    resource_id: str | None
    outcome: str
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
    items: list[AuditEventOut]
    next_cursor: str | None


class ChainVerification(BaseModel):
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
