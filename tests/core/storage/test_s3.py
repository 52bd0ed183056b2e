"""The S3 stores (moto): SSE-KMS under each tenant's own key, the envelope format in any bucket, addressing style."""

from __future__ import annotations

import base64
import io
import json
import os
import uuid
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from mypy_boto3_kms import KMSClient
from mypy_boto3_s3 import S3Client

from core.keys import KEY_BYTES, DecryptionError, KeyProvider, KmsKeyProvider, LocalKeyProvider, TenantKeyRef
from core.storage import (
    MIB,
    SEGMENT_SIZE,
    LocalEncryptedStore,
    ObjectNotFoundError,
    S3EnvelopeStore,
    S3Store,
    StorageEncryptionError,
    object_key,
    s3_client,
)
from tests.core.storage.conftest import (
    BUCKET,
    bad_magic,
    cut_last_segment,
    drop_last_segment,
    flip_a_bit,
    put_bytes,
    random_file,
    segment_spans,
    settings_for,
    swap_segments,
)

# --- S3 with SSE-KMS (moto) ----------------------------------------------------------------------------------------


@pytest.fixture
def kms_keys(kms: KMSClient) -> KmsKeyProvider:
    return KmsKeyProvider(kms)


@pytest.fixture
def s3_store(s3: S3Client, kms_keys: KmsKeyProvider) -> S3Store:
    return S3Store(s3, BUCKET, kms_keys)


def test_s3_objects_are_encrypted_with_each_tenants_own_key(
    tmp_path: Path, s3: S3Client, kms: KMSClient, kms_keys: KmsKeyProvider, s3_store: S3Store
) -> None:
    tenant_a = kms_keys.provision_tenant_key(uuid.uuid4())
    tenant_b = kms_keys.provision_tenant_key(uuid.uuid4())
    aliases = {alias["AliasName"] for alias in kms.list_aliases()["Aliases"]}
    assert {f"alias/phivault/tenant-{tenant_a.tenant_id}", f"alias/phivault/tenant-{tenant_b.tenant_id}"} <= aliases

    sent: dict[str, list[dict[str, Any]]] = {"PutObject": [], "CreateMultipartUpload": []}
    for operation, requests in sent.items():
        s3.meta.events.register(
            f"before-parameter-build.s3.{operation}",
            lambda params, requests=requests, **_: requests.append(dict(params)),
        )

    uploads: dict[uuid.UUID, tuple[TenantKeyRef, bytes, bool]] = {}
    for tenant, size, multipart in ((tenant_a, MIB + 3, False), (tenant_b, 9 * MIB, True)):
        document_id = uuid.uuid4()
        path, data = random_file(tmp_path, size)
        source: BinaryIO
        with path.open("rb") as source:
            stored = s3_store.put(tenant, document_id, source)
        assert stored.size_bytes == size
        assert stored.kms_key_id == tenant.kms_key_id
        uploads[document_id] = (tenant, data, multipart)

    for document_id, (tenant, data, multipart) in uploads.items():
        assert tenant.kms_key_id is not None
        own_key_id = kms.describe_key(KeyId=tenant.kms_key_id)["KeyMetadata"]["KeyId"]
        other = tenant_b if tenant is tenant_a else tenant_a
        assert other.kms_key_id is not None
        other_key_id = kms.describe_key(KeyId=other.kms_key_id)["KeyMetadata"]["KeyId"]

        head = s3.head_object(Bucket=BUCKET, Key=object_key(tenant.tenant_id, document_id))
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"].endswith(own_key_id)
        assert not head["SSEKMSKeyId"].endswith(other_key_id)
        assert head["ETag"].endswith('-2"') is multipart  # 9 MiB went up in two 8 MiB-chunked parts
        if multipart:
            # moto keeps the bucket-key flag of PutObject but drops it from multipart uploads: check the request.
            (request,) = sent["CreateMultipartUpload"]
            assert request["Key"] == object_key(tenant.tenant_id, document_id)
            assert request["BucketKeyEnabled"] is True
            assert request["SSEKMSKeyId"] == tenant.kms_key_id
        else:
            assert head["BucketKeyEnabled"] is True

        assert s3_store.exists(tenant.tenant_id, document_id)
        assert s3_store.read(tenant, document_id) == data
        chunks = list(s3_store.iter_plaintext(tenant, document_id, chunk_size=MIB))
        assert all(len(chunk) <= MIB for chunk in chunks)
        assert b"".join(chunks) == data
        # Reading under the other tenant's key ref is refused.
        wrong_tenant = TenantKeyRef(tenant.tenant_id, other.kms_key_id, None)
        with pytest.raises(StorageEncryptionError):
            s3_store.read(wrong_tenant, document_id)


def test_s3_put_sends_the_encryption_context(s3: S3Client, kms_keys: KmsKeyProvider, s3_store: S3Store) -> None:
    tenant = kms_keys.provision_tenant_key(uuid.uuid4())
    document_id = uuid.uuid4()
    sent: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        sent.append(dict(params))

    s3.meta.events.register("before-parameter-build.s3.PutObject", record)
    put_bytes(s3_store, tenant, document_id, b"hello")
    (params,) = sent
    assert params["ServerSideEncryption"] == "aws:kms"
    assert params["SSEKMSKeyId"] == tenant.kms_key_id
    assert params["BucketKeyEnabled"] is True
    context = json.loads(base64.b64decode(params["SSEKMSEncryptionContext"]))
    assert context == {"tenant_id": str(tenant.tenant_id), "document_id": str(document_id)}


def test_s3_refuses_objects_not_under_the_tenant_key(s3: S3Client, kms_keys: KmsKeyProvider, s3_store: S3Store) -> None:
    tenant_a = kms_keys.provision_tenant_key(uuid.uuid4())
    tenant_b = kms_keys.provision_tenant_key(uuid.uuid4())
    assert tenant_b.kms_key_id is not None

    # An object at A's path but under B's key (or unencrypted) is not served as A's document.
    planted = uuid.uuid4()
    key = object_key(tenant_a.tenant_id, planted)
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=tenant_b.kms_key_id)
    with pytest.raises(StorageEncryptionError):
        s3_store.read(tenant_a, planted)
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    with pytest.raises(DecryptionError):
        s3_store.read(tenant_a, planted)

    # An endpoint that drops the SSE headers: put fails and removes what it wrote.
    def strip_sse(params: dict[str, Any], **_: Any) -> None:
        for name in ("ServerSideEncryption", "SSEKMSKeyId", "SSEKMSEncryptionContext", "BucketKeyEnabled"):
            params.pop(name, None)

    s3.meta.events.register("before-parameter-build.s3.PutObject", strip_sse, unique_id="test-strip-sse")
    document_id = uuid.uuid4()
    with pytest.raises(StorageEncryptionError):
        put_bytes(s3_store, tenant_a, document_id, b"phi")
    assert not s3_store.exists(tenant_a.tenant_id, document_id)


def test_s3_missing_delete_and_key_requirements(kms_keys: KmsKeyProvider, s3_store: S3Store) -> None:
    tenant = kms_keys.provision_tenant_key(uuid.uuid4())
    document_id = uuid.uuid4()
    assert not s3_store.exists(tenant.tenant_id, document_id)
    with pytest.raises(ObjectNotFoundError):
        s3_store.read(tenant, document_id)
    s3_store.delete(tenant.tenant_id, document_id)  # missing is fine

    put_bytes(s3_store, tenant, document_id, b"content")
    s3_store.delete(tenant.tenant_id, document_id)
    s3_store.delete(tenant.tenant_id, document_id)
    assert not s3_store.exists(tenant.tenant_id, document_id)

    no_kms = TenantKeyRef(tenant.tenant_id, None, b"w" * 60)
    with pytest.raises(ValueError, match="KMS key"):
        put_bytes(s3_store, no_kms, document_id, b"content")


# --- S3 with envelope encryption (moto) ----------------------------------------------------------------------------


SSE_PARAMS = ("ServerSideEncryption", "SSEKMSKeyId", "SSEKMSEncryptionContext", "BucketKeyEnabled")


@pytest.fixture(params=["local", "aws-kms"])
def any_keys(request: pytest.FixtureRequest, kms: KMSClient) -> KeyProvider:
    """Each key provider in turn: envelope mode works with both."""
    if request.param == "local":
        return LocalKeyProvider(os.urandom(KEY_BYTES))
    return KmsKeyProvider(kms)


@pytest.fixture
def envelope_store(s3: S3Client, any_keys: KeyProvider) -> S3EnvelopeStore:
    return S3EnvelopeStore(s3, BUCKET, any_keys)


def stored_bytes(s3: S3Client, tenant_id: uuid.UUID, document_id: uuid.UUID) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=object_key(tenant_id, document_id))["Body"].read()


@pytest.mark.parametrize("size", [0, 5000, 9 * MIB + 123])
def test_s3_envelope_round_trip_stores_only_ciphertext(
    tmp_path: Path, s3: S3Client, any_keys: KeyProvider, envelope_store: S3EnvelopeStore, size: int
) -> None:
    sent: dict[str, list[dict[str, Any]]] = {"PutObject": [], "CreateMultipartUpload": [], "UploadPart": []}
    for operation, requests in sent.items():
        s3.meta.events.register(
            f"before-parameter-build.s3.{operation}",
            lambda params, requests=requests, **_: requests.append(dict(params)),
        )
    tenant = any_keys.provision_tenant_key(uuid.uuid4())
    document_id = uuid.uuid4()
    path, data = random_file(tmp_path, size)
    with path.open("rb") as source:
        source.read(10)  # put stores the whole file whatever the position
        stored = envelope_store.put(tenant, document_id, source)

    assert stored.key == object_key(tenant.tenant_id, document_id)
    assert stored.size_bytes == size
    assert stored.kms_key_id == tenant.kms_key_id
    assert envelope_store.exists(tenant.tenant_id, document_id)
    assert envelope_store.read(tenant, document_id) == data
    chunks = list(envelope_store.iter_plaintext(tenant, document_id, chunk_size=256 * 1024))
    assert all(0 < len(chunk) <= 256 * 1024 for chunk in chunks)
    assert b"".join(chunks) == data

    # The bucket holds the envelope format: ciphertext segments, none of the plaintext, no SSE-KMS.
    blob = stored_bytes(s3, tenant.tenant_id, document_id)
    assert len(segment_spans(blob)) == max(1, -(-size // SEGMENT_SIZE))
    for start in range(0, max(size - 64, 0), MIB // 2):
        assert data[start : start + 64] not in blob
    head = s3.head_object(Bucket=BUCKET, Key=stored.key)
    assert head.get("ServerSideEncryption") != "aws:kms"
    assert "SSEKMSKeyId" not in head
    multipart = size > 8 * MIB
    assert head["ETag"].endswith('-2"') is multipart, head["ETag"]
    writes = sent["CreateMultipartUpload"] if multipart else sent["PutObject"]
    assert len(writes) == 1
    assert len(sent["UploadPart"]) == (2 if multipart else 0)
    for params in writes:
        assert not set(SSE_PARAMS) & set(params)

    # It is the very format of the local store: the same bytes decrypt there with the same keys.
    local = LocalEncryptedStore(tmp_path / "objects", any_keys)
    target = local.root / stored.key
    target.parent.mkdir(parents=True)
    target.write_bytes(blob)
    assert local.read(tenant, document_id) == data


def test_s3_envelope_copy_under_another_tenant_or_document_fails(
    s3: S3Client, any_keys: KeyProvider, envelope_store: S3EnvelopeStore
) -> None:
    tenant_a = any_keys.provision_tenant_key(uuid.uuid4())
    tenant_b = any_keys.provision_tenant_key(uuid.uuid4())
    document_id = uuid.uuid4()
    data = os.urandom(2 * MIB + 5)
    stored = envelope_store.put(tenant_a, document_id, io.BytesIO(data))

    other_document = uuid.uuid4()
    for tenant, target_document in ((tenant_b, document_id), (tenant_a, other_document)):
        target = object_key(tenant.tenant_id, target_document)
        s3.copy_object(Bucket=BUCKET, Key=target, CopySource={"Bucket": BUCKET, "Key": stored.key})
        with pytest.raises(DecryptionError, match=f"data key of document {target_document}"):
            envelope_store.read(tenant, target_document)
        with pytest.raises(DecryptionError):
            envelope_store.iter_plaintext(tenant, target_document)  # fails at the call, before any chunk

    # A's object at A's path does not open with another tenant's key either.
    if isinstance(any_keys, LocalKeyProvider):
        foreign = TenantKeyRef(tenant_a.tenant_id, None, tenant_b.wrapped_key)
        with pytest.raises(DecryptionError, match=f"tenant {tenant_a.tenant_id} key"):
            envelope_store.read(foreign, document_id)
    assert envelope_store.read(tenant_a, document_id) == data


def test_s3_envelope_tampering_missing_and_delete(s3: S3Client, local_keys: LocalKeyProvider) -> None:
    store = S3EnvelopeStore(s3, BUCKET, local_keys)
    tenant = local_keys.provision_tenant_key(uuid.uuid4())
    document_id = uuid.uuid4()
    data = os.urandom(3 * MIB + 1000)
    put_bytes(store, tenant, document_id, data)
    key = object_key(tenant.tenant_id, document_id)
    blob = stored_bytes(s3, tenant.tenant_id, document_id)

    s3.put_object(Bucket=BUCKET, Key=key, Body=swap_segments(blob, segment_spans(blob)))
    received: list[bytes] = []
    with pytest.raises(DecryptionError, match="segment 1"):
        for chunk in store.iter_plaintext(tenant, document_id):
            received.append(chunk)
    assert b"".join(received) == data[:SEGMENT_SIZE]
    for edit in (drop_last_segment, cut_last_segment, flip_a_bit, bad_magic):
        s3.put_object(Bucket=BUCKET, Key=key, Body=edit(blob, segment_spans(blob)))
        with pytest.raises(DecryptionError):
            store.read(tenant, document_id)

    store.delete(tenant.tenant_id, document_id)
    store.delete(tenant.tenant_id, document_id)
    assert not store.exists(tenant.tenant_id, document_id)
    with pytest.raises(ObjectNotFoundError):
        store.iter_plaintext(tenant, document_id)
    with pytest.raises(ValueError, match="chunk_size"):
        store.iter_plaintext(tenant, document_id, chunk_size=0)


@pytest.mark.parametrize(
    ("endpoint", "style", "expected"),
    [
        ("http://minio.internal:9000", None, "path"),
        ("https://storage.railway.app", "virtual", "virtual"),
        (None, None, None),
        (None, "path", "path"),
    ],
)
def test_s3_addressing_style(tmp_path: Path, endpoint: str | None, style: str | None, expected: str | None) -> None:
    client = s3_client(settings_for(tmp_path, s3_endpoint_url=endpoint, s3_addressing_style=style))
    s3_options: dict[str, Any] = getattr(client.meta.config, "s3", None) or {}
    assert s3_options.get("addressing_style") == expected
