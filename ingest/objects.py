"""A document's encrypted object in the store, as the upload and download paths use it.

A store that fails (disk, S3 or KMS unreachable, a 5xx, throttling) raises `StorageUnavailable`,
which the API answers with 503: the client may retry. Any other error is a fault and propagates.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import botocore.exceptions
from boto3.exceptions import S3UploadFailedError

from core.keys import TenantKeyRef
from core.storage import ObjectStore, StoredObject

log = logging.getLogger(__name__)


class StorageUnavailable(Exception):
    """The object store, or the key service it encrypts with, could not take the request; nothing was kept."""


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


def put_file(store: ObjectStore, keys: TenantKeyRef, document_id: uuid.UUID, path: Path) -> StoredObject:
    """Encrypt and store the file at `path` (blocking: run it in a thread)."""
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


async def discard(store: ObjectStore, tenant_id: uuid.UUID, document_id: uuid.UUID) -> None:
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
