"""The cursor of a keyset page: where a newest-first list ordered by (created_at, id) stopped.

Opaque to clients (URL-safe base64), and client-supplied when it comes back, so it is parsed like
any other input: a cursor this API did not return is `InvalidInput` (`invalid_cursor`), and its
date must be in the window every date-time is (`core.validation`)."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

from core.errors import InvalidInput
from core.validation import check_pg_datetime

Cursor = tuple[datetime, uuid.UUID]
"""The (created_at, id) of the last row of a page."""


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode()


def decode_cursor(cursor: str) -> Cursor:
    try:
        created_at, _, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return check_pg_datetime(datetime.fromisoformat(created_at)), uuid.UUID(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidInput("invalid_cursor", "the cursor is not one this API returned") from exc
