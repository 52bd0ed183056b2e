"""Key rotation: every document is read through HTTP before, during (between single-object steps) and after.

A tenant key: on local storage (real worker), and on S3 (moto) with envelope encryption and with SSE-KMS. The
master key: `phivault keys rotate-master`, then an app holding only the new master key reads everything.
"""

from __future__ import annotations

import base64
import os
import uuid
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import Database
from core.keys import DecryptionError, KeyProvider, TenantKeyRef, key_provider_from_settings, load_master_key
from core.runtime import Services
from core.settings import Settings
from core.storage import ObjectStore, object_key, object_store_from_settings
from ingest.processing import process_document
from models.audit import Actor
from tenants.rotation import key_rotation_status, rotation_step, start_tenant_rotation
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

ACTOR = Actor(actor_id="test:rotation", actor_type="platform")


def notes(count: int) -> list[bytes]:
    return [f"Progress note {i} {uuid.uuid4().hex}.\n\nStable; continue current plan.\n".encode() for i in range(count)]


async def new_tenant(client: httpx.AsyncClient, tokens: Tokens) -> uuid.UUID:
    response = await client.post(
        "/v1/tenants", json={"name": f"Rotate {uuid.uuid4().hex[:6]}"}, headers=tokens.platform()
    )
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


async def upload_all(client: httpx.AsyncClient, headers: dict[str, str], contents: list[bytes]) -> dict[str, bytes]:
    uploaded = {}
    for index, content in enumerate(contents):
        response = await upload(client, headers, content, f"note-{index}.txt")
        assert response.status_code == 202, response.text
        uploaded[response.json()["id"]] = content
    return uploaded


async def read_all(client: httpx.AsyncClient, headers: dict[str, str], documents: dict[str, bytes]) -> None:
    for document_id, content in documents.items():
        response = await client.get(f"/v1/documents/{document_id}/content", headers=headers)
        assert response.status_code == 200, response.text
        assert response.content == content


async def rotate_reading_between_steps(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    documents: dict[str, bytes],
    db: Database,
    keys: KeyProvider,
    store: ObjectStore,
    tenant_id: uuid.UUID,
) -> int:
    """Start the rotation, then run it one object at a time, reading every document between steps; the steps."""
    await read_all(client, headers, documents)
    status = await start_tenant_rotation(db, keys, tenant_id, ACTOR)
    assert status.in_progress
    assert (status.migrated, status.total) == (0, len(documents))
    steps = 0
    while status.in_progress:
        await read_all(client, headers, documents)
        status = await rotation_step(db, keys, store, tenant_id, batch=1)
        steps += 1
        assert status.migrated == min(steps, len(documents))
    await read_all(client, headers, documents)
    assert (await key_rotation_status(db, tenant_id)).in_progress is False
    return steps


async def tenant_row(owner: AsyncEngine, tenant_id: uuid.UUID) -> Any:
    async with owner.connect() as conn:
        return (await conn.execute(text("SELECT * FROM tenants WHERE id = :id"), {"id": tenant_id})).one()


async def test_a_local_tenant_key_rotation_never_leaves_a_document_unreadable(
    client: httpx.AsyncClient,
    tokens: Tokens,
    worker: Worker,
    db: Database,
    owner_engine: AsyncEngine,
    settings: Settings,
) -> None:
    tenant_id = await new_tenant(client, tokens)
    member = tokens.headers("member", tenant_id)
    documents = await upload_all(client, member, notes(3))
    for document_id in documents:
        assert (await document_in(client, member, document_id))["status"] == "ready"
    before = await tenant_row(owner_engine, tenant_id)
    keys = key_provider_from_settings(settings)
    store = object_store_from_settings(settings, keys)

    steps = await rotate_reading_between_steps(client, member, documents, db, keys, store, tenant_id)
    assert steps == len(documents) + 1  # one step per object, then the one that completes

    after = await tenant_row(owner_engine, tenant_id)
    assert after.previous_wrapped_key is None
    assert after.wrapped_key != before.wrapped_key
    current_only = TenantKeyRef(tenant_id=tenant_id, kms_key_id=None, wrapped_key=after.wrapped_key)
    old_only = TenantKeyRef(tenant_id=tenant_id, kms_key_id=None, wrapped_key=before.wrapped_key)
    for document_id, content in documents.items():
        assert store.read(current_only, uuid.UUID(document_id)) == content
        with pytest.raises(DecryptionError):
            store.read(old_only, uuid.UUID(document_id))
    actions = [action for action, _, _ in await audit_actions(owner_engine, tenant_id)]
    assert actions.count("tenant.key_rotated") == 1
    assert actions[-1] != "tenant.key_rotated"
    assert "tenant.key_rotation_completed" in actions

    # A document uploaded after the rotation is under the new key.
    later = await upload_all(client, member, notes(1))
    await read_all(client, member, later)


@pytest.mark.parametrize(("key_provider", "encryption"), [("local", "envelope"), ("aws-kms", "sse-kms")])
async def test_an_s3_tenant_key_rotation_never_leaves_a_document_unreadable(
    aws: None,
    settings: Settings,
    services: Services,
    tokens: Tokens,
    owner_engine: AsyncEngine,
    key_provider: str,
    encryption: str,
) -> None:
    async with running_app(settings, services, key_provider=key_provider, s3_encryption=encryption) as mode:
        tenant_id = await new_tenant(mode.http, tokens)
        member = tokens.headers("member", tenant_id)
        documents = await upload_all(mode.http, member, notes(3))
        for document_id in documents:
            result = await process_document(
                mode.state.database,
                mode.state.store,
                HashEmbedder(),
                mode.state.settings,
                tenant_id,
                uuid.UUID(document_id),
            )
            assert result == "ready"
        before = await tenant_row(owner_engine, tenant_id)

        await rotate_reading_between_steps(
            mode.http, member, documents, mode.state.database, mode.state.keys, mode.state.store, tenant_id
        )

        after = await tenant_row(owner_engine, tenant_id)
        assert after.previous_kms_key_id is None
        assert after.previous_wrapped_key is None
        if key_provider == "aws-kms":
            assert after.kms_key_id != before.kms_key_id
            assert mode.kms.get_key_rotation_status(KeyId=after.kms_key_id)["KeyRotationEnabled"]
            assert mode.kms.describe_key(KeyId=before.kms_key_id)["KeyMetadata"]["KeyState"] == "PendingDeletion"
            for document_id in documents:
                head = mode.s3.head_object(Bucket=BUCKET, Key=object_key(tenant_id, uuid.UUID(document_id)))
                assert head["SSEKMSKeyId"] == after.kms_key_id
        await read_all(mode.http, member, documents)


def master_env(settings: Settings, services: Services, new: str) -> dict[str, str]:
    return worker_env(settings, services) | {"PHIVAULT_MASTER_KEY": new}


async def test_rotate_master_then_only_the_new_master_key_is_needed(
    client: httpx.AsyncClient, tokens: Tokens, worker: Worker, settings: Settings, services: Services
) -> None:
    tenant_id = await new_tenant(client, tokens)
    member = tokens.headers("member", tenant_id)
    documents = await upload_all(client, member, notes(2))
    for document_id in documents:
        assert (await document_in(client, member, document_id))["status"] == "ready"
    old = base64.b64encode(load_master_key(settings)).decode()
    new = base64.b64encode(os.urandom(32)).decode()

    rotated = phivault(master_env(settings, services, new), "keys", "rotate-master", "--old-master-key", old)
    try:
        assert rotated.returncode == 0, rotated.stderr
        assert "rotated:" in rotated.stdout
        again = phivault(master_env(settings, services, new), "keys", "rotate-master", "--old-master-key", old)
        assert again.returncode == 0, again.stderr
        assert "rotated: 0 " in again.stdout, again.stdout  # resumable: nothing left to do

        # An app with the new master key only (no fallback) reads everything.
        new_only = settings.model_copy(update={"master_key": SecretStr(new), "old_master_key": None})
        async with app_client(new_only, services) as fresh:
            await read_all(fresh, member, documents)
    finally:
        back = phivault(master_env(settings, services, old), "keys", "rotate-master", "--old-master-key", new)
        assert back.returncode == 0, back.stderr
    await read_all(client, member, documents)
