"""Audit filters and CSV cells (`audit.schemas`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from audit.schemas import AuditFilters, csv_cell, csv_line
from core.errors import InvalidInput

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("until", [NOW, NOW - timedelta(seconds=1)], ids=["equal", "earlier"])
def test_a_window_that_ends_before_it_starts_is_refused(until: datetime) -> None:
    with pytest.raises(InvalidInput) as refused:
        AuditFilters(since=NOW, until=until)
    assert (refused.value.code, refused.value.message) == ("validation_error", "since must be earlier than until")


def test_the_filters_recorded_are_the_ones_given() -> None:
    filters = AuditFilters(action="document.viewed", since=NOW, until=NOW + timedelta(days=1))
    assert filters.as_metadata() == {
        "action": "document.viewed",
        "since": str(NOW),
        "until": str(NOW + timedelta(days=1)),
    }


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_a_formula_looking_cell_is_shown_as_text(value: str) -> None:
    assert csv_cell(value) == "'" + value


def test_a_csv_line_defuses_its_cells() -> None:
    assert csv_line(["=HYPERLINK(1)", 3, "ok"]) == "'=HYPERLINK(1),3,ok\r\n"


def test_other_cells_are_unchanged() -> None:
    assert [csv_cell(v) for v in ("document.viewed", 7, None)] == ["document.viewed", 7, None]
