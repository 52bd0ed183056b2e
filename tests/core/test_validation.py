"""The shared input types: what PostgreSQL (through asyncpg) can store is accepted, nothing else, and a refusal
never quotes the value."""

from __future__ import annotations

import json
import math
import sys
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import Field, TypeAdapter, ValidationError

from core.validation import (
    MAX_DATETIME,
    MAX_JSON_DEPTH,
    MIN_DATETIME,
    PG_TEXT,
    PgDateTime,
    PgJSONObject,
    PgJSONScalar,
    PgText,
)

TEXT = TypeAdapter(PgText)
SHORT_TEXT = TypeAdapter(Annotated[str, Field(max_length=5), PG_TEXT])
OPTIONAL_TEXT = TypeAdapter(Annotated[str | None, Field(max_length=5), PG_TEXT])
DATETIME = TypeAdapter(PgDateTime)
SCALAR = TypeAdapter(PgJSONScalar)
OBJECT = TypeAdapter(PgJSONObject)

SECRET = "Zq7secret"
"""In every refused value, so that a message quoting it would be caught."""


def refusal(adapter: TypeAdapter[Any], value: object, *, json_input: bool = False) -> str:
    """The messages of the refusal of `value`, checked not to quote it."""
    with pytest.raises(ValidationError) as caught:
        if json_input:
            assert isinstance(value, str)
            adapter.validate_json(value)
        else:
            adapter.validate_python(value)
    messages = "; ".join(error["msg"] for error in caught.value.errors())
    assert SECRET not in messages
    return messages


# Text


@pytest.mark.parametrize("value", ["", "plain", "Zoë 😀", "\ufffd", "\U0010ffff"])
def test_text_postgresql_stores_is_accepted(value: str) -> None:
    assert TEXT.validate_python(value) == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (f"{SECRET}\x00", "must not contain NUL characters"),
        (f"\x00{SECRET}", "must not contain NUL characters"),
        (SECRET + chr(0xD800), "must not contain unpaired surrogates"),
        (SECRET + chr(0xDFFF), "must not contain unpaired surrogates"),
        (SECRET + chr(0xDC00) + chr(0xD800), "must not contain unpaired surrogates"),
    ],
    ids=["nul", "leading-nul", "lead-surrogate", "trail-surrogate", "reversed-pair"],
)
def test_text_postgresql_refuses_is_refused(value: str, reason: str) -> None:
    assert refusal(TEXT, value) == reason


def test_a_length_limit_before_the_check_keeps_its_own_message() -> None:
    assert refusal(SHORT_TEXT, SECRET) == "String should have at most 5 characters"
    assert refusal(SHORT_TEXT, "a\x00") == "must not contain NUL characters"
    assert OPTIONAL_TEXT.validate_python(None) is None
    assert refusal(OPTIONAL_TEXT, "\x00") == "must not contain NUL characters"


@given(st.text(st.characters(exclude_categories=()) | st.sampled_from(["\x00", *map(chr, (0xD800, 0xDBFF, 0xDC00))])))
def test_text_is_accepted_exactly_when_utf8_can_encode_it_without_nul(value: str) -> None:
    try:
        value.encode()
        storable = "\x00" not in value
    except UnicodeEncodeError:
        storable = False
    try:
        assert TEXT.validate_python(value) == value
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted == storable


# Date-times


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-01-15T09:00:00+02:00", datetime(2025, 1, 15, 7, tzinfo=UTC)),
        ("2025-01-15T07:00:00Z", datetime(2025, 1, 15, 7, tzinfo=UTC)),
        ("2025-01-15T07:00:00", datetime(2025, 1, 15, 7, tzinfo=UTC)),
        ("2025-01-15", datetime(2025, 1, 15, tzinfo=UTC)),
        ("0001-01-02T00:00:00Z", MIN_DATETIME),
        ("0001-01-02T14:00:00+14:00", MIN_DATETIME),
        ("9999-12-30T23:59:59.999999Z", MAX_DATETIME),
        ("9999-12-30T09:59:59.999999-14:00", MAX_DATETIME),
    ],
    ids=["offset", "z", "naive-is-utc", "date-alone", "first", "first-with-offset", "last", "last-with-offset"],
)
def test_datetimes_in_the_window_come_back_in_utc(value: str, expected: datetime) -> None:
    parsed = DATETIME.validate_python(value)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "0001-01-01",
        "0001-01-01T23:59:59.999999Z",
        "0001-01-02T13:59:59+14:00",
        "9999-12-31T23:59:59.999999",
        "9999-12-31T00:00:00Z",
        "9999-12-30T23:59:59-00:01",
    ],
)
def test_datetimes_outside_the_window_are_refused(value: str) -> None:
    assert refusal(DATETIME, value) == "must lie between 0001-01-02 and 9999-12-30 (UTC)"


def test_python_datetimes_are_checked_too() -> None:
    edge = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))
    assert refusal(DATETIME, edge) == "must lie between 0001-01-02 and 9999-12-30 (UTC)"
    assert DATETIME.validate_python(datetime(2025, 1, 1)) == datetime(2025, 1, 1, tzinfo=UTC)


OFFSETS = st.none() | st.integers(-1439, 1439).map(lambda minutes: timezone(timedelta(minutes=minutes)))
DATETIMES = st.builds(
    lambda moment, offset: moment.replace(tzinfo=offset),
    st.datetimes() | st.datetimes(max_value=datetime(1, 1, 3)) | st.datetimes(min_value=datetime(9999, 12, 29)),
    OFFSETS,
)
"""Any date-time, naive or at any whole-minute offset, a third of them within two days of the calendar's ends."""


@given(DATETIMES)
def test_a_datetime_is_accepted_exactly_when_its_utc_form_is_in_the_window(value: datetime) -> None:
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        utc: datetime | None = aware.astimezone(UTC)
    except OverflowError:
        utc = None
    in_window = utc is not None and MIN_DATETIME <= utc <= MAX_DATETIME
    try:
        parsed = DATETIME.validate_python(value.isoformat())
    except ValidationError:
        assert not in_window
    else:
        assert in_window
        assert parsed == utc
        # Any rendering of an accepted value, at any offset, stays within Python's calendar.
        for hours in (-23, 23):
            parsed.astimezone(timezone(timedelta(hours=hours)))


# JSON


@pytest.mark.parametrize("value", ["text", True, False, 0, -1, 2**63, 10**30, 1.5, -0.0, sys.float_info.max])
def test_json_scalars_jsonb_stores_are_accepted(value: object) -> None:
    assert SCALAR.validate_python(value) == value


@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, -math.inf, 10**400, -(10**400), int(sys.float_info.max) * 2],
    ids=["nan", "inf", "-inf", "10**400", "-10**400", "2*max-double"],
)
def test_json_numbers_beyond_a_double_are_refused(value: float) -> None:
    assert refusal(SCALAR, value) == NUMBER_RANGE


@pytest.mark.parametrize("value", [None, [], {}])
def test_json_scalars_are_scalars(value: object) -> None:
    refusal(SCALAR, value)


def _nested(leaf: str, depth: int) -> str:
    """`leaf` inside an object nested `depth` levels deep, alternating objects and arrays."""
    text = leaf
    for level in range(depth - 1):
        text = f'{{"k{level}": {text}}}' if level % 2 else f"[{text}]"
    return f'{{"top": {text}}}'


NUMBER_RANGE = "numbers must be finite and within the range of a double"
REFUSED_JSON = {
    # leaf: (JSON text, reason from Python values, reason from JSON text, where pydantic's parser refuses first)
    "nul-value": (f'"{SECRET}\\u0000"', "must not contain NUL characters", "must not contain NUL characters"),
    "nul-key": (f'{{"{SECRET}\\u0000": 1}}', "must not contain NUL characters", "must not contain NUL characters"),
    "surrogate-value": (f'"{SECRET}\\ud800"', "must not contain unpaired surrogates", "Invalid JSON"),
    "surrogate-key": (f'{{"{SECRET}\\udc00": 1}}', "must not contain unpaired surrogates", "Invalid JSON"),
    "nan": ("NaN", NUMBER_RANGE, NUMBER_RANGE),
    "infinity": ("-Infinity", NUMBER_RANGE, NUMBER_RANGE),
    "float-overflow": ("1e400", NUMBER_RANGE, NUMBER_RANGE),
    "int-overflow": ("1" + "0" * 400, NUMBER_RANGE, NUMBER_RANGE),
}


@pytest.mark.parametrize("depth", [1, 2, 5, MAX_JSON_DEPTH - 1])
@pytest.mark.parametrize(("leaf", "python_reason", "json_reason"), list(REFUSED_JSON.values()), ids=list(REFUSED_JSON))
def test_json_refused_at_every_depth(leaf: str, python_reason: str, json_reason: str, depth: int) -> None:
    """As Python values (`json.loads`, which is what FastAPI hands over) and as JSON text (pydantic's parser)."""
    document = _nested(leaf, depth)
    assert python_reason in refusal(OBJECT, json.loads(document))
    assert json_reason in refusal(OBJECT, document, json_input=True)


def test_json_nesting_is_bounded() -> None:
    at_limit = json.loads('{"a": ' + "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1) + "}")
    assert OBJECT.validate_python(at_limit) == at_limit
    too_deep = json.loads('{"a": ' + "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH + "}")
    assert refusal(OBJECT, too_deep) == f"must not nest deeper than {MAX_JSON_DEPTH} levels"
    far_too_deep = json.loads('{"a": ' + "[" * 900 + "]" * 900 + "}")
    assert refusal(OBJECT, far_too_deep) == f"must not nest deeper than {MAX_JSON_DEPTH} levels"


def test_a_json_object_is_an_object() -> None:
    assert refusal(OBJECT, "[1, 2]", json_input=True) == "Input should be an object"
    document = {"ward": "3B", "name": "Zoë 😀", "big": 10**30, "tags": [[1, 2], {"k": None}], "ok": True}
    assert OBJECT.validate_python(document) == document
