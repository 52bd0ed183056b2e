"""Document shapes of the HTTP contract, and the parsing of what a client sends about documents:
the upload's metadata field and the list cursor. Bad input raises `InvalidInput` (a 422 at the edge)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter, ValidationError

from core.errors import InvalidInput
from core.validation import PgJSONObject, PgText

DocumentStatus = Literal["queued", "processing", "ready", "failed"]


class DocumentProgress(BaseModel):
    """How far processing has got: the document's chunks, and how many of them are embedded so far."""

    model_config = ConfigDict(from_attributes=True)

    chunks_total: int
    chunks_embedded: int


class DocumentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    id: uuid.UUID
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    status: DocumentStatus
    progress: DocumentProgress | None = Field(
        description="Set while `processing`, once the document's chunks are counted; `null` otherwise."
    )
    error_code: str | None
    error_message: str | None
    chunk_count: int
    metadata: dict[str, Any] = Field(validation_alias="metadata_")
    created_at: datetime
    updated_at: datetime


class UploadOut(DocumentOut):
    duplicate: bool = False


class DocumentPage(BaseModel):
    items: list[DocumentOut]
    next_cursor: str | None


MAX_METADATA_BYTES = 16 * 1024
METADATA_TEXT = TypeAdapter(PgText)
METADATA = TypeAdapter(PgJSONObject)


def parse_metadata(raw: object) -> dict[str, JsonValue]:
    """The upload's `metadata` form field: a JSON object jsonb can store (`core.validation`).

    Reasons only: keys are chosen by the client and could be PHI, so no location inside the object is named.
    """
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return {}
    if not isinstance(raw, str):
        raise InvalidInput("invalid_metadata", "metadata: must be a form field holding a JSON object")
    try:
        # Its own text first: a multipart charset such as `unicode_escape` can put NUL or a lone surrogate in it.
        text = METADATA_TEXT.validate_python(raw)
        if len(text.encode()) > MAX_METADATA_BYTES:
            raise InvalidInput("invalid_metadata", f"metadata: must be at most {MAX_METADATA_BYTES} bytes of JSON")
        return METADATA.validate_json(text)
    except ValidationError as exc:
        reasons = dict.fromkeys(str(error["msg"]) for error in exc.errors())
        raise InvalidInput("invalid_metadata", "metadata: " + "; ".join(reasons)) from None
