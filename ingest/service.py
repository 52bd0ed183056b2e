"""Documents: receiving an upload, listing, reading, downloading, deleting and restoring, and their rules.

Receiving an upload is one sequence, called by the HTTP API and the command line alike: spool and
hash, detect the type from the bytes, dedupe, encrypt-and-store, record, enqueue. The object is
stored before its row is written, and removed again (compensation) if the put or the row fails, so
a failed upload leaves neither a `documents` row nor an object. The row and its audit event share
one transaction; the task is sent after commit.

One window remains: a commit whose acknowledgement is lost with the connection is taken as not
committed, so its object is removed; if the row did commit, its processing fails with a reason (the
object is missing), and nothing is silently lost.

Functions given an `ActingSession` work inside the caller's transaction; those given a
`TransactionFactory` open their own steps through it, because work happens between them (storing
the object) or after the commit (sending the task).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from sqlalchemy.exc import IntegrityError

from core.cursors import decode_cursor, encode_cursor
from core.db import written
from core.errors import Conflict, NotFound
from core.settings import Settings
from core.storage import ObjectStore
from ingest import repository
from ingest.detect import UploadLimits, inspect_upload, sanitize_filename
from ingest.objects import discard, open_plaintext, put_file
from ingest.schemas import DocumentOut, DocumentPage, DocumentStatus
from ingest.spool import SpooledUpload, spooled
from models.audit import ActingSession, TransactionFactory
from models.document import Document
from tenants.service import tenant_key_ref

Enqueue = Callable[[uuid.UUID, uuid.UUID], Awaitable[bool]]


@dataclass(frozen=True)
class UploadOutcome:
    document: Document
    duplicate: bool


async def receive_upload(
    transaction: TransactionFactory,
    store: ObjectStore,
    enqueue: Enqueue,
    settings: Settings,
    source: BinaryIO,
    *,
    filename: str | None,
    metadata: dict[str, Any],
) -> UploadOutcome:
    """Spool `source`, judge its type from its content, and store it (or find the same content stored).

    Raises `RejectedUpload` for what is refused at the door; nothing is kept then."""
    async with spooled(source, settings.data_dir / "spool", settings.max_upload_bytes) as upload:
        content_type = await asyncio.to_thread(inspect_upload, upload.path, UploadLimits.from_settings(settings))
        return await store_upload(
            transaction,
            store,
            enqueue,
            upload,
            filename=sanitize_filename(filename),
            content_type=content_type,
            metadata=metadata,
        )


async def store_upload(
    transaction: TransactionFactory,
    store: ObjectStore,
    enqueue: Enqueue,
    upload: SpooledUpload,
    *,
    filename: str,
    content_type: str,
    metadata: dict[str, Any],
) -> UploadOutcome:
    async with transaction() as tx:
        existing = await _duplicate(tx, upload.sha256)
        if existing is not None:
            return UploadOutcome(existing, duplicate=True)
        tenant_id, keys = tx.tenant.id, tenant_key_ref(tx.tenant)

    document_id = uuid.uuid4()
    try:
        stored = await asyncio.to_thread(put_file, store, keys, document_id, upload.path)
        async with transaction() as tx:
            document = Document(
                id=document_id,
                tenant_id=tenant_id,
                uploaded_by=tx.user_id,
                filename=filename,
                content_type=content_type,
                size_bytes=upload.size_bytes,
                sha256=upload.sha256,
                storage_key=stored.key,
                kms_key_id=stored.kms_key_id,
                status="queued",
                metadata_=metadata,
            )
            await repository.insert_document(tx.session, document)
            await tx.audit(
                "document.uploaded",
                resource_type="document",
                resource_id=document_id,
                metadata={"sha256": upload.sha256, "size_bytes": upload.size_bytes, "content_type": content_type},
            )
    except BaseException as exc:
        await discard(store, tenant_id, document_id)
        if isinstance(exc, IntegrityError) and "uq_documents_tenant_id_sha256" in str(exc.orig):
            # The same content won a race with us: answer as a duplicate of it.
            async with transaction() as tx:
                existing = await _duplicate(tx, upload.sha256)
            if existing is not None:
                return UploadOutcome(existing, duplicate=True)
        raise
    await enqueue(tenant_id, document_id)
    return UploadOutcome(document, duplicate=False)


async def _duplicate(tx: ActingSession, sha256: str) -> Document | None:
    existing = await repository.find_live_by_sha256(tx.session, tx.tenant.id, sha256)
    if existing is not None:
        await tx.audit(
            "document.duplicate", resource_type="document", resource_id=existing.id, metadata={"sha256": sha256}
        )
    return existing


async def list_page(
    tx: ActingSession, *, status: DocumentStatus | None, limit: int, cursor: str | None
) -> DocumentPage:
    """One page of the tenant's live documents, newest first; `cursor` is the previous page's `next_cursor`."""
    after = decode_cursor(cursor) if cursor else None
    rows = await repository.list_documents(tx.session, tx.tenant.id, status=status, limit=limit + 1, after=after)
    page, more = rows[:limit], len(rows) > limit
    await tx.audit(
        "document.listed",
        resource_type="document",
        metadata={"count": len(page), "status": status, "document_ids": [str(d.id) for d in page]},
    )
    next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if more and page else None
    return DocumentPage(items=[DocumentOut.model_validate(d) for d in page], next_cursor=next_cursor)


async def _live(tx: ActingSession, document_id: uuid.UUID, *, for_update: bool = False) -> Document:
    document = await repository.get_live_document(tx.session, tx.tenant.id, document_id, for_update=for_update)
    if document is None:
        raise NotFound("document", document_id)
    return document


async def read_document(tx: ActingSession, document_id: uuid.UUID) -> Document:
    document = await _live(tx, document_id)
    await tx.audit("document.viewed", resource_type="document", resource_id=document_id)
    return document


@dataclass(frozen=True)
class Download:
    document: Document
    first: bytes
    rest: Iterator[bytes]

    def pieces(self) -> Iterator[bytes]:
        yield self.first
        yield from self.rest


async def open_download(tx: ActingSession, store: ObjectStore, document_id: uuid.UUID) -> Download:
    """The document's plaintext, its first piece already decrypted, and the download audited.

    The first piece is read before the audit event is committed, so a failure is an error, not a download."""
    document = await _live(tx, document_id)
    first, rest = await open_plaintext(store, tenant_key_ref(tx.tenant), document_id)
    await tx.audit(
        "document.downloaded", resource_type="document", resource_id=document_id, metadata={"sha256": document.sha256}
    )
    return Download(document=document, first=first, rest=rest)


async def delete_document(tx: ActingSession, document_id: uuid.UUID) -> None:
    """Soft delete: the document leaves lists and search at once and is purged after the retention period."""
    document = await _live(tx, document_id, for_update=True)
    document.deleted_at = datetime.now(UTC)
    await tx.audit("document.deleted", resource_type="document", resource_id=document_id)


async def restore_document(
    transaction: TransactionFactory, enqueue: Enqueue, document_id: uuid.UUID, *, retention: timedelta
) -> Document:
    """Undo a delete within the retention period, unless the same content was uploaded again since.

    A document deleted before it was processed is sent to the worker again (the worker skips deleted ones)."""
    async with transaction() as tx:
        document = await repository.get_document(tx.session, tx.tenant.id, document_id, for_update=True)
        if document is None or document.deleted_at is None:
            raise NotFound("deleted document", document_id)
        if document.deleted_at < datetime.now(UTC) - retention:
            raise Conflict("retention_expired", "this document was deleted too long ago to be restored")
        if await repository.find_live_by_sha256(tx.session, tx.tenant.id, document.sha256) is not None:
            raise Conflict("duplicate_content", "a live document with the same content exists")
        document.deleted_at = None
        await written(tx.session, document)
        await tx.audit("document.restored", resource_type="document", resource_id=document_id)
    if document.status in repository.CLAIMABLE:
        await enqueue(tx.tenant.id, document_id)
    return document
