"""Hostile filenames are accepted but sanitized: stored, listed and downloaded under a safe name."""

from __future__ import annotations

import hashlib
import uuid

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ingest.detect import sanitize_filename
from tests.conftest import owner_scalar
from tests.harness import NOTE
from tests.security.bad_input import multipart

HOSTILE_FILENAMES = [
    ("../../etc/passwd.txt", "passwd.txt"),
    ("..\\..\\boot.ini", "boot.ini"),
    ("a\x00b\x1f\u202ec.txt", "abc.txt"),
    ("..\\..//.hidden\x07 name.txt", "hidden name.txt"),
    ("r\u00e9sum\u00e9\u2067\u200f\x7f.txt", "r\u00e9sum\u00e9.txt"),
]
UNSAFE_FILENAME_CHARS = {"/", "\\"} | {chr(c) for c in range(0x20)} | {"\x7f"} | {chr(c) for c in range(0x80, 0xA0)}
BIDI_CHARS = (
    {"\u061c", "\u200e", "\u200f"} | {chr(c) for c in range(0x202A, 0x202F)} | {chr(c) for c in range(0x2066, 0x206A)}
)


def _assert_safe_filename(name: str) -> None:
    assert not set(name) & UNSAFE_FILENAME_CHARS, repr(name)
    assert not set(name) & BIDI_CHARS, repr(name)
    assert not name.startswith("."), repr(name)
    assert name == name.strip(), repr(name)


@pytest.mark.parametrize(
    ("raw", "expected"),
    HOSTILE_FILENAMES,
    ids=["unix-traversal", "windows-traversal", "controls-and-bidi", "hidden", "unicode"],
)
async def test_hostile_filenames_are_accepted_but_sanitized(
    client: httpx.AsyncClient,
    member: dict[str, str],
    tenant_id: uuid.UUID,
    owner_engine: AsyncEngine,
    raw: str,
    expected: str,
) -> None:
    assert sanitize_filename(raw) == expected
    _assert_safe_filename(expected)
    content = NOTE + hashlib.sha256(raw.encode()).hexdigest().encode()
    body, headers = multipart(("file", raw, content))
    response = await client.post("/v1/documents", content=body, headers=member | headers)
    assert response.status_code == 202, response.text
    assert response.json()["filename"] == expected
    document_id = response.json()["id"]

    got = await client.get(f"/v1/documents/{document_id}", headers=member)
    assert got.status_code == 200
    assert got.json()["filename"] == expected
    stored_name = await owner_scalar(
        owner_engine, "SELECT filename FROM documents WHERE id = :id AND tenant_id = :t", id=document_id, t=tenant_id
    )
    assert stored_name == expected

    download = await client.get(f"/v1/documents/{document_id}/content", headers=member)
    assert download.status_code == 200
    assert download.content == content
    dispositions = [value for key, value in download.headers.raw if key.lower() == b"content-disposition"]
    assert len(dispositions) == 1
    disposition = dispositions[0]
    assert all(0x20 <= byte < 0x7F for byte in disposition), disposition
    ascii_name = expected.encode("ascii", "replace").decode().replace("?", "_")
    quoted = "".join(
        char if char.isascii() and (char.isalnum() or char in "-._~/") else "".join(f"%{b:02X}" for b in char.encode())
        for char in expected
    )
    assert disposition.decode() == f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quoted}"
