"""Receiving an upload: spool, hash, detect, dedupe, encrypt-and-store, record, enqueue.

The object is stored before its row is written, and removed again (compensation)
if the put or the row fails, so a failed upload leaves neither a `documents` row
nor an object. The row and its audit event share one transaction; the task is sent
after commit. A store that fails (disk, S3 or KMS unreachable, a 5xx) raises
`StorageUnavailable`, which the API answers with 503: the client may retry.

One window remains: a commit whose acknowledgement is lost with the connection is
taken as not committed, so its object is removed; if the row did commit, its
processing fails with a reason (the object is missing), and nothing is silently lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import botocore.exceptions
from boto3.exceptions import S3UploadFailedError
from sqlalchemy.exc import IntegrityError

from core.db import Database
from core.keys import TenantKeyRef
from core.storage import ObjectStore, StoredObject
from ingest.detect import RejectedUpload, UploadLimits, inspect_upload
from ingest.repository import find_live_by_sha256
from models.audit import ActingSession, Actor
from models.document import Document
from models.tenant import Tenant

log = logging.getLogger(__name__)

COPY_CHUNK = 1024 * 1024


TransactionFactory = Callable[[], AbstractAsyncContextManager[ActingSession]]
Enqueue = Callable[[uuid.UUID, uuid.UUID], Awaitable[bool]]


@dataclass(frozen=True)
class SpooledUpload:
    path: Path
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class UploadOutcome:
    document: Document
    duplicate: bool


class TenantUnavailable(Exception):
    """The tenant does not exist, was deleted or is suspended."""


class StorageUnavailable(Exception):
    """The object store, or the key service it encrypts with, could not take the upload; nothing was kept."""


_THROTTLING_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded"})


def _storage_fault(exc: BaseException) -> bool:
    """Whether `exc` from a store is the store failing (a later attempt may succeed) rather than a bug.

    Local I/O errors (disk full, read-only, I/O error); S3 or KMS unreachable, timing out or cutting the
    connection; their 5xx and throttling answers, also as boto3's `S3UploadFailedError`. A 4xx such as a
    missing bucket or a denied key is a deployment fault and stays an error.
    """
    if isinstance(exc, S3UploadFailedError):
        return exc.__context__ is not None and _storage_fault(exc.__context__)
    if isinstance(exc, botocore.exceptions.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or exc.response.get("Error", {}).get("Code", "") in _THROTTLING_CODES
    return isinstance(exc, OSError | botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError)


def service_transaction(db: Database, tenant_id: uuid.UUID, actor: Actor) -> TransactionFactory:
    """Transactions for callers outside HTTP (the CLI): same tenant checks, no user to provision."""

    @asynccontextmanager
    async def transaction() -> AsyncIterator[ActingSession]:
        async with db.tenant_session(tenant_id) as session:
            tenant = await session.get(Tenant, tenant_id)
            if tenant is None or tenant.deleted_at is not None or tenant.status != "active":
                raise TenantUnavailable(f"tenant {tenant_id} does not exist or is not active")
            yield ActingSession(session=session, tenant=tenant, actor=actor)

    return transaction


def tenant_key_ref(tenant: Tenant) -> TenantKeyRef:
    return TenantKeyRef(tenant_id=tenant.id, kms_key_id=tenant.kms_key_id, wrapped_key=tenant.wrapped_key)


@asynccontextmanager
async def spooled(source: BinaryIO, spool_dir: Path, max_bytes: int) -> AsyncIterator[SpooledUpload]:
    """Copy `source` to a private temporary file, hashing as it goes; removed on exit."""
    upload = await asyncio.to_thread(_spool, source, spool_dir, max_bytes)
    try:
        yield upload
    finally:
        await asyncio.to_thread(upload.path.unlink, missing_ok=True)


def _spool(source: BinaryIO, spool_dir: Path, max_bytes: int) -> SpooledUpload:
    spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(prefix="upload-", dir=spool_dir)
    path = Path(name)
    try:
        size, digest = _copy_and_hash(source, fd, max_bytes)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return SpooledUpload(path=path, size_bytes=size, sha256=digest)


def _copy_and_hash(source: BinaryIO, fd: int, max_bytes: int) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with os.fdopen(fd, "wb") as target:
        while chunk := source.read(COPY_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise RejectedUpload("too_large", f"the file is larger than the limit of {max_bytes} bytes", 413)
            digest.update(chunk)
            target.write(chunk)
    if size == 0:
        raise RejectedUpload("empty_file", "the file is empty", 422)
    return size, digest.hexdigest()


async def detect_type(upload: SpooledUpload, limits: UploadLimits) -> str:
    return await asyncio.to_thread(inspect_upload, upload.path, limits)


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
        stored = await asyncio.to_thread(_put, store, keys, document_id, upload.path)
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
            tx.session.add(document)
            await tx.session.flush()
            await tx.audit(
                "document.uploaded",
                resource_type="document",
                resource_id=document_id,
                metadata={"sha256": upload.sha256, "size_bytes": upload.size_bytes, "content_type": content_type},
            )
            await tx.session.refresh(document)
    except BaseException as exc:
        await _discard(store, tenant_id, document_id)
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
    existing = await find_live_by_sha256(tx.session, tx.tenant.id, sha256)
    if existing is not None:
        await tx.audit(
            "document.duplicate", resource_type="document", resource_id=existing.id, metadata={"sha256": sha256}
        )
    return existing


def _put(store: ObjectStore, keys: TenantKeyRef, document_id: uuid.UUID, path: Path) -> StoredObject:
    with path.open("rb") as source:
        try:
            return store.put(keys, document_id, source)
        except Exception as exc:
            if _storage_fault(exc):
                raise StorageUnavailable(f"the object store failed ({type(exc).__name__})") from exc
            raise


async def open_plaintext(
    store: ObjectStore, keys: TenantKeyRef, document_id: uuid.UUID
) -> tuple[bytes, Iterator[bytes]]:
    """A stored document's first decrypted piece, and an iterator over the rest.

    Reading the first piece fetches and authenticates the object, so a store that is down is met here,
    before any response starts, as `StorageUnavailable` (a 503 the client may retry)."""

    def first() -> tuple[bytes, Iterator[bytes]]:
        try:
            pieces = store.iter_plaintext(keys, document_id)
            return next(pieces, b""), pieces
        except Exception as exc:
            if _storage_fault(exc):
                raise StorageUnavailable(f"the object store failed ({type(exc).__name__})") from exc
            raise

    return await asyncio.to_thread(first)


async def _discard(store: ObjectStore, tenant_id: uuid.UUID, document_id: uuid.UUID) -> None:
    """Remove whatever a failed upload left in the store; a store that cannot is logged, and the first error kept.

    Also after a failed put: one can fail after its object became visible (S3's check of the stored
    object's encryption, a directory sync after the rename).
    """
    try:
        await asyncio.to_thread(store.delete, tenant_id, document_id)
    except Exception as exc:
        log.warning(
            "could not remove the object of a failed upload",
            extra={"document_id": str(document_id), "error_type": type(exc).__name__},
        )
