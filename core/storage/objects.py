"""What every object store and every caller shares: the `ObjectStore` protocol, where objects live, what a put returns.

Objects live at ``tenants/<tenant_id>/documents/<document_id>`` (`object_key`) in every store.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final, Protocol

from core.keys import DecryptionError, TenantKeyRef

MIB: Final = 1024 * 1024
DEFAULT_CHUNK_SIZE: Final = MIB


class ObjectNotFoundError(FileNotFoundError):
    """No stored object for this tenant and document."""


class StorageEncryptionError(DecryptionError):
    """The backend did not (or does not report that it did) encrypt the object with the tenant's key."""


def tenant_prefix(tenant_id: uuid.UUID) -> str:
    """Where every object of the tenant lives: `object_key` is this prefix and the document id."""
    if not isinstance(tenant_id, uuid.UUID):
        raise TypeError("tenant_id must be uuid.UUID")
    return f"tenants/{tenant_id}/documents/"


def document_id_of(name: str) -> uuid.UUID | None:
    """The document id an object's last path segment names; None for anything else (a temporary file)."""
    try:
        return uuid.UUID(name.rsplit("/", 1)[-1])
    except ValueError:
        return None


def object_key(tenant_id: uuid.UUID, document_id: uuid.UUID) -> str:
    """The object's key in the store; ids must be UUIDs so the key can never escape its tenant's prefix."""
    if not isinstance(tenant_id, uuid.UUID) or not isinstance(document_id, uuid.UUID):
        raise TypeError("tenant_id and document_id must be uuid.UUID")
    return tenant_prefix(tenant_id) + str(document_id)


@dataclass(frozen=True)
class StoredObject:
    """Where an object went: its key, its plaintext size, and the KMS key protecting it (None for local keys)."""

    key: str
    size_bytes: int
    kms_key_id: str | None


class ObjectStore(Protocol):
    def put(self, tenant: TenantKeyRef, document_id: uuid.UUID, source: BinaryIO) -> StoredObject:
        """Store the whole of the seekable `source` (rewound to 0 first), replacing any previous object."""
        ...

    def iter_plaintext(
        self, tenant: TenantKeyRef, document_id: uuid.UUID, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> Iterator[bytes]:
        """The decrypted content in chunks of at most `chunk_size` bytes; `ObjectNotFoundError` if missing."""
        ...

    def read(self, tenant: TenantKeyRef, document_id: uuid.UUID) -> bytes: ...

    def rekey(self, tenant: TenantKeyRef, document_id: uuid.UUID) -> bool:
        """Put the object under the tenant's current key (key rotation); False when it is under it already.

        Readers see the old object or the new one, both readable while the tenant row keeps the previous key.
        `ObjectNotFoundError` if missing.
        """
        ...

    def delete(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> None:
        """Remove the object; deleting a missing object is not an error."""
        ...

    def exists(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> bool: ...

    def document_ids(self, tenant_id: uuid.UUID) -> list[uuid.UUID]:
        """The documents the store holds an object for under the tenant's prefix (orphans included)."""
        ...


class ByteSource(Protocol):
    """What an envelope is read from: a local file or an S3 response body."""

    def read(self, size: int, /) -> bytes: ...

    def close(self) -> None: ...


def check_chunk_size(chunk_size: int) -> None:
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
