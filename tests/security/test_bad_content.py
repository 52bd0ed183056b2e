"""Content the vault refuses (empty, unsupported types, corrupt or encrypted PDFs, zip bombs): nothing stored."""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from core.settings import Settings
from tests.sample_files import MIB, make_docx_bomb, make_encrypted_pdf, make_pdf
from tests.security.bad_input import assert_nothing_stored, stored
from tests.security.error_shape import assert_error


def _png() -> bytes:
    header = b"IHDR" + (1).to_bytes(4, "big") + (1).to_bytes(4, "big") + bytes([8, 6, 0, 0, 0])
    ihdr = (13).to_bytes(4, "big") + header + zlib.crc32(header).to_bytes(4, "big")
    idat_data = zlib.compress(b"\x00\x00\x00\x00\x00")
    idat = len(idat_data).to_bytes(4, "big") + b"IDAT" + idat_data + zlib.crc32(b"IDAT" + idat_data).to_bytes(4, "big")
    iend = (0).to_bytes(4, "big") + b"IEND" + zlib.crc32(b"IEND").to_bytes(4, "big")
    return b"\x89PNG\r\n\x1a\n" + ihdr + idat + iend


def _elf() -> bytes:
    """The start of an x86-64 ELF executable: magic, class, data, version, then the header's fields."""
    return b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00\x3e\x00\x01\x00\x00\x00" + bytes(40) + b"\xc3" * 512


def _corrupt_pdf() -> bytes:
    return b"%PDF-1.4\n" + bytes((index * 7 + 13) % 256 for index in range(4096))


REFUSED_CONTENT: list[tuple[str, Callable[[], bytes], str, str, int, str]] = [
    ("empty", lambda: b"", "empty.txt", "text/plain", 422, "empty_file"),
    ("png", _png, "scan.png", "image/png", 415, "unsupported_content"),
    ("elf-named-pdf", _elf, "report.pdf", "application/pdf", 415, "unsupported_content"),
    ("corrupt-pdf", _corrupt_pdf, "broken.pdf", "application/pdf", 422, "corrupt_file"),
    ("encrypted-pdf", make_encrypted_pdf, "locked.pdf", "application/pdf", 422, "encrypted_pdf"),
    (
        "docx-bomb",
        lambda: make_docx_bomb(20 * MIB),
        "bomb.docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        422,
        "zip_bomb",
    ),
]


@pytest.mark.parametrize(
    ("content", "filename", "content_type", "status_code", "code"),
    [case[1:] for case in REFUSED_CONTENT],
    ids=[case[0] for case in REFUSED_CONTENT],
)
async def test_refused_content_stores_nothing(
    client: httpx.AsyncClient,
    member: dict[str, str],
    tenant_id: uuid.UUID,
    owner_engine: AsyncEngine,
    settings: Settings,
    content: Callable[[], bytes],
    filename: str,
    content_type: str,
    status_code: int,
    code: str,
) -> None:
    before = await stored(owner_engine, settings, tenant_id)
    response = await client.post("/v1/documents", files={"file": (filename, content(), content_type)}, headers=member)
    assert_error(response, status_code, code)
    await assert_nothing_stored(before, owner_engine, settings, tenant_id)


async def test_a_valid_pdf_is_accepted(client: httpx.AsyncClient, member: dict[str, str]) -> None:
    """The control for the PDF refusals: a well-formed PDF with the same upload path is stored."""
    response = await client.post(
        "/v1/documents",
        files={"file": ("report.pdf", make_pdf(["Chest X-ray: no acute findings."]), "application/pdf")},
        headers=member,
    )
    assert response.status_code == 202, response.text
    assert response.json()["content_type"] == "application/pdf"
