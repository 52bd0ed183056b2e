"""What the `test_bad_*` files share: what a refused request must not have stored, its audit rows, and bodies.

"Nothing stored" means: no new `documents` row (for the tenant, nor anywhere), no new file under the object
store's root, and no file left in the upload spool.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.settings import Settings
from tests.conftest import owner_scalar

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


def text_of_size(size: int, seed: str) -> bytes:
    """Plain text of exactly `size` bytes, different for every seed (so it is never a duplicate)."""
    line = f"Progress note {seed}: patient stable, vitals within normal limits.\n".encode()
    return (line * (size // len(line) + 1))[:size]
