"""The processing service's failure paths, with stand-ins for storage and the model."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import BinaryIO

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from core.db import Database
from core.keys import TenantKeyRef
from core.settings import Settings
from core.storage import StoredObject
from ingest.processing import process_document
from tests.conftest import TenantFactory
from tests.harness import HashEmbedder

PHI = "Zebulon Quartermaine MRN-99887766"


class ExplodingStore:
    """A store whose read fails the way a buggy parser or driver might: quoting content."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def put(self, tenant: TenantKeyRef, document_id: uuid.UUID, source: BinaryIO) -> StoredObject:
        raise NotImplementedError

    def iter_plaintext(
        self, tenant: TenantKeyRef, document_id: uuid.UUID, chunk_size: int = 1024 * 1024
    ) -> Iterator[bytes]:
        raise self.error

    def read(self, tenant: TenantKeyRef, document_id: uuid.UUID) -> bytes:
        raise self.error

    def delete(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> None:
        return None

    def exists(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> bool:
        return True


async def _queued(db: Database, tenant_id: uuid.UUID) -> uuid.UUID:
    async with db.tenant_session(tenant_id) as session:
        document_id = await session.scalar(
            text(
                "INSERT INTO documents (tenant_id, filename, content_type, size_bytes, sha256, storage_key) "
                "VALUES (:t, 'n.txt', 'text/plain', 1, :h, 'k') RETURNING id"
            ),
            {"t": tenant_id, "h": uuid.uuid4().hex},
        )
    assert isinstance(document_id, uuid.UUID)
    return document_id


async def _state(db: Database, tenant_id: uuid.UUID, document_id: uuid.UUID) -> tuple[str, str | None]:
    async with db.tenant_session(tenant_id) as session:
        row = (
            await session.execute(text("SELECT status, error_code FROM documents WHERE id = :d"), {"d": document_id})
        ).one()
    return row.status, row.error_code


async def test_an_unexpected_error_fails_the_document_without_logging_its_message(
    db: Database, settings: Settings, make_tenant: TenantFactory, caplog: pytest.LogCaptureFixture
) -> None:
    tenant_id = (await make_tenant()).id
    document_id = await _queued(db, tenant_id)
    caplog.set_level(logging.DEBUG)
    store = ExplodingStore(ValueError(f"could not parse line 3: {PHI}"))
    result = await process_document(db, store, HashEmbedder(), settings, tenant_id, document_id)
    assert result == "failed"
    assert await _state(db, tenant_id, document_id) == ("failed", "processing_error")
    assert PHI not in caplog.text
    assert [r.__dict__.get("error_type") for r in caplog.records if r.name == "ingest.processing"] == ["ValueError"]


async def test_a_transient_error_propagates_for_a_retry(
    db: Database, settings: Settings, make_tenant: TenantFactory
) -> None:
    tenant_id = (await make_tenant()).id
    document_id = await _queued(db, tenant_id)
    store = ExplodingStore(OperationalError("SELECT 1", {}, ConnectionError("server closed the connection")))
    with pytest.raises(OperationalError):
        await process_document(db, store, HashEmbedder(), settings, tenant_id, document_id)
    assert await _state(db, tenant_id, document_id) == ("processing", None)
