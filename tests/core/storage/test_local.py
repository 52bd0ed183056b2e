"""The local store: envelope files on disk, private permissions, no temporary file left, replace and delete."""

from __future__ import annotations

import io
import os
import shutil
import stat
import uuid
from pathlib import Path

import pytest
from mypy_boto3_kms import KMSClient

from core.keys import DecryptionError, KmsKeyProvider, LocalKeyProvider
from core.storage import MIB, SEGMENT_SIZE, LocalEncryptedStore, ObjectNotFoundError, object_key
from tests.core.storage.conftest import put_bytes, random_file, segment_spans


def test_local_round_trip_of_a_multi_segment_file(
    tmp_path: Path, store: LocalEncryptedStore, local_keys: LocalKeyProvider
) -> None:
    tenant = local_keys.provision_tenant_key(uuid.uuid4())
    document_id = uuid.uuid4()
    source_path, data = random_file(tmp_path, 3 * MIB + MIB // 2)

    with source_path.open("rb") as source:
        source.read(100)  # put stores the whole file whatever the position
        stored = store.put(tenant, document_id, source)

    assert stored.key == object_key(tenant.tenant_id, document_id)
    assert stored.size_bytes == len(data)
    assert stored.kms_key_id is None
    assert store.exists(tenant.tenant_id, document_id)
    assert store.read(tenant, document_id) == data

    chunks = list(store.iter_plaintext(tenant, document_id, chunk_size=256 * 1024))
    assert all(0 < len(chunk) <= 256 * 1024 for chunk in chunks)
    assert b"".join(chunks) == data

    path = store.root / stored.key
    blob = path.read_bytes()
    assert len(segment_spans(blob)) == 4
    for start in (0, len(data) // 2, len(data) - 64):
        assert data[start : start + 64] not in blob
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    directory = path.parent
    while directory != store.root.parent:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
        directory = directory.parent
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


@pytest.mark.parametrize("size", [0, 1, SEGMENT_SIZE, SEGMENT_SIZE + 1])
def test_local_round_trip_small_and_boundary_sizes(
    store: LocalEncryptedStore, local_keys: LocalKeyProvider, size: int
) -> None:
    tenant = local_keys.provision_tenant_key(uuid.uuid4())
    document_id = uuid.uuid4()
    data = os.urandom(size)
    assert put_bytes(store, tenant, document_id, data) == size
    assert store.read(tenant, document_id) == data
    blob = (store.root / object_key(tenant.tenant_id, document_id)).read_bytes()
    assert len(segment_spans(blob)) == max(1, -(-size // SEGMENT_SIZE))
    if size >= 16:
        assert data[:16] not in blob


def test_local_put_replaces_and_delete_is_idempotent(store: LocalEncryptedStore, local_keys: LocalKeyProvider) -> None:
    tenant = local_keys.provision_tenant_key(uuid.uuid4())
    document_id = uuid.uuid4()
    put_bytes(store, tenant, document_id, b"first")
    put_bytes(store, tenant, document_id, b"second")
    assert store.read(tenant, document_id) == b"second"
    store.delete(tenant.tenant_id, document_id)
    store.delete(tenant.tenant_id, document_id)
    assert not store.exists(tenant.tenant_id, document_id)
    with pytest.raises(ObjectNotFoundError):
        store.iter_plaintext(tenant, document_id)
    with pytest.raises(FileNotFoundError):
        store.read(tenant, document_id)


def test_local_envelope_with_kms_keys(tmp_path: Path, kms: KMSClient) -> None:
    keys = KmsKeyProvider(kms)
    store = LocalEncryptedStore(tmp_path / "objects", keys)
    tenant_a = keys.provision_tenant_key(uuid.uuid4())
    tenant_b = keys.provision_tenant_key(uuid.uuid4())
    document_id = uuid.uuid4()
    data = os.urandom(MIB + 17)
    stored = store.put(tenant_a, document_id, io.BytesIO(data))
    assert stored.kms_key_id == tenant_a.kms_key_id
    assert store.read(tenant_a, document_id) == data

    target = store.root / object_key(tenant_b.tenant_id, document_id)
    target.parent.mkdir(parents=True)
    shutil.copyfile(store.root / stored.key, target)
    with pytest.raises(DecryptionError):
        store.read(tenant_b, document_id)
