"""The S3 stores, one bucket each, objects at `object_key`, with either of two encryptions.

* `S3EnvelopeStore` (any S3-compatible bucket): PHIVault encrypts the object itself in the envelope format of
  `core.storage.envelope`, so the bucket only ever holds ciphertext; writes carry no SSE headers (a bucket's default
  encryption, if any, still applies).
* `S3Store` (AWS S3, SSE-KMS): S3 encrypts with the tenant's own KMS key, an S3 Bucket Key, and the encryption
  context ``{"tenant_id", "document_id"}``. Reads check that S3 reports the tenant's key.
"""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from core.keys import KeyProvider, TenantKeyRef, encryption_context, kms_key_matches
from core.storage.envelope import SEGMENT_SIZE, EnvelopeSealer, open_envelope
from core.storage.objects import (
    DEFAULT_CHUNK_SIZE,
    MIB,
    ObjectNotFoundError,
    StorageEncryptionError,
    StoredObject,
    check_chunk_size,
    object_key,
)

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import GetObjectOutputTypeDef

    from core.settings import Settings

S3_MULTIPART_CHUNK_SIZE: Final = 8 * MIB
S3_ENVELOPE_PARTS_IN_MEMORY: Final = 4
"""Envelope uploads stream (ciphertext is made while it is sent); this bounds the parts s3transfer holds in memory."""


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
        check_chunk_size(chunk_size)
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
    """Envelope-encrypted objects (the format of `core.storage.envelope`) in any S3-compatible bucket.

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
        check_chunk_size(chunk_size)
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
