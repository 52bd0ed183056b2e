"""Offboarding crypto-shreds a tenant: after the purge, a copy of an object taken before it cannot be decrypted.

Local provider: through the real HTTP app (retention 0), a real worker, and the real `phivault tenant purge-due` and
`phivault tenant receipt` commands. AWS KMS: the S3 (SSE-KMS) and envelope-over-KMS apps of `tests/api/test_s3_mode`
under moto, processing in process.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from audit.repository import verify_chain
from audit.schemas import ChainReport
from core.db import Database
from core.keys import DecryptionError, TenantKeyMissing, key_fingerprint, key_provider_from_settings
from core.runtime import Services
from core.settings import Settings
from core.storage import ObjectNotFoundError, object_key, object_store_from_settings, open_envelope
from ingest.processing import process_document
from models.tenant import Tenant
from tenants.offboarding import purge_due_tenants, purge_receipt
from tenants.service import tenant_key_ref
from tests.api.test_s3_mode import BUCKET, running_app
from tests.harness import (
    HashEmbedder,
    Tokens,
    Worker,
    app_client,
    audit_actions,
    document_in,
    phivault,
    upload,
    worker_env,
)

NOTES = [
    b"Discharge summary.\n\nTreated for community acquired pneumonia; recovered on oral antibiotics.\n",
    b"Clinic letter.\n\nType 2 diabetes, HbA1c improving on metformin. Review in three months.\n",
]


@pytest.fixture
async def offboarding_client(settings: Settings, services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """The app with `PHIVAULT_TENANT_RETENTION_DAYS=0`: an offboarded tenant is due at the next purge run."""
    async with app_client(settings.model_copy(update={"tenant_retention_days": 0}), services) as http:
        yield http


async def tenant_row(owner: AsyncEngine, tenant_id: uuid.UUID) -> Any:
    async with owner.connect() as conn:
        return (await conn.execute(text("SELECT * FROM tenants WHERE id = :id"), {"id": tenant_id})).one()


async def count(owner: AsyncEngine, table: str, tenant_id: uuid.UUID) -> int:
    async with owner.connect() as conn:
        return int(await conn.scalar(text(f"SELECT count(*) FROM {table} WHERE tenant_id = :t"), {"t": tenant_id}))


async def chain_report(db: Database, tenant_id: uuid.UUID) -> ChainReport:
    async with db.tenant_session(tenant_id) as session:
        report = await verify_chain(session, tenant_id, timeout_seconds=60)
    assert isinstance(report, ChainReport)
    return report


async def new_tenant(client: httpx.AsyncClient, tokens: Tokens) -> uuid.UUID:
    response = await client.post(
        "/v1/tenants", json={"name": f"Shred {uuid.uuid4().hex[:6]}"}, headers=tokens.platform()
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["purge_after"] is None
    assert body["purged_at"] is None
    return uuid.UUID(body["id"])


async def ready_documents(client: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    ids = []
    for index, note in enumerate(NOTES):
        response = await upload(client, headers, note + uuid.uuid4().hex.encode(), f"note-{index}.txt")
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    documents = [await document_in(client, headers, document_id) for document_id in ids]
    assert [document["status"] for document in documents] == ["ready", "ready"]
    return documents


async def test_offboarding_a_local_tenant_shreds_every_copy(
    offboarding_client: httpx.AsyncClient,
    tokens: Tokens,
    worker: Worker,
    owner_engine: AsyncEngine,
    db: Database,
    settings: Settings,
    services: Services,
) -> None:
    client = offboarding_client
    tenant_id = await new_tenant(client, tokens)
    member = tokens.headers("member", tenant_id)
    documents = await ready_documents(client, member)
    document_id = uuid.UUID(str(documents[0]["id"]))
    chunks = sum(int(str(document["chunk_count"])) for document in documents)

    # What an attacker with a backup would hold: the object's bytes and the tenant's row as it was.
    stored = settings.data_dir / "objects" / object_key(tenant_id, document_id)
    copied_object = stored.read_bytes()
    before = await tenant_row(owner_engine, tenant_id)
    assert before.wrapped_key is not None
    keys = key_provider_from_settings(settings)
    old_ref = tenant_key_ref(Tenant(id=tenant_id, wrapped_key=before.wrapped_key))
    assert NOTES[0] in b"".join(open_envelope(io.BytesIO(copied_object), keys, old_ref, document_id))

    offboarded = await client.delete(f"/v1/tenants/{tenant_id}", headers=tokens.platform())
    assert offboarded.status_code == 202, offboarded.text
    assert offboarded.json()["status"] == "suspended"
    assert offboarded.json()["purge_after"] is not None
    # Its tokens are refused from the next request on.
    refused = await client.get(f"/v1/documents/{document_id}", headers=member)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "tenant_suspended"
    again = await client.delete(f"/v1/tenants/{tenant_id}", headers=tokens.platform())
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "offboarding_scheduled"

    env = worker_env(settings, services)
    purged = phivault(env, "tenant", "purge-due")
    assert purged.returncode == 0, purged.stderr
    assert str(tenant_id) in purged.stdout

    after = await tenant_row(owner_engine, tenant_id)
    assert after.wrapped_key is None
    assert after.previous_wrapped_key is None
    assert after.query_key_wrapped is None
    assert after.purged_at is not None
    assert after.status == "suspended"
    assert not stored.exists()
    assert await count(owner_engine, "documents", tenant_id) == 0
    assert await count(owner_engine, "document_chunks", tenant_id) == 0

    # Nothing the system still holds opens the copy: the row has no key, the provider refuses what it has.
    now_ref = tenant_key_ref(Tenant(id=tenant_id, wrapped_key=after.wrapped_key))
    with pytest.raises(TenantKeyMissing):
        open_envelope(io.BytesIO(copied_object), keys, now_ref, document_id)
    # Nor does any other tenant's key: the data key is bound to this tenant.
    other = await tenant_row(owner_engine, await new_tenant(client, tokens))
    with pytest.raises(DecryptionError):
        open_envelope(
            io.BytesIO(copied_object),
            keys,
            tenant_key_ref(Tenant(id=tenant_id, wrapped_key=other.wrapped_key)),
            document_id,
        )

    # The receipt, from the audit trail, through the CLI and the service.
    printed = phivault(env, "tenant", "receipt", str(tenant_id))
    assert printed.returncode == 0, printed.stderr
    receipt = json.loads(printed.stdout)
    assert receipt["documents"] == 2
    assert receipt["objects"] == 2
    assert receipt["chunks"] == chunks
    assert receipt["destroyed_key_ids"] == [key_fingerprint(before.wrapped_key)]
    assert receipt["key_provider"] == "local"
    assert (await purge_receipt(db, tenant_id)) is not None

    # The audit trail is kept, closed by the receipt, and its chain still verifies.
    actions = [action for action, _, _ in await audit_actions(owner_engine, tenant_id)]
    assert actions[-1] == "tenant.purged"
    assert "tenant.offboarding_scheduled" in actions
    assert "document.uploaded" in actions
    report = await chain_report(db, tenant_id)
    assert report.valid
    assert report.checked == len(actions)

    # A purge run again changes nothing; the tenant cannot be resumed or cancelled any more.
    assert not [
        r
        for r in await purge_due_tenants(db, keys, object_store_from_settings(settings, keys))
        if r.tenant_id == tenant_id
    ]
    resumed = await client.patch(f"/v1/tenants/{tenant_id}", json={"status": "active"}, headers=tokens.platform())
    assert resumed.status_code == 409
    assert resumed.json()["error"]["code"] == "tenant_purged"
    cancel = await client.delete(f"/v1/tenants/{tenant_id}/offboarding", headers=tokens.platform())
    assert cancel.status_code == 409
    assert cancel.json()["error"]["code"] == "tenant_purged"


async def test_cancelled_offboarding_leaves_everything_readable(
    offboarding_client: httpx.AsyncClient, tokens: Tokens, worker: Worker, db: Database, settings: Settings
) -> None:
    client = offboarding_client
    tenant_id = await new_tenant(client, tokens)
    member = tokens.headers("member", tenant_id)
    documents = await ready_documents(client, member)

    assert (await client.delete(f"/v1/tenants/{tenant_id}", headers=tokens.platform())).status_code == 202
    cancelled = await client.delete(f"/v1/tenants/{tenant_id}/offboarding", headers=tokens.platform())
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["purge_after"] is None
    assert cancelled.json()["status"] == "suspended"
    keys = key_provider_from_settings(settings)
    receipts = await purge_due_tenants(db, keys, object_store_from_settings(settings, keys))
    assert tenant_id not in [receipt.tenant_id for receipt in receipts]
    none = await client.delete(f"/v1/tenants/{tenant_id}/offboarding", headers=tokens.platform())
    assert none.status_code == 409
    assert none.json()["error"]["code"] == "offboarding_not_scheduled"

    resumed = await client.patch(f"/v1/tenants/{tenant_id}", json={"status": "active"}, headers=tokens.platform())
    assert resumed.status_code == 200, resumed.text
    for document, note in zip(documents, NOTES, strict=True):
        content = await client.get(f"/v1/documents/{document['id']}/content", headers=member)
        assert content.status_code == 200
        assert content.content.startswith(note)


@pytest.mark.parametrize("encryption", ["sse-kms", "envelope"])
async def test_offboarding_a_kms_tenant_schedules_its_key_for_deletion(
    aws: None, settings: Settings, services: Services, tokens: Tokens, owner_engine: AsyncEngine, encryption: str
) -> None:
    async with running_app(
        settings, services, key_provider="aws-kms", s3_encryption=encryption, tenant_retention_days=0
    ) as mode:
        tenant_id = await new_tenant(mode.http, tokens)
        member = tokens.headers("member", tenant_id)
        response = await upload(mode.http, member, NOTES[0], "note.txt")
        assert response.status_code == 202, response.text
        document_id = uuid.UUID(response.json()["id"])
        store = mode.state.store
        assert (
            await process_document(
                mode.state.database, store, HashEmbedder(), mode.state.settings, tenant_id, document_id
            )
            == "ready"
        )

        before = await tenant_row(owner_engine, tenant_id)
        key_arn = before.kms_key_id
        copied = mode.s3.get_object(Bucket=BUCKET, Key=object_key(tenant_id, document_id))["Body"].read()
        old_ref = tenant_key_ref(Tenant(id=tenant_id, kms_key_id=key_arn))
        assert mode.kms.get_key_rotation_status(KeyId=key_arn)["KeyRotationEnabled"]

        assert (await mode.http.delete(f"/v1/tenants/{tenant_id}", headers=tokens.platform())).status_code == 202
        receipts = await purge_due_tenants(mode.state.database, mode.state.keys, store)
        receipt = next(r for r in receipts if r.tenant_id == tenant_id)
        assert receipt.destroyed_key_ids == [key_arn]
        assert (receipt.documents, receipt.objects, receipt.key_provider) == (1, 1, "aws-kms")
        assert receipt.chunks >= 1

        metadata = mode.kms.describe_key(KeyId=key_arn)["KeyMetadata"]
        assert metadata["KeyState"] == "PendingDeletion"
        assert "DeletionDate" in metadata
        aliases = [alias["AliasName"] for alias in mode.kms.list_aliases()["Aliases"]]
        assert f"alias/phivault/tenant-{tenant_id}" not in aliases
        after = await tenant_row(owner_engine, tenant_id)
        assert after.kms_key_id is None
        assert after.purged_at is not None
        with pytest.raises(ObjectNotFoundError):
            store.read(old_ref, document_id)

        # The system holds no key reference any more; the provider refuses the row's.
        with pytest.raises(TenantKeyMissing):
            mode.state.keys.generate_data_key(
                tenant_key_ref(Tenant(id=tenant_id, kms_key_id=after.kms_key_id)), document_id
            )
        if encryption == "envelope":
            # Moto decrypts under a key pending deletion (AWS refuses: KMSInvalidStateException); the key's state
            # above is what makes the copy unreadable on AWS. The copy was envelope ciphertext under that key.
            assert copied.startswith(b"PHV1")
            with pytest.raises(TenantKeyMissing):
                open_envelope(io.BytesIO(copied), mode.state.keys, tenant_key_ref(Tenant(id=tenant_id)), document_id)
        with pytest.raises(ClientError):
            mode.kms.describe_key(KeyId=f"alias/phivault/tenant-{tenant_id}")
