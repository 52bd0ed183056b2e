"""The HTTP app in S3 mode (moto), objects always under each tenant's own key (invariant 6).

Two dedicated instances, each started through its real lifespan inside `moto.mock_aws()` and served over ASGI,
against the session's embedded PostgreSQL as `phivault_app`:

* `s3_mode`: `storage="s3"`, `key_provider="aws-kms"` on AWS, so SSE-KMS under per-tenant KMS keys;
* `envelope_mode`: `storage="s3"`, `key_provider="local"`, so PHIVault's own envelope encryption (as on Railway's
  buckets, MinIO or R2) and a bucket that only ever sees ciphertext.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError
from mypy_boto3_kms import KMSClient
from mypy_boto3_s3 import S3Client
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from api.state import AppState
from core.keys import DecryptionError, KmsKeyProvider, LocalKeyProvider, TenantKeyRef, encryption_context, kms_alias
from core.runtime import Services
from core.settings import Settings
from core.storage import MIB, S3EnvelopeStore, S3Store, object_key
from ingest.processing import process_document
from tests.harness import AWS_REGION, HashEmbedder, SentTasks, Tokens, audit_actions, process_database_kept, upload

REGION = AWS_REGION
BUCKET = "phivault-test"
CLIENT_ADDRESS = ("127.0.0.1", 50003)
BIG_UPLOAD_BYTES = 9 * MIB + 12_345  # above the 8 MiB multipart threshold: two 8 MiB-chunked parts
SENTENCE = "The patient was seen in clinic today and the vital signs were stable throughout the visit.\n"


@dataclass
class S3Mode:
    """A running S3-mode app: its HTTP client, its state, raw moto clients, and what it enqueued."""

    http: httpx.AsyncClient
    state: AppState
    s3: S3Client
    kms: KMSClient
    enqueued: list[tuple[uuid.UUID, uuid.UUID]]


@dataclass(frozen=True)
class KeyIds:
    """Both spellings of one KMS key: the bare key id and its ARN."""

    key_id: str
    arn: str

    @property
    def names(self) -> set[str]:
        return {self.key_id, self.arn}


@asynccontextmanager
async def running_app(settings: Settings, services: Services, **update: Any) -> AsyncIterator[S3Mode]:
    """The app with `storage="s3"`, the moto bucket and `update` applied to the session's settings."""
    s3: S3Client = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    kms: KMSClient = boto3.client("kms", region_name=REGION)
    s3_settings = settings.model_copy(
        update={"storage": "s3", "s3_bucket": BUCKET, "s3_endpoint_url": None, "aws_region": REGION, **update}
    )
    app = create_app(s3_settings, services)
    # The lifespan installs its database as the process database and uninstalls it on exit; put back whatever the
    # session had installed (the `db` fixture, the shared client's app) so later tests are not affected.
    with process_database_kept():
        async with app.router.lifespan_context(app):
            state: AppState = app.state.phivault
            # Record instead of sending to the shared Redis: the session's local-storage worker must not pick up
            # documents whose objects live in this test's (vanished) moto bucket.
            tasks = SentTasks()
            state.enqueue = tasks
            transport = httpx.ASGITransport(app=app, client=CLIENT_ADDRESS)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
                yield S3Mode(http=http, state=state, s3=s3, kms=kms, enqueued=tasks.sent)


@pytest.fixture
async def s3_mode(aws: None, settings: Settings, services: Services) -> AsyncIterator[S3Mode]:
    async with running_app(settings, services, key_provider="aws-kms", s3_encryption=None) as mode:
        assert isinstance(mode.state.keys, KmsKeyProvider)
        assert isinstance(mode.state.store, S3Store)
        assert mode.state.store.bucket == BUCKET
        yield mode


@pytest.fixture
async def envelope_mode(aws: None, settings: Settings, services: Services) -> AsyncIterator[S3Mode]:
    """Local key provider and S3: the envelope store is chosen by default (no PHIVAULT_S3_ENCRYPTION)."""
    async with running_app(settings, services, key_provider="local", s3_encryption=None) as mode:
        assert mode.state.settings.effective_s3_encryption == "envelope"
        assert isinstance(mode.state.keys, LocalKeyProvider)
        assert isinstance(mode.state.store, S3EnvelopeStore)
        assert mode.state.store.bucket == BUCKET
        yield mode


async def create_tenant(mode: S3Mode, tokens: Tokens) -> dict[str, Any]:
    response = await mode.http.post(
        "/v1/tenants", json={"name": f"S3 Clinic {uuid.uuid4().hex[:6]}"}, headers=tokens.platform()
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def key_ids(kms: KMSClient, key: str) -> KeyIds:
    metadata = kms.describe_key(KeyId=key)["KeyMetadata"]
    return KeyIds(key_id=metadata["KeyId"], arn=metadata["Arn"])


def clinical_text(tenant_id: uuid.UUID, size: int) -> bytes:
    """`size` bytes of plain text (no commas, so it is not taken for CSV) naming the tenant."""
    line = f"[{tenant_id}] {SENTENCE}".encode()
    return (line * (size // len(line) + 1))[:size]


async def upload_big_and_small(
    mode: S3Mode, tokens: Tokens, tenants: list[dict[str, Any]]
) -> list[tuple[uuid.UUID, uuid.UUID, bytes]]:
    """Tenant A uploads a multipart-sized note, tenant B a small one (one PutObject): (tenant, document, bytes)."""
    uploaded: list[tuple[uuid.UUID, uuid.UUID, bytes]] = []
    for tenant, size in zip(tenants, [BIG_UPLOAD_BYTES, 4096], strict=True):
        tenant_id = uuid.UUID(tenant["id"])
        content = clinical_text(tenant_id, size)
        response = await upload(mode.http, tokens.headers("member", tenant_id), content, filename="visit.txt")
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["status"] == "queued"
        assert body["size_bytes"] == size
        uploaded.append((tenant_id, uuid.UUID(body["id"]), content))
    assert mode.enqueued == [(tenant_id, document_id) for tenant_id, document_id, _ in uploaded]
    return uploaded


def key_ref(tenant: dict[str, Any]) -> TenantKeyRef:
    return TenantKeyRef(tenant_id=uuid.UUID(tenant["id"]), kms_key_id=tenant["kms_key_id"], wrapped_key=None)


async def test_creating_tenants_provisions_one_kms_key_each(
    s3_mode: S3Mode, tokens: Tokens, owner_engine: AsyncEngine
) -> None:
    tenant_a = await create_tenant(s3_mode, tokens)
    tenant_b = await create_tenant(s3_mode, tokens)
    assert tenant_a["kms_key_id"] is not None
    assert tenant_b["kms_key_id"] is not None
    assert tenant_a["kms_key_id"] != tenant_b["kms_key_id"]

    keys_a = key_ids(s3_mode.kms, tenant_a["kms_key_id"])
    keys_b = key_ids(s3_mode.kms, tenant_b["kms_key_id"])
    assert keys_a.key_id != keys_b.key_id
    assert tenant_a["kms_key_id"] == keys_a.arn  # the row stores the key ARN, never an alias
    assert tenant_b["kms_key_id"] == keys_b.arn

    aliases = {alias["AliasName"]: alias.get("TargetKeyId") for alias in s3_mode.kms.list_aliases()["Aliases"]}
    for tenant, keys in ((tenant_a, keys_a), (tenant_b, keys_b)):
        alias = f"alias/phivault/tenant-{tenant['id']}"
        assert alias == kms_alias(uuid.UUID(tenant["id"]))
        assert aliases.get(alias) == keys.key_id
        assert s3_mode.kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"] == keys.key_id
        metadata = s3_mode.kms.describe_key(KeyId=keys.key_id)["KeyMetadata"]
        assert metadata["KeyState"] == "Enabled"
        assert metadata["KeyUsage"] == "ENCRYPT_DECRYPT"
        tags = s3_mode.kms.list_resource_tags(KeyId=keys.key_id)["Tags"]
        assert {"TagKey": "phivault:tenant_id", "TagValue": tenant["id"]} in tags

        # What the API reported is what the tenants row holds (read as the owner, outside RLS).
        async with owner_engine.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT kms_key_id, wrapped_key FROM tenants WHERE id = :id"), {"id": tenant["id"]}
                )
            ).one()
        assert row.kms_key_id == tenant["kms_key_id"]
        assert row.wrapped_key is None


async def test_uploads_are_sse_kms_under_each_tenants_own_key(
    s3_mode: S3Mode, tokens: Tokens, owner_engine: AsyncEngine
) -> None:
    tenants = [await create_tenant(s3_mode, tokens), await create_tenant(s3_mode, tokens)]
    keys = [key_ids(s3_mode.kms, tenant["kms_key_id"]) for tenant in tenants]
    uploaded = await upload_big_and_small(s3_mode, tokens, tenants)

    for index, (tenant_id, document_id, content) in enumerate(uploaded):
        own, other = keys[index], keys[1 - index]
        key = object_key(tenant_id, document_id)
        assert key == f"tenants/{tenant_id}/documents/{document_id}"
        head = s3_mode.s3.head_object(Bucket=BUCKET, Key=key)
        assert head["ContentLength"] == len(content)
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"] in own.names
        assert head["SSEKMSKeyId"] not in other.names
        assert other.key_id not in head["SSEKMSKeyId"]
        multipart = len(content) > 8 * MIB
        assert head["ETag"].endswith('-2"') is multipart, head["ETag"]

        # The tenant's prefix holds exactly its own document.
        listed = s3_mode.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"tenants/{tenant_id}/")
        assert [item["Key"] for item in listed.get("Contents", [])] == [key]

        async with owner_engine.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT tenant_id, storage_key, kms_key_id FROM documents WHERE id = :id"),
                    {"id": document_id},
                )
            ).one()
        assert row.tenant_id == tenant_id
        assert row.storage_key == key
        assert row.kms_key_id == tenants[index]["kms_key_id"]
        assert row.kms_key_id in own.names

        download = await s3_mode.http.get(
            f"/v1/documents/{document_id}/content", headers=tokens.headers("member", tenant_id)
        )
        assert download.status_code == 200, download.text
        assert int(download.headers["content-length"]) == len(content)
        assert download.content == content


async def test_tenant_b_key_cannot_unwrap_tenant_a_data_keys(s3_mode: S3Mode, tokens: Tokens) -> None:
    tenant_a = key_ref(await create_tenant(s3_mode, tokens))
    tenant_b = key_ref(await create_tenant(s3_mode, tokens))
    assert tenant_a.kms_key_id is not None
    assert tenant_b.kms_key_id is not None
    provider = KmsKeyProvider(s3_mode.kms)
    document_x = uuid.uuid4()
    data_key = provider.generate_data_key(tenant_a, document_x)
    assert provider.unwrap_data_key(tenant_a, document_x, data_key.wrapped) == data_key.plaintext

    # Moved to tenant B (B's key, B's context): KMS refuses the ciphertext and core.keys says DecryptionError.
    with pytest.raises(
        DecryptionError, match=r"KMS refused the ciphertext \((InvalidCiphertextException|IncorrectKeyException)\)"
    ):
        provider.unwrap_data_key(tenant_b, document_x, data_key.wrapped)

    # Tenant A's own key but another document: the encryption context differs, DecryptionError.
    with pytest.raises(DecryptionError, match=r"KMS refused the ciphertext \(InvalidCiphertextException\)"):
        provider.unwrap_data_key(tenant_a, uuid.uuid4(), data_key.wrapped)

    # A ref that claims tenant A (A's context) but names B's key. AWS answers IncorrectKeyException, which core.keys
    # maps to DecryptionError; moto answers AccessDeniedException, which core.keys passes through unchanged like any
    # IAM denial. Either way no key comes back.
    relabelled = TenantKeyRef(tenant_id=tenant_a.tenant_id, kms_key_id=tenant_b.kms_key_id, wrapped_key=None)
    with pytest.raises(ClientError) as denied:
        provider.unwrap_data_key(relabelled, document_x, data_key.wrapped)
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"

    # The raw KMS call with B's key and A's exact context is refused too.
    with pytest.raises(ClientError):
        s3_mode.kms.decrypt(
            CiphertextBlob=data_key.wrapped,
            KeyId=tenant_b.kms_key_id,
            EncryptionContext=encryption_context(tenant_a.tenant_id, document_x),
        )


async def test_another_tenants_token_cannot_download_the_document(
    s3_mode: S3Mode, tokens: Tokens, owner_engine: AsyncEngine
) -> None:
    tenant_a = uuid.UUID((await create_tenant(s3_mode, tokens))["id"])
    tenant_b = uuid.UUID((await create_tenant(s3_mode, tokens))["id"])
    content = clinical_text(tenant_a, 2048)
    response = await upload(s3_mode.http, tokens.headers("member", tenant_a), content)
    assert response.status_code == 202, response.text
    document_id = response.json()["id"]
    # B has a document of its own, so B's requests reach a tenant with data and a working store.
    assert (await upload(s3_mode.http, tokens.headers("member", tenant_b), b"tenant b's own note\n")).status_code == 202

    refused = await s3_mode.http.get(f"/v1/documents/{document_id}/content", headers=tokens.headers("member", tenant_b))
    assert refused.status_code == 404, refused.text
    assert refused.json()["error"]["code"] == "not_found"
    assert content not in refused.content
    assert (
        await s3_mode.http.get(f"/v1/documents/{document_id}", headers=tokens.headers("admin", tenant_b))
    ).status_code == 404
    missing = await s3_mode.http.get(
        f"/v1/documents/{uuid.uuid4()}/content", headers=tokens.headers("member", tenant_b)
    )
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == refused.json()["error"]["code"]
    assert missing.json()["error"]["message"] == refused.json()["error"]["message"]

    denied = [action for action in await audit_actions(owner_engine, tenant_b) if action[1] == "denied"]
    assert ("access.denied", "denied", document_id) in denied
    assert not [action for action in await audit_actions(owner_engine, tenant_a) if action[0] == "document.downloaded"]

    # The owner still gets the exact bytes: the 404 is the tenant boundary, not a broken store.
    allowed = await s3_mode.http.get(f"/v1/documents/{document_id}/content", headers=tokens.headers("member", tenant_a))
    assert allowed.status_code == 200, allowed.text
    assert allowed.content == content


async def test_envelope_mode_upload_process_download_with_only_ciphertext_in_the_bucket(
    envelope_mode: S3Mode, tokens: Tokens, owner_engine: AsyncEngine
) -> None:
    mode = envelope_mode
    sent: list[dict[str, Any]] = []
    store = mode.state.store
    assert isinstance(store, S3EnvelopeStore)
    for operation in ("PutObject", "CreateMultipartUpload"):
        store.client.meta.events.register(
            f"before-parameter-build.s3.{operation}", lambda params, **_: sent.append(dict(params))
        )
    tenants = [await create_tenant(mode, tokens), await create_tenant(mode, tokens)]
    assert [tenant["kms_key_id"] for tenant in tenants] == [None, None]  # tenant keys wrapped by the master key
    uploaded = await upload_big_and_small(mode, tokens, tenants)
    assert len(sent) == 2
    assert not {"ServerSideEncryption", "SSEKMSKeyId", "SSEKMSEncryptionContext"} & {k for p in sent for k in p}

    for tenant_id, document_id, content in uploaded:
        key = object_key(tenant_id, document_id)
        head = mode.s3.head_object(Bucket=BUCKET, Key=key)
        assert head.get("ServerSideEncryption") != "aws:kms"
        assert "SSEKMSKeyId" not in head
        assert head["ETag"].endswith('-2"') is (len(content) > 8 * MIB), head["ETag"]
        blob = mode.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert blob.startswith(b"PHV1")
        assert len(blob) > len(content)
        assert str(tenant_id).encode() not in blob  # every line of the plaintext names the tenant
        assert SENTENCE.encode()[:40] not in blob

        async with owner_engine.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT storage_key, kms_key_id FROM documents WHERE id = :id"), {"id": document_id}
                )
            ).one()
        assert row.storage_key == key
        assert row.kms_key_id is None

        download = await mode.http.get(
            f"/v1/documents/{document_id}/content", headers=tokens.headers("member", tenant_id)
        )
        assert download.status_code == 200, download.text
        assert download.content == content

    # The worker's pipeline, in process, reads the same objects: B's small note becomes ready.
    tenant_b, document_b, _ = uploaded[1]
    result = await process_document(
        mode.state.database, store, HashEmbedder(), mode.state.settings, tenant_b, document_b
    )
    assert result == "ready"
    status = await mode.http.get(f"/v1/documents/{document_b}", headers=tokens.headers("member", tenant_b))
    assert status.json()["status"] == "ready", status.text
    assert status.json()["chunk_count"] >= 1

    # A's ciphertext planted at B's second document's key: B's tenant key cannot open it, the document fails.
    tenant_a, document_a, _ = uploaded[0]
    note = b"tenant b's second note\n"
    response = await upload(mode.http, tokens.headers("member", tenant_b), note)
    assert response.status_code == 202, response.text
    planted = uuid.UUID(response.json()["id"])
    mode.s3.copy_object(
        Bucket=BUCKET,
        Key=object_key(tenant_b, planted),
        CopySource={"Bucket": BUCKET, "Key": object_key(tenant_a, document_a)},
    )
    result = await process_document(mode.state.database, store, HashEmbedder(), mode.state.settings, tenant_b, planted)
    assert result == "failed"
    failed = await mode.http.get(f"/v1/documents/{planted}", headers=tokens.headers("member", tenant_b))
    assert failed.json()["error_code"] == "integrity_error", failed.text
