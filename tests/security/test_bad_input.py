"""Bad input through the real HTTP app: every refusal has the exact status, code and error shape, and stores nothing.

"Nothing stored" means: no new `documents` row (for the tenant, nor anywhere), no new file under the object
store's root, and no file left in the upload spool. Denied callers also leave exactly one audit row.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from core.db import SYSTEM_TENANT_ID
from core.runtime import Services
from core.security import LEEWAY_SECONDS
from core.settings import Settings
from ingest.detect import sanitize_filename
from tests.conftest import owner_scalar
from tests.harness import NOTE, Tokens, process_database_kept, upload
from tests.sample_files import MIB, make_docx_bomb, make_encrypted_pdf, make_pdf
from tests.security.error_shape import assert_error

SMALL_LIMIT = 64 * 1024
BOUNDARY = "phivault-test-boundary-7f3a"


# --------------------------------------------------------------------------------------------------------------
# What is stored, before and after


@dataclass(frozen=True)
class Stored:
    tenant_documents: int
    all_documents: int
    objects: frozenset[str]


def _files_under(root: Path) -> frozenset[str]:
    if not root.exists():
        return frozenset()
    return frozenset(str(path.relative_to(root)) for path in root.rglob("*") if not path.is_dir())


async def stored(owner_engine: AsyncEngine, settings: Settings, tenant_id: uuid.UUID) -> Stored:
    tenant_documents = await owner_scalar(
        owner_engine, "SELECT count(*) FROM documents WHERE tenant_id = :t", t=tenant_id
    )
    all_documents = await owner_scalar(owner_engine, "SELECT count(*) FROM documents")
    assert isinstance(tenant_documents, int)
    assert isinstance(all_documents, int)
    return Stored(tenant_documents, all_documents, _files_under(settings.data_dir / "objects"))


async def assert_nothing_stored(
    before: Stored, owner_engine: AsyncEngine, settings: Settings, tenant_id: uuid.UUID
) -> None:
    after = await stored(owner_engine, settings, tenant_id)
    assert after.tenant_documents == before.tenant_documents
    assert after.all_documents == before.all_documents
    assert after.objects == before.objects, sorted(after.objects ^ before.objects)
    assert _files_under(settings.data_dir / "spool") == frozenset()


async def audit_rows(
    owner_engine: AsyncEngine, tenant_id: uuid.UUID, request_id: str
) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(action, outcome, actor_type, metadata) of one tenant's audit rows written for one request id."""
    async with owner_engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT action, outcome, actor_type, metadata FROM audit_logs "
                "WHERE tenant_id = :t AND request_id = :r ORDER BY id"
            ),
            {"t": tenant_id, "r": request_id},
        )
        return [(row.action, row.outcome, row.actor_type, dict(row.metadata)) for row in rows]


async def denied_count(owner_engine: AsyncEngine, tenant_id: uuid.UUID, action: str) -> int:
    count = await owner_scalar(
        owner_engine,
        "SELECT count(*) FROM audit_logs WHERE tenant_id = :t AND action = :a AND outcome = 'denied'",
        t=tenant_id,
        a=action,
    )
    assert isinstance(count, int)
    return count


def request_id(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}"


# --------------------------------------------------------------------------------------------------------------
# Request builders


def multipart(*parts: tuple[str, str | None, bytes]) -> tuple[bytes, dict[str, str]]:
    """A hand-built multipart body of (field name, filename or None, content) parts, and its content type.

    Built by hand because httpx percent-encodes control characters in filenames: the server would never see them.
    """
    body = bytearray()
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            body += b"Content-Type: application/octet-stream\r\n"
        body += b"\r\n" + content + b"\r\n"
    body += f"--{BOUNDARY}--\r\n".encode()
    return bytes(body), {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


async def chunks_of(body: bytes, size: int = 16 * 1024) -> AsyncIterator[bytes]:
    """The body as a stream of unknown length (sent without Content-Length)."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def text_of_size(size: int, seed: str) -> bytes:
    """Plain text of exactly `size` bytes, different for every seed (so it is never a duplicate)."""
    line = f"Progress note {seed}: patient stable, vitals within normal limits.\n".encode()
    return (line * (size // len(line) + 1))[:size]


# --------------------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def member(tokens: Tokens, tenant_id: uuid.UUID) -> dict[str, str]:
    return tokens.headers("member", tenant_id)


@pytest.fixture(scope="module")
async def small_client(settings: Settings, services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """A second app whose upload limit is 64 KiB (the multipart overhead allowance stays 256 KiB)."""
    app = create_app(settings.model_copy(update={"max_upload_bytes": SMALL_LIMIT}), services)
    # Its lifespan installs its own process database and uninstalls it on exit: put back the session's.
    with process_database_kept():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50002))
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
                yield http


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
# Content the vault refuses


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


# --------------------------------------------------------------------------------------------------------------
# Filenames


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


# --------------------------------------------------------------------------------------------------------------
# Tokens


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hand_made(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """A JWT assembled by hand, HMAC-SHA256 signed with `key` (or with an empty signature when None)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _claims(tenant: uuid.UUID, /, **changes: Any) -> dict[str, Any]:
    """Claims of a valid admin token for `tenant`; a change to None removes the claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "attacker",
        "role": "admin",
        "tenant_id": str(tenant),
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def _signed(settings: Settings, claims: dict[str, Any], secret: str | None = None) -> str:
    return jwt.encode(claims, secret or settings.jwt_secret.get_secret_value(), algorithm="HS256")


BadAuth = Callable[[Settings, uuid.UUID], dict[str, str]]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


BAD_AUTH: dict[str, tuple[BadAuth, str]] = {
    "no-header": (lambda s, t: {}, "missing_token"),
    "empty-bearer": (lambda s, t: {"Authorization": "Bearer "}, "missing_token"),
    "basic-scheme": (lambda s, t: {"Authorization": "Basic " + _b64(b"admin:admin")}, "missing_token"),
    "token-without-scheme": (lambda s, t: {"Authorization": _signed(s, _claims(t))}, "missing_token"),
    "garbage": (lambda s, t: _bearer("abc.def.ghi"), "invalid_token"),
    "expired": (
        lambda s, t: _bearer(
            _signed(
                s,
                _claims(
                    t,
                    iat=int(time.time()) - 7200,
                    nbf=int(time.time()) - 7200,
                    exp=int(time.time()) - LEEWAY_SECONDS - 60,
                ),
            )
        ),
        "expired_token",
    ),
    "forged": (lambda s, t: _bearer(_signed(s, _claims(t), secret="not-the-secret-" + "x" * 32)), "invalid_token"),
    "alg-none": (lambda s, t: _bearer(_hand_made({"alg": "none", "typ": "JWT"}, _claims(t), None)), "invalid_token"),
    "alg-none-capitalised": (
        lambda s, t: _bearer(_hand_made({"alg": "None", "typ": "JWT"}, _claims(t), None)),
        "invalid_token",
    ),
    "rs256-header-hs256-signed": (
        lambda s, t: _bearer(
            _hand_made({"alg": "RS256", "typ": "JWT"}, _claims(t), s.jwt_secret.get_secret_value().encode())
        ),
        "invalid_token",
    ),
    "not-yet-valid": (lambda s, t: _bearer(_signed(s, _claims(t, nbf=int(time.time()) + 600))), "invalid_token"),
    "missing-exp": (lambda s, t: _bearer(_signed(s, _claims(t, exp=None))), "invalid_token"),
    "missing-sub": (lambda s, t: _bearer(_signed(s, _claims(t, sub=None))), "invalid_token"),
    # A `sub` PostgreSQL could not store (it becomes the audit actor and a users row): refused with the token.
    "sub-with-nul": (lambda s, t: _bearer(_signed(s, _claims(t, sub="alice\x00"))), "invalid_token"),
    "sub-with-surrogate": (lambda s, t: _bearer(_signed(s, _claims(t, sub="alice" + chr(0xD800)))), "invalid_token"),
    "missing-role": (lambda s, t: _bearer(_signed(s, _claims(t, role=None))), "invalid_token"),
    "role-superuser": (lambda s, t: _bearer(_signed(s, _claims(t, role="superuser"))), "invalid_token"),
    "tenant-not-uuid": (lambda s, t: _bearer(_signed(s, _claims(t, tenant_id="clinic-1"))), "invalid_token"),
    "tenant-missing": (lambda s, t: _bearer(_signed(s, _claims(t, tenant_id=None))), "invalid_token"),
    "platform-admin-with-tenant": (
        lambda s, t: _bearer(_signed(s, _claims(t, role="platform_admin"))),
        "invalid_token",
    ),
    "system-tenant": (
        lambda s, t: _bearer(_signed(s, _claims(t, tenant_id=str(SYSTEM_TENANT_ID)))),
        "invalid_token",
    ),
}


@pytest.mark.parametrize(("make_headers", "code"), list(BAD_AUTH.values()), ids=list(BAD_AUTH))
async def test_bad_tokens_are_401_and_audited_in_the_system_tenant(
    client: httpx.AsyncClient,
    settings: Settings,
    tenant_id: uuid.UUID,
    owner_engine: AsyncEngine,
    make_headers: BadAuth,
    code: str,
) -> None:
    rid = request_id("auth")
    before = await denied_count(owner_engine, SYSTEM_TENANT_ID, "auth.denied")
    response = await client.get("/v1/documents", headers=make_headers(settings, tenant_id) | {"X-Request-ID": rid})
    error = assert_error(response, 401, code)
    assert error["request_id"] == rid
    assert await denied_count(owner_engine, SYSTEM_TENANT_ID, "auth.denied") == before + 1
    rows = await audit_rows(owner_engine, SYSTEM_TENANT_ID, rid)
    assert len(rows) == 1
    action, outcome, actor_type, metadata = rows[0]
    assert (action, outcome, actor_type) == ("auth.denied", "denied", "anonymous")
    assert metadata["reason"] == code
    # Nothing was written in the tenant the token named.
    assert await audit_rows(owner_engine, tenant_id, rid) == []


async def test_hand_made_hs256_token_is_accepted(
    client: httpx.AsyncClient, settings: Settings, tenant_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    """The control for the hand-made tokens: signed right, the same construction is accepted and not audited."""
    rid = request_id("auth-control")
    before = await denied_count(owner_engine, SYSTEM_TENANT_ID, "auth.denied")
    token = _hand_made(
        {"alg": "HS256", "typ": "JWT"}, _claims(tenant_id), settings.jwt_secret.get_secret_value().encode()
    )
    response = await client.get("/v1/documents", headers=_bearer(token) | {"X-Request-ID": rid})
    assert response.status_code == 200, response.text
    assert await denied_count(owner_engine, SYSTEM_TENANT_ID, "auth.denied") == before
    assert await audit_rows(owner_engine, SYSTEM_TENANT_ID, rid) == []
    assert [a for a, _, _, _ in await audit_rows(owner_engine, tenant_id, rid)] == [
        "user.provisioned",
        "document.listed",
    ]


# --------------------------------------------------------------------------------------------------------------
# Wrong role, suspended or missing tenant


async def test_viewer_upload_is_403_audited_and_stores_nothing(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine, settings: Settings
) -> None:
    before = await stored(owner_engine, settings, tenant_id)
    rid = request_id("viewer-upload")
    response = await upload(client, tokens.headers("viewer", tenant_id) | {"X-Request-ID": rid})
    assert_error(response, 403, "forbidden")
    await assert_nothing_stored(before, owner_engine, settings, tenant_id)
    rows = await audit_rows(owner_engine, tenant_id, rid)
    assert [(a, o, t) for a, o, t, _ in rows] == [("access.denied", "denied", "user")]
    assert rows[0][3]["reason"] == "role_not_allowed"


async def test_member_may_not_read_tenants(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    rid = request_id("member-tenant")
    response = await client.get(
        f"/v1/tenants/{tenant_id}", headers=tokens.headers("member", tenant_id) | {"X-Request-ID": rid}
    )
    assert_error(response, 403, "forbidden")
    rows = await audit_rows(owner_engine, tenant_id, rid)
    assert [(a, o) for a, o, _, _ in rows] == [("access.denied", "denied")]


async def test_platform_admin_has_no_tenant_documents(
    client: httpx.AsyncClient, tokens: Tokens, owner_engine: AsyncEngine
) -> None:
    rid = request_id("platform-documents")
    response = await client.get("/v1/documents", headers=tokens.platform() | {"X-Request-ID": rid})
    assert_error(response, 403, "forbidden")
    rows = await audit_rows(owner_engine, SYSTEM_TENANT_ID, rid)
    assert [(a, o, t) for a, o, t, _ in rows] == [("access.denied", "denied", "platform")]


async def test_suspended_tenant_upload_is_403_and_stores_nothing(
    client: httpx.AsyncClient,
    tokens: Tokens,
    member: dict[str, str],
    tenant_id: uuid.UUID,
    owner_engine: AsyncEngine,
    settings: Settings,
) -> None:
    suspended = await client.patch(f"/v1/tenants/{tenant_id}", json={"status": "suspended"}, headers=tokens.platform())
    assert suspended.status_code == 200, suspended.text
    before = await stored(owner_engine, settings, tenant_id)
    rid = request_id("suspended")
    response = await upload(client, member | {"X-Request-ID": rid})
    assert_error(response, 403, "tenant_suspended")
    await assert_nothing_stored(before, owner_engine, settings, tenant_id)
    rows = await audit_rows(owner_engine, tenant_id, rid)
    assert [(a, o) for a, o, _, _ in rows] == [("access.denied", "denied")]
    assert rows[0][3]["reason"] == "tenant_suspended"

    # Control: the same upload goes through once the tenant is active again.
    active = await client.patch(f"/v1/tenants/{tenant_id}", json={"status": "active"}, headers=tokens.platform())
    assert active.status_code == 200
    assert (await upload(client, member)).status_code == 202


@pytest.mark.parametrize("method", ["upload", "list"])
async def test_token_for_a_tenant_that_does_not_exist_is_403(
    client: httpx.AsyncClient, tokens: Tokens, owner_engine: AsyncEngine, settings: Settings, method: str
) -> None:
    ghost = uuid.uuid4()
    before = await stored(owner_engine, settings, ghost)
    rid = request_id("ghost")
    headers = tokens.headers("admin", ghost) | {"X-Request-ID": rid}
    if method == "upload":
        response = await upload(client, headers)
    else:
        response = await client.get("/v1/documents", headers=headers)
    assert_error(response, 403, "tenant_unavailable")
    await assert_nothing_stored(before, owner_engine, settings, ghost)
    assert before.tenant_documents == 0
    rows = await audit_rows(owner_engine, SYSTEM_TENANT_ID, rid)
    assert [(a, o) for a, o, _, _ in rows] == [("access.denied", "denied")]
    assert rows[0][3]["claimed_tenant_id"] == str(ghost)
    assert await owner_scalar(owner_engine, "SELECT count(*) FROM tenants WHERE id = :t", t=ghost) == 0
    assert await owner_scalar(owner_engine, "SELECT count(*) FROM users WHERE tenant_id = :t", t=ghost) == 0


# --------------------------------------------------------------------------------------------------------------
# Request ids


def _requests(tokens: Tokens, tenant_id: uuid.UUID) -> Iterator[tuple[str, str, dict[str, Any], int]]:
    member = tokens.headers("member", tenant_id)
    yield "GET", "/v1/documents", {}, 401
    yield "GET", f"/v1/documents/{uuid.uuid4()}", {"headers": member}, 404
    yield "GET", "/v1/documents", {"headers": member, "params": {"limit": 0}}, 422
    yield "POST", "/v1/documents", {"headers": member, "files": {"file": ("x.txt", b"", "text/plain")}}, 422
    yield "POST", "/v1/documents", {"headers": tokens.headers("viewer", tenant_id), "files": {"file": ("x", NOTE)}}, 403


async def test_error_request_id_is_the_one_sent(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID
) -> None:
    for method, path, options, status_code in _requests(tokens, tenant_id):
        rid = request_id("echo")
        headers = dict(options.pop("headers", {})) | {"X-Request-ID": rid}
        response = await client.request(method, path, headers=headers, **options)
        error = assert_error(response, status_code)
        assert error["request_id"] == rid, (method, path)
        assert response.headers["x-request-id"] == rid


async def test_middleware_413_carries_the_request_id_sent(
    small_client: httpx.AsyncClient, member: dict[str, str]
) -> None:
    rid = request_id("too-large")
    body, headers = multipart(("file", "big.txt", text_of_size(SMALL_LIMIT + 300 * 1024, rid)))
    response = await small_client.post("/v1/documents", content=body, headers=member | headers | {"X-Request-ID": rid})
    error = assert_error(response, 413, "too_large")
    assert error["request_id"] == rid


@pytest.mark.parametrize("sent", ["has spaces", "x" * 129, "semi;colon", "ünïcode"])
async def test_malformed_request_id_is_replaced(client: httpx.AsyncClient, sent: str) -> None:
    response = await client.get("/v1/documents", headers={b"X-Request-ID": sent.encode()})
    error = assert_error(response, 401, "missing_token")
    assert error["request_id"] != sent
    uuid.UUID(error["request_id"])
