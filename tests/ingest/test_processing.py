"""The processing service's failure paths, with stand-ins for storage and the model."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import BinaryIO

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from core.db import Database
from core.keys import TenantKeyRef
from core.settings import Settings
from core.storage import StoredObject
from ingest import repository
from ingest.processing import claim, process_document, record_progress
from ingest.schemas import DocumentOut, DocumentProgress
from models.document import ChunkProgress
from tests.conftest import TenantFactory
from tests.harness import HashEmbedder
from tests.waiting import eventually, patience

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

    def rekey(self, tenant: TenantKeyRef, document_id: uuid.UUID) -> bool:
        raise NotImplementedError

    def document_ids(self, tenant_id: uuid.UUID) -> list[uuid.UUID]:
        raise NotImplementedError


class NoteStore(ExplodingStore):
    """A store holding one plain-text document."""

    def __init__(self, text: str) -> None:
        super().__init__(NotImplementedError())
        self.text = text

    def read(self, tenant: TenantKeyRef, document_id: uuid.UUID) -> bytes:
        return self.text.encode()


class GatedEmbedder(HashEmbedder):
    """Embeds each batch only once the test lets it through, so the test sees the progress between batches."""

    def __init__(self) -> None:
        self.gate = threading.Semaphore(0)

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not self.gate.acquire(timeout=patience()):
            raise AssertionError("the test never let this batch through")
        return super().embed_documents(texts)


LONG_NOTE = " ".join(f"word{i}" for i in range(150))
"""150 words: ten chunks of 16 words (the `WordTokenizer` of `HashEmbedder`)."""
BATCH = 3


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


async def _progress(db: Database, tenant_id: uuid.UUID, document_id: uuid.UUID) -> DocumentProgress | None:
    """The document's progress as the API shows it."""
    async with db.tenant_session(tenant_id) as session:
        document = await repository.get_document(session, tenant_id, document_id)
    assert document is not None
    return DocumentOut.model_validate(document).progress


async def test_progress_rises_batch_by_batch_and_is_cleared_once_ready(
    db: Database, settings: Settings, make_tenant: TenantFactory
) -> None:
    tenant_id = (await make_tenant()).id
    document_id = await _queued(db, tenant_id)
    small = settings.model_copy(update={"embedding_batch_size": BATCH, "chunk_tokens": 16, "chunk_overlap_tokens": 0})
    embedder = GatedEmbedder()
    processing = asyncio.create_task(
        process_document(db, NoteStore(LONG_NOTE), embedder, small, tenant_id, document_id)
    )
    try:
        for embedded in (0, 3, 6, 9):
            expected = DocumentProgress(chunks_total=10, chunks_embedded=embedded)

            async def reached(expected: DocumentProgress = expected) -> bool:
                return await _progress(db, tenant_id, document_id) == expected

            await eventually(reached, f"progress {embedded}/10")
            embedder.gate.release()  # the batch now being embedded may finish
        assert await processing == "ready"
    finally:
        embedder.gate.release(10)
        await asyncio.wait([processing])
    assert await _progress(db, tenant_id, document_id) is None
    async with db.tenant_session(tenant_id) as session:
        document = await repository.get_document(session, tenant_id, document_id)
    assert document is not None
    assert (document.chunk_count, document.chunks_total, document.chunks_embedded) == (10, None, None)


async def test_a_stale_claims_progress_changes_nothing(
    db: Database, settings: Settings, make_tenant: TenantFactory
) -> None:
    tenant_id = (await make_tenant()).id
    document_id = await _queued(db, tenant_id)
    lease = timedelta(seconds=settings.processing_timeout_seconds)
    stale = await claim(db, tenant_id, document_id, lease=lease)
    assert stale is not None
    assert await record_progress(db, tenant_id, document_id, stale.attempts, ChunkProgress(8, 4))
    assert await _progress(db, tenant_id, document_id) == DocumentProgress(chunks_total=8, chunks_embedded=4)

    current = await claim(db, tenant_id, document_id, lease=lease, take_over=True)
    assert current is not None
    assert await _progress(db, tenant_id, document_id) is None  # a new claim counts its own chunks
    assert not await record_progress(db, tenant_id, document_id, stale.attempts, ChunkProgress(8, 6))
    assert await _progress(db, tenant_id, document_id) is None
    assert await record_progress(db, tenant_id, document_id, current.attempts, ChunkProgress(8, 0))
    assert not await record_progress(db, tenant_id, document_id, stale.attempts, ChunkProgress(8, 6))
    assert await _progress(db, tenant_id, document_id) == DocumentProgress(chunks_total=8, chunks_embedded=0)


async def test_a_failing_progress_write_is_logged_and_the_document_still_finishes(
    db: Database,
    settings: Settings,
    make_tenant: TenantFactory,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def unreachable(*args: object) -> bool:
        raise OperationalError("UPDATE documents", {}, ConnectionError("server closed the connection"))

    monkeypatch.setattr(repository, "record_progress", unreachable)
    tenant_id = (await make_tenant()).id
    document_id = await _queued(db, tenant_id)
    caplog.set_level(logging.WARNING)
    small = settings.model_copy(update={"embedding_batch_size": BATCH, "chunk_tokens": 16, "chunk_overlap_tokens": 0})
    assert await process_document(db, NoteStore(LONG_NOTE), HashEmbedder(), small, tenant_id, document_id) == "ready"
    assert await _state(db, tenant_id, document_id) == ("ready", None)
    failures = [r for r in caplog.records if r.getMessage() == "progress not recorded"]
    assert [r.__dict__["error_type"] for r in failures] == ["OperationalError"] * 4
