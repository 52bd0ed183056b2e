"""Parsing what a client sends about documents (`ingest.schemas`): the metadata field."""

from __future__ import annotations

import pytest

from core.errors import InvalidInput
from ingest.schemas import MAX_METADATA_BYTES, parse_metadata


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
