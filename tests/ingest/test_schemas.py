"""Parsing what a client sends about documents (`ingest.schemas`): the list cursor and the metadata field."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import pytest

from core.errors import InvalidInput
from ingest.schemas import MAX_METADATA_BYTES, decode_cursor, encode_cursor, parse_metadata


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


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_no_metadata_is_an_empty_object(raw: str | None) -> None:
    assert parse_metadata(raw) == {}


def test_metadata_is_a_json_object() -> None:
    assert parse_metadata('{"ward": "cardiology", "beds": 12}') == {"ward": "cardiology", "beds": 12}


@pytest.mark.parametrize(
    "raw",
    ["[1, 2]", "not json", '{"a": "\\u0000"}', '{"a": ' + "1" * 400 + "}", '"' + "x" * MAX_METADATA_BYTES + '"'],
    ids=["array", "not-json", "nul", "number-beyond-a-double", "too-large"],
)
def test_unusable_metadata_is_refused_without_echoing_it(raw: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_metadata(raw)
    assert refused.value.code == "invalid_metadata"
    assert raw[:20] not in refused.value.message.removeprefix("metadata: ")
