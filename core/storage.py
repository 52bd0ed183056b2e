"""Object storage for uploaded documents, always encrypted with the tenant's key (architecture invariant 6).

Objects live at ``tenants/<tenant_id>/documents/<document_id>`` (`object_key`) in every store. How the bytes are
encrypted is separate from where they live:

* **Envelope** (`LocalEncryptedStore` on disk, `S3EnvelopeStore` in any S3-compatible bucket): PHIVault encrypts
  the object itself, in the format below (`EnvelopeSealer` writes it, `open_envelope` reads it). A fresh data key
  per object comes from the `KeyProvider` (wrapped by the tenant key, bound to tenant and document), and the content
  is a sequence of AES-256-GCM segments, so objects of any size stream in constant memory. The bucket only ever
  holds ciphertext; S3 writes carry no SSE headers (a bucket's default encryption, if any, still applies).
* **SSE-KMS** (`S3Store`, AWS S3): S3 encrypts with the tenant's own KMS key, an S3 Bucket Key, and the
  encryption context ``{"tenant_id", "document_id"}``. Reads check that S3 reports the tenant's key.

Envelope format, version 1 (all integers big-endian)::

    header   magic            4 bytes   b"PHV1"
             wrapped_len      2 bytes   uint16, length of the wrapped data key
             wrapped_key      wrapped_len bytes (KeyProvider.generate_data_key(...).wrapped)
    segment  seg_len          4 bytes   uint32, = 12 + len(plaintext) + 16
    (1..n)   nonce            12 bytes  random per segment
             ciphertext||tag  seg_len - 12 bytes, AES-256-GCM under the data key

Every segment but the last holds exactly `SEGMENT_SIZE` (1 MiB) of plaintext; the last holds 0..1 MiB, so an empty
object is one empty final segment. The associated data of segment *i* is::

    tenant_id.bytes (16) || document_id.bytes (16) || i as uint64 (8) || final flag (1: 0x01 last, 0x00 otherwise)

The reader derives *i* from the position and the final flag from "nothing follows this segment", so an object
copied under another tenant's or document's key, segments reordered, dropped, duplicated or appended, or a
truncated object all fail authentication with `DecryptionError`. Local files are written to a temporary file in
the same directory and published with `os.replace`; files are 0600 and directories 0700.

Decryption is streamed: a tampered segment raises in the middle of `iter_plaintext`, after earlier segments were
yielded. Consumers that must not act on partial data (the API streaming a download) treat an exception during
iteration as a failed read.
"""

from __future__ import annotations

import base64
import io
import json
import os
import struct
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final, Protocol

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.keys import (
    NONCE_BYTES,
    TAG_BYTES,
    DecryptionError,
    KeyProvider,
    TenantKeyRef,
    encryption_context,
    kms_key_matches,
)

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import GetObjectOutputTypeDef

    from core.settings import Settings

MIB: Final = 1024 * 1024
SEGMENT_SIZE: Final = MIB
DEFAULT_CHUNK_SIZE: Final = MIB
S3_MULTIPART_CHUNK_SIZE: Final = 8 * MIB
S3_ENVELOPE_PARTS_IN_MEMORY: Final = 4
"""Envelope uploads stream (ciphertext is made while it is sent); this bounds the parts s3transfer holds in memory."""

MAGIC: Final = b"PHV1"
_WRAPPED_LEN: Final = struct.Struct(">H")
_SEGMENT_LEN: Final = struct.Struct(">I")
_SEGMENT_INDEX: Final = struct.Struct(">Q")
_MIN_SEGMENT: Final = NONCE_BYTES + TAG_BYTES
_MAX_SEGMENT: Final = NONCE_BYTES + SEGMENT_SIZE + TAG_BYTES


class ObjectNotFoundError(FileNotFoundError):
    """No stored object for this tenant and document."""


class StorageEncryptionError(DecryptionError):
    """The backend did not (or does not report that it did) encrypt the object with the tenant's key."""


def object_key(tenant_id: uuid.UUID, document_id: uuid.UUID) -> str:
    """The object's key in the store; ids must be UUIDs so the key can never escape its tenant's prefix."""
    if not isinstance(tenant_id, uuid.UUID) or not isinstance(document_id, uuid.UUID):
        raise TypeError("tenant_id and document_id must be uuid.UUID")
    return f"tenants/{tenant_id}/documents/{document_id}"


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

    def delete(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> None:
        """Remove the object; deleting a missing object is not an error."""
        ...

    def exists(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> bool: ...


class ByteSource(Protocol):
    """What an envelope is read from: a local file or an S3 response body."""

    def read(self, size: int, /) -> bytes: ...

    def close(self) -> None: ...


def _read_full(source: ByteSource, size: int) -> bytes:
    """Read exactly `size` bytes, fewer only at end of file (raw and socket-like files may return short reads)."""
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        part = source.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def _check_chunk_size(chunk_size: int) -> None:
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")


# --- the envelope format -------------------------------------------------------------------------------------------


def _segment_aad(tenant_id: uuid.UUID, document_id: uuid.UUID, index: int, final: bool) -> bytes:
    return tenant_id.bytes + document_id.bytes + _SEGMENT_INDEX.pack(index) + (b"\x01" if final else b"\x00")


class EnvelopeSealer:
    """Encrypts one object into the envelope format under a fresh data key, generated when the sealer is made."""

    def __init__(self, keys: KeyProvider, tenant: TenantKeyRef, document_id: uuid.UUID) -> None:
        data_key = keys.generate_data_key(tenant, document_id)
        if len(data_key.wrapped) > 0xFFFF:
            raise ValueError("wrapped data key too long for the envelope header")
        self._aead = AESGCM(data_key.plaintext)
        self._header = MAGIC + _WRAPPED_LEN.pack(len(data_key.wrapped)) + data_key.wrapped
        self._tenant_id = tenant.tenant_id
        self._document_id = document_id
        self.plaintext_size = 0
        """Plaintext bytes sealed so far; the object's size once `chunks` is exhausted."""

    def chunks(self, source: ByteSource) -> Iterator[bytes]:
        """The header, then one sealed segment per `SEGMENT_SIZE` of `source`, read from its current position."""
        yield self._header
        index = 0
        current = _read_full(source, SEGMENT_SIZE)
        while True:
            following = _read_full(source, SEGMENT_SIZE) if len(current) == SEGMENT_SIZE else b""
            final = not following
            nonce = os.urandom(NONCE_BYTES)
            sealed = self._aead.encrypt(nonce, current, _segment_aad(self._tenant_id, self._document_id, index, final))
            self.plaintext_size += len(current)
            yield _SEGMENT_LEN.pack(NONCE_BYTES + len(sealed)) + nonce + sealed
            if final:
                return
            current = following
            index += 1


def open_envelope(
    source: ByteSource,
    keys: KeyProvider,
    tenant: TenantKeyRef,
    document_id: uuid.UUID,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Iterator[bytes]:
    """The plaintext of the envelope in `source`, in chunks of at most `chunk_size` bytes; takes over `source`.

    The header is read and the data key unwrapped now, so a foreign or damaged object fails at the call rather than
    at the first chunk; the segments are decrypted as they are consumed. `source` is closed when the iterator
    finishes, is closed, or this call fails.
    """
    try:
        _check_chunk_size(chunk_size)
        header = _read_full(source, len(MAGIC) + _WRAPPED_LEN.size)
        if len(header) != len(MAGIC) + _WRAPPED_LEN.size or header[: len(MAGIC)] != MAGIC:
            raise DecryptionError(f"document {document_id}: not a PHIVault v1 object")
        (wrapped_len,) = _WRAPPED_LEN.unpack(header[len(MAGIC) :])
        wrapped = _read_full(source, wrapped_len)
        if len(wrapped) != wrapped_len:
            raise DecryptionError(f"document {document_id}: truncated header")
        data_key = keys.unwrap_data_key(tenant, document_id, wrapped)
    except BaseException:
        source.close()
        raise
    return _open_segments(source, AESGCM(data_key), tenant.tenant_id, document_id, chunk_size)


def _open_segments(
    source: ByteSource, aead: AESGCM, tenant_id: uuid.UUID, document_id: uuid.UUID, chunk_size: int
) -> Iterator[bytes]:
    with closing(source):
        index = 0
        prefix = _read_full(source, _SEGMENT_LEN.size)
        while True:
            if len(prefix) != _SEGMENT_LEN.size:
                raise DecryptionError(f"document {document_id}: truncated (segment {index} missing)")
            (length,) = _SEGMENT_LEN.unpack(prefix)
            if not _MIN_SEGMENT <= length <= _MAX_SEGMENT:
                raise DecryptionError(f"document {document_id}: bad length of segment {index}")
            body = _read_full(source, length)
            if len(body) != length:
                raise DecryptionError(f"document {document_id}: truncated (segment {index} cut short)")
            # Look ahead one length prefix: the segment is final exactly when nothing follows it.
            prefix = _read_full(source, _SEGMENT_LEN.size)
            final = not prefix
            aad = _segment_aad(tenant_id, document_id, index, final)
            try:
                plaintext = aead.decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], aad)
            except InvalidTag:
                raise DecryptionError(f"document {document_id}: segment {index} failed authentication") from None
            for start in range(0, len(plaintext), chunk_size):
                yield plaintext[start : start + chunk_size]
            if final:
                return
            index += 1


class _ChunkStream(io.RawIOBase):
    """A read-only, non-seekable file over an iterator of byte strings (ciphertext made while it is uploaded)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        with memoryview(buffer) as target:
            count = min(len(target), len(self._pending))
            target[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count


# --- local files ---------------------------------------------------------------------------------------------------


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalEncryptedStore:
    """Envelope-encrypted files under `root`, one per object (format in the module docstring)."""

    def __init__(self, root: Path, keys: KeyProvider) -> None:
        self.root = root
        self.keys = keys

    def _path(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> Path:
        return self.root / object_key(tenant_id, document_id)

    def _ensure_dir(self, directory: Path) -> None:
        missing: list[Path] = []
        current = directory
        while not current.is_dir():
            missing.append(current)
            current = current.parent
        for path in reversed(missing):
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                continue
            os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask

    def put(self, tenant: TenantKeyRef, document_id: uuid.UUID, source: BinaryIO) -> StoredObject:
        key = object_key(tenant.tenant_id, document_id)
        path = self.root / key
        sealer = EnvelopeSealer(self.keys, tenant, document_id)
        self._ensure_dir(path.parent)
        source.seek(0)
        fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".upload-", suffix=".tmp")  # 0600, O_EXCL
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in sealer.chunks(source):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        return StoredObject(key=key, size_bytes=sealer.plaintext_size, kms_key_id=tenant.kms_key_id)

    def iter_plaintext(
        self, tenant: TenantKeyRef, document_id: uuid.UUID, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> Iterator[bytes]:
        _check_chunk_size(chunk_size)
        path = self._path(tenant.tenant_id, document_id)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - open_envelope closes it
        except FileNotFoundError:
            raise ObjectNotFoundError(f"no object {object_key(tenant.tenant_id, document_id)}") from None
        return open_envelope(handle, self.keys, tenant, document_id, chunk_size)

    def read(self, tenant: TenantKeyRef, document_id: uuid.UUID) -> bytes:
        return b"".join(self.iter_plaintext(tenant, document_id))

    def delete(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> None:
        self._path(tenant_id, document_id).unlink(missing_ok=True)

    def exists(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> bool:
        return self._path(tenant_id, document_id).is_file()


# --- S3 ------------------------------------------------------------------------------------------------------------


def _enable_bucket_key(params: dict[str, Any], **_: Any) -> None:
    """Ask for an S3 Bucket Key on every SSE-KMS write (PutObject, CreateMultipartUpload).

    `upload_fileobj` refuses `BucketKeyEnabled` in `ExtraArgs` (s3transfer's allow-list lacks it), so it is added
    to the request parameters here instead.
    """
    if params.get("ServerSideEncryption") == "aws:kms":
        params.setdefault("BucketKeyEnabled", True)


def _client_error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class _S3Objects:
    """What both S3 stores share: one bucket, objects at `object_key`, multipart above `multipart_threshold`."""

    def __init__(self, client: S3Client, bucket: str, keys: KeyProvider, multipart_threshold: int = 8 * MIB) -> None:
        self.client = client
        self.bucket = bucket
        self.keys = keys
        self.multipart_threshold = multipart_threshold

    def _get(self, key: str) -> GetObjectOutputTypeDef:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if _client_error_code(error) in ("NoSuchKey", "404"):
                raise ObjectNotFoundError(f"no object {key}") from None
            raise

    def delete(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=object_key(tenant_id, document_id))

    def exists(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=object_key(tenant_id, document_id))
        except ClientError as error:
            if _client_error_code(error) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True


class S3Store(_S3Objects):
    """SSE-KMS objects in one bucket, each under its tenant's KMS key with context {tenant_id, document_id}.

    `keys` is not used for the content (S3 encrypts it); it is kept so every store is built the same way.
    The constructor registers a request hook on `client` that adds `BucketKeyEnabled` to its SSE-KMS writes.
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        keys: KeyProvider,
        multipart_threshold: int = 8 * MIB,
    ) -> None:
        super().__init__(client, bucket, keys, multipart_threshold)
        for operation in ("PutObject", "CreateMultipartUpload"):
            client.meta.events.register(
                f"before-parameter-build.s3.{operation}",
                _enable_bucket_key,
                unique_id=f"phivault-bucket-key-{operation}",
            )

    @staticmethod
    def _kms_key_id(tenant: TenantKeyRef) -> str:
        if not tenant.kms_key_id:
            raise ValueError(f"tenant {tenant.tenant_id} has no KMS key; S3 storage requires the aws-kms provider")
        return tenant.kms_key_id

    def _check_encryption(self, tenant_key: str, key: str, response: Any) -> None:
        if response.get("ServerSideEncryption") != "aws:kms" or not kms_key_matches(
            tenant_key, str(response.get("SSEKMSKeyId", ""))
        ):
            raise StorageEncryptionError(f"object {key} is not SSE-KMS encrypted with the tenant's key")

    def put(self, tenant: TenantKeyRef, document_id: uuid.UUID, source: BinaryIO) -> StoredObject:
        kms_key_id = self._kms_key_id(tenant)
        key = object_key(tenant.tenant_id, document_id)
        context = json.dumps(encryption_context(tenant.tenant_id, document_id), separators=(",", ":"))
        source.seek(0)
        self.client.upload_fileobj(
            source,
            self.bucket,
            key,
            ExtraArgs={
                "ServerSideEncryption": "aws:kms",
                "SSEKMSKeyId": kms_key_id,
                "SSEKMSEncryptionContext": base64.b64encode(context.encode()).decode("ascii"),
            },
            Config=TransferConfig(
                multipart_threshold=self.multipart_threshold,
                multipart_chunksize=S3_MULTIPART_CHUNK_SIZE,
            ),
        )
        # Some S3-compatible servers ignore SSE headers: never report success for an object not under the tenant key.
        head = self.client.head_object(Bucket=self.bucket, Key=key)
        try:
            self._check_encryption(kms_key_id, key, head)
        except StorageEncryptionError:
            self.client.delete_object(Bucket=self.bucket, Key=key)
            raise
        return StoredObject(key=key, size_bytes=head["ContentLength"], kms_key_id=kms_key_id)

    def iter_plaintext(
        self, tenant: TenantKeyRef, document_id: uuid.UUID, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> Iterator[bytes]:
        _check_chunk_size(chunk_size)
        kms_key_id = self._kms_key_id(tenant)
        key = object_key(tenant.tenant_id, document_id)
        response = self._get(key)
        body = response["Body"]
        try:
            self._check_encryption(kms_key_id, key, response)
        except BaseException:
            body.close()
            raise
        return self._stream(body, chunk_size)

    @staticmethod
    def _stream(body: Any, chunk_size: int) -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(chunk_size)
        finally:
            body.close()

    def read(self, tenant: TenantKeyRef, document_id: uuid.UUID) -> bytes:
        return b"".join(self.iter_plaintext(tenant, document_id))


class S3EnvelopeStore(_S3Objects):
    """Envelope-encrypted objects (the format in the module docstring) in any S3-compatible bucket.

    PHIVault encrypts with the tenant's key from `keys` (local or KMS), so the bucket needs no KMS support and only
    ever receives ciphertext. Writes send no SSE headers. Both directions stream: the ciphertext is made while it is
    uploaded (multipart above `multipart_threshold`, at most `S3_ENVELOPE_PARTS_IN_MEMORY` parts buffered), and
    decrypted while it is downloaded.
    """

    def put(self, tenant: TenantKeyRef, document_id: uuid.UUID, source: BinaryIO) -> StoredObject:
        key = object_key(tenant.tenant_id, document_id)
        sealer = EnvelopeSealer(self.keys, tenant, document_id)
        config = TransferConfig(
            multipart_threshold=self.multipart_threshold, multipart_chunksize=S3_MULTIPART_CHUNK_SIZE
        )
        config.max_in_memory_upload_chunks = S3_ENVELOPE_PARTS_IN_MEMORY  # an s3transfer setting, no boto3 keyword
        source.seek(0)
        with io.BufferedReader(_ChunkStream(sealer.chunks(source)), buffer_size=SEGMENT_SIZE) as ciphertext:
            self.client.upload_fileobj(ciphertext, self.bucket, key, Config=config)
        return StoredObject(key=key, size_bytes=sealer.plaintext_size, kms_key_id=tenant.kms_key_id)

    def iter_plaintext(
        self, tenant: TenantKeyRef, document_id: uuid.UUID, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> Iterator[bytes]:
        _check_chunk_size(chunk_size)
        response = self._get(object_key(tenant.tenant_id, document_id))
        return open_envelope(response["Body"], self.keys, tenant, document_id, chunk_size)

    def read(self, tenant: TenantKeyRef, document_id: uuid.UUID) -> bytes:
        return b"".join(self.iter_plaintext(tenant, document_id))


def s3_client(settings: Settings) -> S3Client:
    """An S3 client in the configured addressing style.

    Unset, a custom endpoint (MinIO, Ceph, older Railway buckets) gets path-style addressing, which needs
    no bucket DNS names, and AWS gets boto3's default; Railway's current buckets want `virtual`.
    """
    style = settings.s3_addressing_style or ("path" if settings.s3_endpoint_url else None)
    config = Config(s3={"addressing_style": style}) if style else None
    return boto3.client("s3", region_name=settings.aws_region, endpoint_url=settings.s3_endpoint_url, config=config)


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
