"""Upload metadata the vault refuses (not a JSON object, too big, too deep, values PostgreSQL cannot store)."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from core.settings import Settings
from tests.harness import upload
from tests.security.bad_input import assert_nothing_stored, stored
from tests.security.error_shape import assert_error

INVALID_METADATA = {
    "not-json": "not json",
    "array": "[1,2]",
    "string": '"a string"',
    "number": "42",
    "null": "null",
    "over-16KiB": json.dumps({"note": "x" * 20_000}),
    "nan": '{"a": NaN}',
    "infinity": '{"a": -Infinity}',
    "float-overflow": '{"a": 1e400}',
    "nul-escape": '{"a": "x\\u0000y"}',
    "nul-escape-in-key": '{"x\\u0000y": 1}',
    "lone-surrogate": '{"a": "\\ud800"}',
    "nesting-past-the-parser": '{"a": ' + "[" * 5000 + "]" * 5000 + "}",
    "nesting-900": '{"a": ' + "[" * 899 + "]" * 899 + "}",
    "nesting-33": '{"a": ' + "[" * 32 + "]" * 32 + "}",
}


@pytest.mark.parametrize("metadata", list(INVALID_METADATA.values()), ids=list(INVALID_METADATA))
async def test_invalid_metadata_is_422(
    client: httpx.AsyncClient,
    member: dict[str, str],
    tenant_id: uuid.UUID,
    owner_engine: AsyncEngine,
    settings: Settings,
    metadata: str,
) -> None:
    before = await stored(owner_engine, settings, tenant_id)
    response = await upload(client, member, metadata=metadata)
    assert_error(response, 422, "invalid_metadata")
    await assert_nothing_stored(before, owner_engine, settings, tenant_id)


async def test_valid_metadata_is_accepted(client: httpx.AsyncClient, member: dict[str, str]) -> None:
    """The control for the metadata refusals: a JSON object with unicode, numbers and nesting is kept."""
    metadata = {
        "ward": "3B",
        "name": "Zoë 😀",
        "score": 98.6,
        "big": 10**30,
        "tags": [[1, 2], {"k": None}],
        "deep": json.loads("[" * 31 + "]" * 31),
    }
    response = await upload(client, member, metadata=json.dumps(metadata))
    assert response.status_code == 202, response.text
    assert response.json()["metadata"] == metadata
