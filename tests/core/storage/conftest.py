"""Shared by the object store tests: moto clients, a local key provider and store, and helpers that parse and edit
stored envelopes independently of `core.storage`."""

from __future__ import annotations

import io
import os
import struct
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from mypy_boto3_kms import KMSClient
from mypy_boto3_s3 import S3Client

from core.keys import KEY_BYTES, LocalKeyProvider, TenantKeyRef
from core.settings import Settings
from core.storage import LocalEncryptedStore, ObjectStore
from tests.harness import AWS_REGION

REGION = AWS_REGION
BUCKET = "phivault-test-objects"


@pytest.fixture
def kms(aws: None) -> KMSClient:
    return boto3.client("kms", region_name=REGION)


@pytest.fixture
def s3(aws: None) -> S3Client:
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def local_keys() -> LocalKeyProvider:
    return LocalKeyProvider(os.urandom(KEY_BYTES))


@pytest.fixture
def store(tmp_path: Path, local_keys: LocalKeyProvider) -> LocalEncryptedStore:
    return LocalEncryptedStore(tmp_path / "objects", local_keys)


def random_file(directory: Path, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = directory / f"upload-{uuid.uuid4().hex}"
    path.write_bytes(data)
    return path, data


def put_bytes(store: ObjectStore, tenant: TenantKeyRef, document_id: uuid.UUID, data: bytes) -> int:
    return store.put(tenant, document_id, io.BytesIO(data)).size_bytes


def segment_spans(blob: bytes) -> list[tuple[int, int]]:
    """(start, end) of every length-prefixed segment of a local object, parsed independently of the store."""
    assert blob[:4] == b"PHV1"
    (wrapped_len,) = struct.unpack(">H", blob[4:6])
    position = 6 + wrapped_len
    spans: list[tuple[int, int]] = []
    while position < len(blob):
        (length,) = struct.unpack(">I", blob[position : position + 4])
        spans.append((position, position + 4 + length))
        position += 4 + length
    assert position == len(blob)
    return spans


def drop_last_segment(blob: bytes, spans: list[tuple[int, int]]) -> bytes:
    return blob[: spans[-1][0]]


def cut_last_segment(blob: bytes, spans: list[tuple[int, int]]) -> bytes:
    return blob[:-1]


def swap_segments(blob: bytes, spans: list[tuple[int, int]]) -> bytes:
    (a_start, a_end), (b_start, b_end) = spans[1], spans[2]
    return blob[:a_start] + blob[b_start:b_end] + blob[a_start:a_end] + blob[b_end:]


def repeat_last_segment(blob: bytes, spans: list[tuple[int, int]]) -> bytes:
    return blob + blob[spans[-1][0] : spans[-1][1]]


def flip_a_bit(blob: bytes, spans: list[tuple[int, int]]) -> bytes:
    position = spans[0][0] + 100
    return blob[:position] + bytes([blob[position] ^ 1]) + blob[position + 1 :]


def bad_magic(blob: bytes, spans: list[tuple[int, int]]) -> bytes:
    return b"PHV2" + blob[4:]


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "storage": "local",
        "s3_bucket": None,
        "s3_endpoint_url": None,
        "s3_encryption": None,
        "key_provider": "local",
        **overrides,
    }
    return Settings(env="development", data_dir=tmp_path, database_url=None, redis_url=None, **values)
