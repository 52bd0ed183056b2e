"""The keyset cursor every newest-first list hands out (`core.cursors`)."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import pytest

from core.cursors import decode_cursor, encode_cursor
from core.errors import InvalidInput


def test_a_cursor_comes_back_as_it_was_given() -> None:
    where = (datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC), uuid.uuid4())
    assert decode_cursor(encode_cursor(*where)) == where


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 at all!",
        base64.urlsafe_b64encode(b"2026-01-01T00:00:00+00:00|not-a-uuid").decode(),
        base64.urlsafe_b64encode(f"0001-01-01T00:00:00+14:00|{uuid.uuid4()}".encode()).decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
    ids=["garbage", "bad-id", "date-outside-the-window", "not-utf8"],
)
def test_a_cursor_this_api_did_not_return_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        decode_cursor(cursor)
    assert refused.value.code == "invalid_cursor"
