"""The envelope format, through the local store: an object copied elsewhere, edited, truncated or reordered fails."""

from __future__ import annotations

import os
import shutil
import uuid
from typing import Any

import pytest

from core.keys import DecryptionError, LocalKeyProvider, TenantKeyRef
from core.storage import MIB, SEGMENT_SIZE, LocalEncryptedStore, object_key
from tests.core.storage.conftest import (
    bad_magic,
    cut_last_segment,
    drop_last_segment,
    flip_a_bit,
    put_bytes,
    repeat_last_segment,
    segment_spans,
    swap_segments,
)


def test_local_copy_under_another_tenant_or_document_fails(
    store: LocalEncryptedStore, local_keys: LocalKeyProvider
) -> None:
    tenant_a = local_keys.provision_tenant_key(uuid.uuid4())
    tenant_b = local_keys.provision_tenant_key(uuid.uuid4())
    document_id = uuid.uuid4()
    put_bytes(store, tenant_a, document_id, os.urandom(2 * MIB))
    # Give B a document of its own so its directory exists, then plant A's file at B's paths.
    put_bytes(store, tenant_b, uuid.uuid4(), b"b's own document")
    source = store.root / object_key(tenant_a.tenant_id, document_id)

    other_document = uuid.uuid4()
    for tenant, target_document in ((tenant_b, document_id), (tenant_a, other_document)):
        target = store.root / object_key(tenant.tenant_id, target_document)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        with pytest.raises(DecryptionError):
            store.read(tenant, target_document)


def rewrite(store: LocalEncryptedStore, tenant: TenantKeyRef, document_id: uuid.UUID, edit: Any) -> None:
    path = store.root / object_key(tenant.tenant_id, document_id)
    blob = path.read_bytes()
    path.write_bytes(edit(blob, segment_spans(blob)))


@pytest.mark.parametrize(
    "edit", [drop_last_segment, cut_last_segment, swap_segments, repeat_last_segment, flip_a_bit, bad_magic]
)
def test_local_tampering_is_detected(store: LocalEncryptedStore, local_keys: LocalKeyProvider, edit: Any) -> None:
    tenant = local_keys.provision_tenant_key(uuid.uuid4())
    document_id = uuid.uuid4()
    put_bytes(store, tenant, document_id, os.urandom(3 * MIB + 1000))
    rewrite(store, tenant, document_id, edit)
    with pytest.raises(DecryptionError):
        store.read(tenant, document_id)


def test_local_stream_stops_at_the_tampered_segment(store: LocalEncryptedStore, local_keys: LocalKeyProvider) -> None:
    tenant = local_keys.provision_tenant_key(uuid.uuid4())
    document_id = uuid.uuid4()
    data = os.urandom(3 * MIB + 1000)
    put_bytes(store, tenant, document_id, data)
    rewrite(store, tenant, document_id, swap_segments)
    received: list[bytes] = []
    with pytest.raises(DecryptionError, match="segment 1"):
        for chunk in store.iter_plaintext(tenant, document_id):
            received.append(chunk)
    assert b"".join(received) == data[:SEGMENT_SIZE]
