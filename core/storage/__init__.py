"""Object storage for uploaded documents, always encrypted with the tenant's key (architecture invariant 6).

Objects live at ``tenants/<tenant_id>/documents/<document_id>`` (`object_key`) in every store. How the bytes are
encrypted is separate from where they live:

* **Envelope** (`LocalEncryptedStore` on disk, `S3EnvelopeStore` in any S3-compatible bucket): PHIVault encrypts
  the object itself, in the format of `core.storage.envelope` (`EnvelopeSealer` writes it, `open_envelope` reads
  it). A fresh data key per object comes from the `KeyProvider` (wrapped by the tenant key, bound to tenant and
  document), and the content is a sequence of AES-256-GCM segments, so objects of any size stream in constant
  memory. The bucket only ever holds ciphertext; S3 writes carry no SSE headers (a bucket's default encryption, if
  any, still applies).
* **SSE-KMS** (`S3Store`, AWS S3): S3 encrypts with the tenant's own KMS key, an S3 Bucket Key, and the
  encryption context ``{"tenant_id", "document_id"}``. Reads check that S3 reports the tenant's key.

The modules: `objects` (the `ObjectStore` protocol and what every store and caller shares), `envelope` (the
envelope format), `local` (files on disk), `s3` (both S3 stores). This package holds `object_store_from_settings`,
which picks one, and re-exports the public names of all four.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.keys import KeyProvider
from core.storage.envelope import MAGIC, SEGMENT_SIZE, EnvelopeSealer, open_envelope
from core.storage.local import LocalEncryptedStore
from core.storage.objects import (
    DEFAULT_CHUNK_SIZE,
    MIB,
    ByteSource,
    ObjectNotFoundError,
    ObjectStore,
    StorageEncryptionError,
    StoredObject,
    object_key,
    tenant_prefix,
)
from core.storage.s3 import S3_ENVELOPE_PARTS_IN_MEMORY, S3_MULTIPART_CHUNK_SIZE, S3EnvelopeStore, S3Store, s3_client

if TYPE_CHECKING:
    from core.settings import Settings

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MAGIC",
    "MIB",
    "S3_ENVELOPE_PARTS_IN_MEMORY",
    "S3_MULTIPART_CHUNK_SIZE",
    "SEGMENT_SIZE",
    "ByteSource",
    "EnvelopeSealer",
    "LocalEncryptedStore",
    "ObjectNotFoundError",
    "ObjectStore",
    "S3EnvelopeStore",
    "S3Store",
    "StorageEncryptionError",
    "StoredObject",
    "object_key",
    "object_store_from_settings",
    "open_envelope",
    "s3_client",
    "tenant_prefix",
]


def object_store_from_settings(settings: Settings, keys: KeyProvider) -> ObjectStore:
    """The store for `PHIVAULT_STORAGE` and, with `s3`, for the effective `PHIVAULT_S3_ENCRYPTION`."""
    if settings.storage == "local":
        return LocalEncryptedStore(settings.data_dir / "objects", keys)
    if not settings.s3_bucket:
        raise ValueError("PHIVAULT_S3_BUCKET is required when PHIVAULT_STORAGE=s3")
    if settings.effective_s3_encryption == "envelope":
        return S3EnvelopeStore(s3_client(settings), settings.s3_bucket, keys)
    if keys.name != "aws-kms":
        raise ValueError(
            "PHIVAULT_S3_ENCRYPTION=sse-kms encrypts with per-tenant KMS keys: set PHIVAULT_KEY_PROVIDER=aws-kms, "
            "or PHIVAULT_S3_ENCRYPTION=envelope"
        )
    return S3Store(s3_client(settings), settings.s3_bucket, keys)
