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
import itertools
import json
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from core.keys import KeyProvider, TenantKeyRef, encryption_context, kms_key_matches
from core.storage.envelope import SEGMENT_SIZE, EnvelopeSealer, copy_rest, open_envelope, rewrapped_header
from core.storage.objects import (
    DEFAULT_CHUNK_SIZE,
    MIB,
    ObjectNotFoundError,
    StorageEncryptionError,
    StoredObject,
    check_chunk_size,
    document_id_of,
    object_key,
    tenant_prefix,
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
    """Ask for an S3 Bucket Key on every SSE-KMS write (PutObject, CreateMultipartUpload, CopyObject).

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

    def document_ids(self, tenant_id: uuid.UUID) -> list[uuid.UUID]:
        found: list[uuid.UUID] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=tenant_prefix(tenant_id)
        ):
            for item in page.get("Contents", []):
                document_id = document_id_of(item["Key"])
                if document_id is not None:
                    found.append(document_id)
        return sorted(found)


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
        for operation in ("PutObject", "CreateMultipartUpload", "CopyObject"):
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

    def _check_encryption(self, tenant_keys: list[str], key: str, response: Any) -> None:
        """The object is SSE-KMS under one of `tenant_keys` (the current key; during a rotation, the previous too)."""
        actual = str(response.get("SSEKMSKeyId", ""))
        if response.get("ServerSideEncryption") != "aws:kms" or not any(
            kms_key_matches(tenant_key, actual) for tenant_key in tenant_keys
        ):
            raise StorageEncryptionError(f"object {key} is not SSE-KMS encrypted with the tenant's key")

    @staticmethod
    def _sse_kms(tenant: TenantKeyRef, document_id: uuid.UUID, kms_key_id: str) -> dict[str, str]:
        context = json.dumps(encryption_context(tenant.tenant_id, document_id), separators=(",", ":"))
        return {
            "ServerSideEncryption": "aws:kms",
            "SSEKMSKeyId": kms_key_id,
            "SSEKMSEncryptionContext": base64.b64encode(context.encode()).decode("ascii"),
        }

    def put(self, tenant: TenantKeyRef, document_id: uuid.UUID, source: BinaryIO) -> StoredObject:
        kms_key_id = self._kms_key_id(tenant)
        key = object_key(tenant.tenant_id, document_id)
        source.seek(0)
        self.client.upload_fileobj(
            source,
            self.bucket,
            key,
            ExtraArgs=dict(self._sse_kms(tenant, document_id, kms_key_id)),
            Config=TransferConfig(
                multipart_threshold=self.multipart_threshold,
                multipart_chunksize=S3_MULTIPART_CHUNK_SIZE,
            ),
        )
        # Some S3-compatible servers ignore SSE headers: never report success for an object not under the tenant key.
        head = self.client.head_object(Bucket=self.bucket, Key=key)
        try:
            self._check_encryption([kms_key_id], key, head)
        except StorageEncryptionError:
            self.client.delete_object(Bucket=self.bucket, Key=key)
            raise
        return StoredObject(key=key, size_bytes=head["ContentLength"], kms_key_id=kms_key_id)

    def _head(self, key: str) -> Any:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if _client_error_code(error) in ("404", "NoSuchKey", "NotFound"):
                raise ObjectNotFoundError(f"no object {key}") from None
            raise

    def rekey(self, tenant: TenantKeyRef, document_id: uuid.UUID) -> bool:
        """Re-encrypt in place under the current KMS key (`CopyObject` onto itself; S3 decrypts and encrypts)."""
        kms_key_id = self._kms_key_id(tenant)
        key = object_key(tenant.tenant_id, document_id)
        head = self._head(key)
        self._check_encryption(self._readable_keys(tenant), key, head)
        if kms_key_matches(kms_key_id, str(head.get("SSEKMSKeyId", ""))):
            return False
        sse = self._sse_kms(tenant, document_id, kms_key_id)
        self.client.copy_object(
            Bucket=self.bucket,
            Key=key,
            CopySource={"Bucket": self.bucket, "Key": key},
            MetadataDirective="COPY",
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId=sse["SSEKMSKeyId"],
            SSEKMSEncryptionContext=sse["SSEKMSEncryptionContext"],
        )
        self._check_encryption([kms_key_id], key, self._head(key))
        return True

    def _readable_keys(self, tenant: TenantKeyRef) -> list[str]:
        return [self._kms_key_id(tenant), *([tenant.previous_kms_key_id] if tenant.previous_kms_key_id else [])]

    def iter_plaintext(
        self, tenant: TenantKeyRef, document_id: uuid.UUID, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> Iterator[bytes]:
        check_chunk_size(chunk_size)
        readable = self._readable_keys(tenant)
        key = object_key(tenant.tenant_id, document_id)
        response = self._get(key)
        body = response["Body"]
        try:
            self._check_encryption(readable, key, response)
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

    def _upload(self, key: str, chunks: Iterator[bytes]) -> None:
        """Stream `chunks` (ciphertext made while it is sent) to `key`, multipart above the threshold."""
        config = TransferConfig(
            multipart_threshold=self.multipart_threshold, multipart_chunksize=S3_MULTIPART_CHUNK_SIZE
        )
        config.max_in_memory_upload_chunks = S3_ENVELOPE_PARTS_IN_MEMORY  # an s3transfer setting, no boto3 keyword
        with io.BufferedReader(_ChunkStream(chunks), buffer_size=SEGMENT_SIZE) as ciphertext:
            self.client.upload_fileobj(ciphertext, self.bucket, key, Config=config)

    def put(self, tenant: TenantKeyRef, document_id: uuid.UUID, source: BinaryIO) -> StoredObject:
        key = object_key(tenant.tenant_id, document_id)
        sealer = EnvelopeSealer(self.keys, tenant, document_id)
        source.seek(0)
        self._upload(key, sealer.chunks(source))
        return StoredObject(key=key, size_bytes=sealer.plaintext_size, kms_key_id=tenant.kms_key_id)

    def iter_plaintext(
        self, tenant: TenantKeyRef, document_id: uuid.UUID, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> Iterator[bytes]:
        check_chunk_size(chunk_size)
        response = self._get(object_key(tenant.tenant_id, document_id))
        return open_envelope(response["Body"], self.keys, tenant, document_id, chunk_size)

    def rekey(self, tenant: TenantKeyRef, document_id: uuid.UUID) -> bool:
        """Rewrite the object with its data key re-wrapped (a new PUT of the same segments; S3 replaces atomically)."""
        key = object_key(tenant.tenant_id, document_id)
        body = self._get(key)["Body"]
        try:
            header = rewrapped_header(body, self.keys, tenant, document_id)
            if header is None:
                return False
            self._upload(key, itertools.chain([header], copy_rest(body)))
        finally:
            body.close()
        return True

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
