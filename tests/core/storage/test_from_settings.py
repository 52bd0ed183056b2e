"""`object_store_from_settings`: which store each combination of storage, encryption and key provider gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from core.keys import KeyProvider, KmsKeyProvider, LocalKeyProvider
from core.storage import LocalEncryptedStore, S3EnvelopeStore, S3Store, object_store_from_settings
from tests.core.storage.conftest import BUCKET, REGION, settings_for


def test_object_store_from_settings(tmp_path: Path, aws: None, local_keys: LocalKeyProvider) -> None:
    local = object_store_from_settings(settings_for(tmp_path), local_keys)
    assert isinstance(local, LocalEncryptedStore)
    assert local.root == tmp_path / "objects"
    assert local.keys is local_keys

    with pytest.raises(ValueError, match="PHIVAULT_S3_BUCKET"):
        object_store_from_settings(settings_for(tmp_path, storage="s3"), local_keys)

    kms_keys: KeyProvider = KmsKeyProvider(boto3.client("kms", region_name=REGION))
    minio = "http://minio.internal:9000"
    s3 = {"storage": "s3", "s3_bucket": BUCKET}
    # (settings, keys) -> the store, and whether it goes to the custom endpoint.
    cases: list[tuple[dict[str, Any], KeyProvider, type[S3Store | S3EnvelopeStore], str | None]] = [
        ({}, local_keys, S3EnvelopeStore, None),  # local keys: envelope, even on AWS
        ({"s3_endpoint_url": minio}, local_keys, S3EnvelopeStore, minio),  # Railway, MinIO, R2...
        ({"s3_encryption": "envelope"}, local_keys, S3EnvelopeStore, None),
        ({"key_provider": "aws-kms"}, kms_keys, S3Store, None),  # AWS with KMS keys: SSE-KMS by default
        ({"key_provider": "aws-kms", "s3_encryption": "envelope"}, kms_keys, S3EnvelopeStore, None),
        ({"key_provider": "aws-kms", "s3_endpoint_url": minio}, kms_keys, S3EnvelopeStore, minio),
        ({"key_provider": "aws-kms", "s3_endpoint_url": minio, "s3_encryption": "sse-kms"}, kms_keys, S3Store, minio),
    ]
    for overrides, keys, expected, endpoint in cases:
        store = object_store_from_settings(settings_for(tmp_path, **s3, **overrides), keys)
        assert type(store) is expected, overrides
        assert isinstance(store, S3Store | S3EnvelopeStore)
        assert store.bucket == BUCKET
        assert store.keys is keys
        assert store.client.meta.endpoint_url == (endpoint or "https://s3.amazonaws.com"), overrides

    # SSE-KMS needs KMS tenant keys, whatever the settings say about the provider.
    with pytest.raises(ValueError, match="PHIVAULT_KEY_PROVIDER=aws-kms"):
        object_store_from_settings(
            settings_for(tmp_path, **s3, key_provider="aws-kms", s3_encryption="sse-kms"), local_keys
        )
