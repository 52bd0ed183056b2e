"""Uploads too large or of the wrong shape, through the real HTTP app: the exact refusal, and nothing stored."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from core.settings import Settings
from tests.conftest import owner_scalar
from tests.harness import NOTE, upload
from tests.security.bad_input import SMALL_LIMIT, assert_nothing_stored, multipart, stored, text_of_size
from tests.security.error_shape import assert_error


async def chunks_of(body: bytes, size: int = 16 * 1024) -> AsyncIterator[bytes]:
    """The body as a stream of unknown length (sent without Content-Length)."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


# --------------------------------------------------------------------------------------------------------------
# Too large


async def test_exactly_the_limit_is_accepted(
    small_client: httpx.AsyncClient, member: dict[str, str], tenant_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    """The control for the 413 cases: the small app does store a file of exactly its limit."""
    response = await upload(small_client, member, text_of_size(SMALL_LIMIT, "exact"))
    assert response.status_code == 202, response.text
    assert response.json()["size_bytes"] == SMALL_LIMIT
    count = await owner_scalar(owner_engine, "SELECT count(*) FROM documents WHERE tenant_id = :t", t=tenant_id)
    assert count == 1


@pytest.mark.parametrize("size", [200 * 1024, SMALL_LIMIT + 1], ids=["200KiB", "limit+1"])
async def test_file_over_the_limit_is_413(
    small_client: httpx.AsyncClient,
    member: dict[str, str],
    tenant_id: uuid.UUID,
    owner_engine: AsyncEngine,
    settings: Settings,
    size: int,
) -> None:
    """Bodies under limit + multipart overhead pass the middleware; the spool's byte count refuses them."""
    before = await stored(owner_engine, settings, tenant_id)
    response = await upload(small_client, member, text_of_size(size, f"over-{size}"))
    error = assert_error(response, 413, "too_large")
    assert str(SMALL_LIMIT) in error["message"]
    await assert_nothing_stored(before, owner_engine, settings, tenant_id)


async def test_declared_body_over_the_middleware_limit_is_413(
    small_client: httpx.AsyncClient,
    member: dict[str, str],
    tenant_id: uuid.UUID,
    owner_engine: AsyncEngine,
    settings: Settings,
) -> None:
    before = await stored(owner_engine, settings, tenant_id)
    body, headers = multipart(("file", "big.txt", text_of_size(SMALL_LIMIT + 300 * 1024, "declared")))
    response = await small_client.post("/v1/documents", content=body, headers=member | headers)
    assert_error(response, 413, "too_large")
    await assert_nothing_stored(before, owner_engine, settings, tenant_id)


async def test_streamed_body_over_the_middleware_limit_is_413(
    small_client: httpx.AsyncClient,
    member: dict[str, str],
    tenant_id: uuid.UUID,
    owner_engine: AsyncEngine,
    settings: Settings,
) -> None:
    """Without Content-Length the middleware counts the body as it arrives and cuts it off."""
    before = await stored(owner_engine, settings, tenant_id)
    body, headers = multipart(("file", "big.txt", text_of_size(SMALL_LIMIT + 300 * 1024, "streamed")))
    response = await small_client.post("/v1/documents", content=chunks_of(body), headers=member | headers)
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_error(response, 413, "too_large")
    await assert_nothing_stored(before, owner_engine, settings, tenant_id)


async def test_streamed_body_cut_off_after_a_complete_file_stores_nothing(
    small_client: httpx.AsyncClient,
    member: dict[str, str],
    tenant_id: uuid.UUID,
    owner_engine: AsyncEngine,
    settings: Settings,
) -> None:
    """A small, complete file part followed by an oversized field: the cut-off body must not become an upload.

    The refused request must not have been acted on behind the 413 (a stored document the client was told
    was refused).
    """
    before = await stored(owner_engine, settings, tenant_id)
    body, headers = multipart(
        ("file", "small.txt", NOTE),
        ("metadata", None, b'{"padding": "' + b"x" * (400 * 1024) + b'"}'),
    )
    response = await small_client.post("/v1/documents", content=chunks_of(body), headers=member | headers)
    assert_error(response, 413, "too_large")
    await assert_nothing_stored(before, owner_engine, settings, tenant_id)


# --------------------------------------------------------------------------------------------------------------
# Multipart without a file


MISSING_FILE: dict[str, tuple[tuple[str, str | None, bytes], ...]] = {
    "metadata-only": (("metadata", None, b'{"ward": "3B"}'),),
    "file-under-another-name": (("attachment", "note.txt", NOTE),),
    "file-as-plain-field": (("file", None, NOTE),),
}


@pytest.mark.parametrize("parts", list(MISSING_FILE.values()), ids=list(MISSING_FILE))
async def test_missing_file_field_is_a_validation_error(
    client: httpx.AsyncClient,
    member: dict[str, str],
    tenant_id: uuid.UUID,
    owner_engine: AsyncEngine,
    settings: Settings,
    parts: tuple[tuple[str, str | None, bytes], ...],
) -> None:
    before = await stored(owner_engine, settings, tenant_id)
    body, headers = multipart(*parts)
    response = await client.post("/v1/documents", content=body, headers=member | headers)
    error = assert_error(response, 422, "validation_error")
    assert "file" in error["message"]
    await assert_nothing_stored(before, owner_engine, settings, tenant_id)
