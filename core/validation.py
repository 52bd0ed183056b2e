"""What PostgreSQL (through asyncpg) accepts, as pydantic types: the one check for every client-supplied value.

* Text (`PgText`): PostgreSQL `text` and `jsonb` refuse NUL, and asyncpg cannot encode a Python string
  holding an unpaired surrogate (JSON's `"\\ud800"` escape makes one) to UTF-8. Both are refused.
* Date-times (`PgDateTime`): a value without an offset is taken as UTC; every value is returned in UTC
  and must lie in `MIN_DATETIME`..`MAX_DATETIME`. A day inside Python's own calendar at each end, so
  the value and any rendering of it at any UTC offset stay representable (near year 1 or 9999,
  `.astimezone(UTC)` overflows); PostgreSQL's `timestamptz` range is far wider.
* JSON (`PgJSONObject`, `PgJSONScalar`): every string and every object key is `PgText`; every number is
  finite and, integers too, within a double's range (what any JSON reader on the other side can
  hold); objects and arrays nest at most `MAX_JSON_DEPTH` levels, the outermost being level 1.

Errors carry fixed messages, never the value: it could be PHI.
"""

from __future__ import annotations

import math
import sys
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, JsonValue
from pydantic_core import PydanticCustomError

MIN_DATETIME = datetime(1, 1, 2, tzinfo=UTC)
MAX_DATETIME = datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)
MAX_JSON_DEPTH = 32
MAX_JSON_NUMBER = sys.float_info.max


def check_pg_text(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("text_nul", "must not contain NUL characters")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise PydanticCustomError("text_surrogate", "must not contain unpaired surrogates") from None
    return value


def check_pg_datetime(value: datetime) -> datetime:
    """`value` in UTC (naive taken as UTC), or a refusal when it falls outside the window."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    try:
        utc = aware.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not MIN_DATETIME <= utc <= MAX_DATETIME:
        raise PydanticCustomError("datetime_range", "must lie between 0001-01-02 and 9999-12-30 (UTC)")
    return utc


def check_json_number(value: float) -> float:
    """A finite number within a double's range. Integers are compared exactly (`math.isfinite` of a huge
    int would overflow)."""
    finite = math.isfinite(value) if isinstance(value, float) else abs(value) <= MAX_JSON_NUMBER
    if not finite:
        raise PydanticCustomError("number_range", "numbers must be finite and within the range of a double")
    return value


def check_pg_json(value: object) -> object:
    """Walk a JSON value (iteratively: depth is bounded here, not by the stack) and refuse what jsonb cannot take.

    Only JSON types are judged; anything else is left to the type validation beside this check.
    """
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            check_pg_text(item)
        elif isinstance(item, int | float) and not isinstance(item, bool):
            check_json_number(item)
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise PydanticCustomError(
                    "json_depth", "must not nest deeper than {max_depth} levels", {"max_depth": MAX_JSON_DEPTH}
                )
            if isinstance(item, dict):
                for key in item:
                    if isinstance(key, str):
                        check_pg_text(key)
                pending.extend((child, depth + 1) for child in item.values())
            else:
                pending.extend((child, depth + 1) for child in item)
    return value


def _pg_text_or_none(value: str | None) -> str | None:
    return None if value is None else check_pg_text(value)


PG_TEXT = AfterValidator(_pg_text_or_none)
"""The text check as an annotation, placed *after* any length limit so that the limit keeps its own message:
`Annotated[str, Field(max_length=100), PG_TEXT]`, `Annotated[str | None, Query(max_length=100), PG_TEXT]`."""

PgText = Annotated[str, PG_TEXT]
"""A string PostgreSQL can store, of any length."""

PgDateTime = Annotated[datetime, AfterValidator(check_pg_datetime)]
"""A date-time in the supported window, always returned in UTC."""

PgJSONScalar = Annotated[str | int | float | bool, AfterValidator(check_pg_json)]
"""A JSON string, number or boolean jsonb can store."""

PgJSONObject = Annotated[dict[str, JsonValue], BeforeValidator(check_pg_json)]
"""A JSON object jsonb can store."""
