"""Tenant keys and per-object data keys (architecture invariant 6).

Two providers share one protocol:

* `LocalKeyProvider` keeps a 256-bit key per tenant, wrapped with AES-256-GCM under the process master key
  (`PHIVAULT_MASTER_KEY`). The wrapped tenant key is what the tenants row stores (`wrapped_key`).
* `KmsKeyProvider` gives every tenant its own AWS KMS key (tagged, with the alias
  `alias/phivault/tenant-<tenant_id>`); the tenants row stores the key ARN (`kms_key_id`).

Data keys are generated per object and wrapped by the tenant key with the tenant id and the document id bound in:
as AES-GCM associated data locally, as the KMS encryption context `{"tenant_id", "document_id"}` with KMS. A wrapped
data key moved to another tenant or another document does not unwrap (`DecryptionError`).

Wire formats (all binary, nonce first):

* wrapped tenant key (local): ``nonce(12) || AES-256-GCM(master_key, tenant_key, aad)`` where
  ``aad = b"phivault/tenant-key/" || tenant_id.bytes`` -> 12 + 32 + 16 = 60 bytes.
* wrapped data key (local): ``nonce(12) || AES-256-GCM(tenant_key, data_key, aad)`` where
  ``aad = b"phivault/data-key/" || tenant_id.bytes || document_id.bytes`` -> 60 bytes.
* wrapped data key (KMS): the opaque `CiphertextBlob` returned by `GenerateDataKey`.

Error messages carry ids only, never key material (invariant 5).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

import boto3
from botocore.exceptions import ClientError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.settings import SettingsError

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

    from core.settings import Settings

KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
WRAPPED_KEY_BYTES: Final = NONCE_BYTES + KEY_BYTES + TAG_BYTES

TENANT_KEY_AAD_PREFIX: Final = b"phivault/tenant-key/"
DATA_KEY_AAD_PREFIX: Final = b"phivault/data-key/"

KMS_TENANT_TAG: Final = "phivault:tenant_id"
MASTER_KEY_FILE: Final = "master.key"

# KMS errors that mean "this ciphertext does not belong to this key / context", as opposed to an outage or IAM.
_KMS_DECRYPTION_ERRORS: Final = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})


class DecryptionError(Exception):
    """A key or ciphertext failed authentication: wrong tenant, wrong document, tampered or truncated data."""


@dataclass(frozen=True)
class TenantKeyRef:
    """What the tenants row stores about the tenant's key: a KMS key id/ARN, or a locally wrapped key."""

    tenant_id: uuid.UUID
    kms_key_id: str | None
    wrapped_key: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class DataKey:
    """A fresh 256-bit object key: `plaintext` to encrypt with, `wrapped` to store next to the ciphertext."""

    plaintext: bytes = field(repr=False)
    wrapped: bytes


class KeyProvider(Protocol):
    """Tenant key lifecycle and per-object envelope keys."""

    name: str

    def provision_tenant_key(self, tenant_id: uuid.UUID) -> TenantKeyRef: ...

    def generate_data_key(self, tenant: TenantKeyRef, document_id: uuid.UUID) -> DataKey: ...

    def unwrap_data_key(self, tenant: TenantKeyRef, document_id: uuid.UUID, wrapped: bytes) -> bytes: ...


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, blob: bytes, aad: bytes, what: str) -> bytes:
    if len(blob) != WRAPPED_KEY_BYTES:
        raise DecryptionError(f"{what}: wrapped key has {len(blob)} bytes, expected {WRAPPED_KEY_BYTES}")
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except InvalidTag:
        raise DecryptionError(f"{what}: authentication failed (wrong key, tenant or document)") from None


def _data_key_aad(tenant_id: uuid.UUID, document_id: uuid.UUID) -> bytes:
    return DATA_KEY_AAD_PREFIX + tenant_id.bytes + document_id.bytes


class LocalKeyProvider:
    """Tenant keys wrapped under one master key (AES-256-GCM); for development and single-host deployments."""

    name = "local"

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != KEY_BYTES:
            raise ValueError(f"the master key must be exactly {KEY_BYTES} bytes")
        self._master_key = master_key

    def __repr__(self) -> str:
        return "LocalKeyProvider(master_key=<redacted>)"

    def provision_tenant_key(self, tenant_id: uuid.UUID) -> TenantKeyRef:
        tenant_key = AESGCM.generate_key(bit_length=256)
        wrapped = _seal(self._master_key, tenant_key, TENANT_KEY_AAD_PREFIX + tenant_id.bytes)
        return TenantKeyRef(tenant_id=tenant_id, kms_key_id=None, wrapped_key=wrapped)

    def _tenant_key(self, tenant: TenantKeyRef) -> bytes:
        if tenant.wrapped_key is None:
            raise ValueError(f"tenant {tenant.tenant_id} has no locally wrapped key (made by another provider?)")
        return _open(
            self._master_key,
            tenant.wrapped_key,
            TENANT_KEY_AAD_PREFIX + tenant.tenant_id.bytes,
            f"tenant {tenant.tenant_id} key",
        )

    def generate_data_key(self, tenant: TenantKeyRef, document_id: uuid.UUID) -> DataKey:
        data_key = AESGCM.generate_key(bit_length=256)
        wrapped = _seal(self._tenant_key(tenant), data_key, _data_key_aad(tenant.tenant_id, document_id))
        return DataKey(plaintext=data_key, wrapped=wrapped)

    def unwrap_data_key(self, tenant: TenantKeyRef, document_id: uuid.UUID, wrapped: bytes) -> bytes:
        return _open(
            self._tenant_key(tenant),
            wrapped,
            _data_key_aad(tenant.tenant_id, document_id),
            f"data key of document {document_id} (tenant {tenant.tenant_id})",
        )


def kms_alias(tenant_id: uuid.UUID) -> str:
    return f"alias/phivault/tenant-{tenant_id}"


def kms_key_matches(expected: str, actual: str) -> bool:
    """Whether two KMS key references name the same key: equal, or a key ARN and that key's bare id.

    KMS `Decrypt` and S3 report key ARNs; the providers here store key ARNs. An alias cannot be resolved offline, so
    it only matches itself.
    """
    if expected == actual:
        return True

    def bare_id_of_arn(bare: str, arn: str) -> bool:
        return not bare.startswith(("arn:", "alias/")) and arn.startswith("arn:") and arn.endswith(f":key/{bare}")

    return bare_id_of_arn(expected, actual) or bare_id_of_arn(actual, expected)


def encryption_context(tenant_id: uuid.UUID, document_id: uuid.UUID) -> dict[str, str]:
    """The KMS encryption context binding a data key (or an S3 object) to its tenant and document."""
    return {"tenant_id": str(tenant_id), "document_id": str(document_id)}


class KmsKeyProvider:
    """One AWS KMS key per tenant; data keys from `GenerateDataKey` bound by encryption context."""

    name = "aws-kms"

    def __init__(self, client: KMSClient) -> None:
        self._client = client

    def provision_tenant_key(self, tenant_id: uuid.UUID) -> TenantKeyRef:
        created = self._client.create_key(
            Description=f"PHIVault tenant {tenant_id}",
            KeyUsage="ENCRYPT_DECRYPT",
            Tags=[{"TagKey": KMS_TENANT_TAG, "TagValue": str(tenant_id)}],
        )
        metadata = created["KeyMetadata"]
        key_arn = metadata.get("Arn") or metadata["KeyId"]
        try:
            self._client.create_alias(AliasName=kms_alias(tenant_id), TargetKeyId=metadata["KeyId"])
        except Exception:
            # Do not leave an orphaned, unnamed key behind; KMS keeps it recoverable for the pending window.
            with contextlib.suppress(ClientError):
                self._client.schedule_key_deletion(KeyId=metadata["KeyId"], PendingWindowInDays=7)
            raise
        return TenantKeyRef(tenant_id=tenant_id, kms_key_id=key_arn, wrapped_key=None)

    @staticmethod
    def _key_id(tenant: TenantKeyRef) -> str:
        if not tenant.kms_key_id:
            raise ValueError(f"tenant {tenant.tenant_id} has no KMS key (provisioned with another provider?)")
        return tenant.kms_key_id

    def generate_data_key(self, tenant: TenantKeyRef, document_id: uuid.UUID) -> DataKey:
        key_id = self._key_id(tenant)
        response = self._client.generate_data_key(
            KeyId=key_id,
            KeySpec="AES_256",
            EncryptionContext=encryption_context(tenant.tenant_id, document_id),
        )
        plaintext = response["Plaintext"]
        if len(plaintext) != KEY_BYTES:
            raise DecryptionError(f"KMS returned a {len(plaintext)}-byte data key for tenant {tenant.tenant_id}")
        return DataKey(plaintext=plaintext, wrapped=response["CiphertextBlob"])

    def unwrap_data_key(self, tenant: TenantKeyRef, document_id: uuid.UUID, wrapped: bytes) -> bytes:
        key_id = self._key_id(tenant)
        what = f"data key of document {document_id} (tenant {tenant.tenant_id})"
        try:
            response = self._client.decrypt(
                CiphertextBlob=wrapped,
                KeyId=key_id,
                EncryptionContext=encryption_context(tenant.tenant_id, document_id),
                EncryptionAlgorithm="SYMMETRIC_DEFAULT",
            )
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in _KMS_DECRYPTION_ERRORS:
                raise DecryptionError(f"{what}: KMS refused the ciphertext ({code})") from None
            raise
        # KMS enforces KeyId on Decrypt; check again so a misbehaving endpoint cannot hand us another tenant's key.
        returned = response.get("KeyId", "")
        if not kms_key_matches(key_id, returned):
            raise DecryptionError(f"{what}: not decrypted under the tenant's KMS key (store key ARNs, not aliases)")
        plaintext = response["Plaintext"]
        if len(plaintext) != KEY_BYTES:
            raise DecryptionError(f"{what}: unwrapped key has {len(plaintext)} bytes, expected {KEY_BYTES}")
        return plaintext


def decode_master_key(value: str) -> bytes:
    """Decode a base64 (standard or URL-safe, padding optional) master key of exactly 32 bytes."""
    text = "".join(value.split())
    text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("PHIVAULT_MASTER_KEY must be base64 (standard or URL-safe) of 32 random bytes") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(f"PHIVAULT_MASTER_KEY must decode to exactly {KEY_BYTES} bytes, got {len(raw)}")
    return raw


def _read_or_create_dev_master_key(data_dir: Path) -> bytes:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / MASTER_KEY_FILE
    if not path.exists():
        encoded = base64.b64encode(os.urandom(KEY_BYTES)) + b"\n"
        # Write a private temporary file completely, then publish it with link(): the key file appears whole or not
        # at all, and a concurrent creator loses with FileExistsError instead of overwriting.
        temp = data_dir / f".{MASTER_KEY_FILE}.{uuid.uuid4().hex}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(encoded)
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(temp, path)
        finally:
            temp.unlink(missing_ok=True)
    try:
        return decode_master_key(path.read_text(encoding="ascii"))
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} does not hold a valid master key: {error}") from None


def load_master_key(settings: Settings) -> bytes:
    """The 32-byte master key of the local key provider.

    From `PHIVAULT_MASTER_KEY` when set; in development otherwise from `<data_dir>/master.key`, created on first
    use (0600). Production without a master key is refused.
    """
    if settings.master_key is not None:
        return decode_master_key(settings.master_key.get_secret_value())
    if settings.env != "development":
        raise SettingsError("PHIVAULT_MASTER_KEY is required with the local key provider outside development")
    return _read_or_create_dev_master_key(settings.data_dir)


def kms_client(settings: Settings) -> KMSClient:
    """A KMS client for the configured region; boto3 honours `AWS_ENDPOINT_URL(_KMS)` for KMS-compatible endpoints."""
    return boto3.client("kms", region_name=settings.aws_region)


def key_provider_from_settings(settings: Settings) -> KeyProvider:
    if settings.key_provider == "aws-kms":
        return KmsKeyProvider(kms_client(settings))
    return LocalKeyProvider(load_master_key(settings))
