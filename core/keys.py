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

Key lifecycle (issue 15): while a tenant key is rotated, `TenantKeyRef` carries the previous key too
(`previous_kms_key_id` / `previous_wrapped_key`); data keys unwrap under the current key, then the previous one, and
`rewrap_data_key` moves one to the current key. `LocalKeyProvider` accepts an old master key as a fallback for
unwrapping tenant keys during a master key rotation (`PHIVAULT_OLD_MASTER_KEY`). `destroy_tenant_key` is the
crypto-shredding step of offboarding.

Error messages carry ids only, never key material (invariant 5).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import uuid
from collections.abc import Callable
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
SECRET_AAD_PREFIX: Final = b"phivault/tenant-secret/"

KMS_TENANT_TAG: Final = "phivault:tenant_id"
KMS_MIN_PENDING_WINDOW_DAYS: Final = 7
"""`ScheduleKeyDeletion`'s shortest window: a destroyed tenant's key is gone for good after it."""
KMS_MAX_PENDING_WINDOW_DAYS: Final = 30
"""The window for a key rotated away from: the longest, so a restore from an older backup can still cancel it."""
MASTER_KEY_FILE: Final = "master.key"

# KMS errors that mean "this ciphertext does not belong to this key / context", as opposed to an outage or IAM.
_KMS_DECRYPTION_ERRORS: Final = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})


class DecryptionError(Exception):
    """A key or ciphertext failed authentication: wrong tenant, wrong document, tampered or truncated data."""


class TenantKeyMissing(ValueError):
    """The tenant has no key of this provider's kind: made by another provider, or destroyed at offboarding."""


@dataclass(frozen=True)
class TenantKeyRef:
    """What the tenants row stores about the tenant's key: a KMS key id/ARN, or a locally wrapped key."""

    tenant_id: uuid.UUID
    kms_key_id: str | None
    wrapped_key: bytes | None = field(default=None, repr=False)
    previous_kms_key_id: str | None = None
    """The key being rotated away from: still read, never written with, until every object is migrated."""
    previous_wrapped_key: bytes | None = field(default=None, repr=False)


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

    def unwrap_data_key(self, tenant: TenantKeyRef, document_id: uuid.UUID, wrapped: bytes) -> bytes:
        """The data key, unwrapped under the tenant's current key or else its previous one."""
        ...

    def rewrap_data_key(self, tenant: TenantKeyRef, document_id: uuid.UUID, wrapped: bytes) -> bytes | None:
        """`wrapped` moved under the tenant's current key; None when it is under the current key already."""
        ...

    def rotate_tenant_key(self, tenant: TenantKeyRef) -> TenantKeyRef:
        """A new current key for the tenant, the current one becoming `previous_*`."""
        ...

    def retire_previous_key(self, tenant: TenantKeyRef) -> None:
        """The rotation is complete: the previous key is no longer needed (a KMS key is scheduled for deletion)."""
        ...

    def destroy_tenant_key(self, tenant: TenantKeyRef) -> list[str]:
        """Make the tenant's keys (current and previous) unusable; the ids of the keys destroyed, never key bytes.

        Local keys live only in the tenants row: the caller erases them there, this returns their fingerprints.
        """
        ...

    def wrap_secret(self, tenant: TenantKeyRef, secret: bytes, purpose: str) -> bytes:
        """A 32-byte tenant secret (the audit query key) wrapped by the tenant key, bound to tenant and `purpose`."""
        ...

    def unwrap_secret(self, tenant: TenantKeyRef, wrapped: bytes, purpose: str) -> bytes: ...


def key_fingerprint(wrapped_key: bytes) -> str:
    """What identifies a locally wrapped key in a receipt without revealing it: the SHA-256 of the wrapped bytes."""
    return "sha256:" + hashlib.sha256(wrapped_key).hexdigest()


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

    def __init__(self, master_key: bytes, old_master_key: bytes | None = None) -> None:
        """`old_master_key`: also tried when a tenant key does not unwrap under `master_key` (during a rotation)."""
        for key in (master_key, old_master_key):
            if key is not None and len(key) != KEY_BYTES:
                raise ValueError(f"the master key must be exactly {KEY_BYTES} bytes")
        self._master_key = master_key
        self._old_master_key = old_master_key

    def __repr__(self) -> str:
        return "LocalKeyProvider(master_key=<redacted>)"

    def _unwrap_tenant_key(self, tenant_id: uuid.UUID, wrapped: bytes) -> bytes:
        aad = TENANT_KEY_AAD_PREFIX + tenant_id.bytes
        what = f"tenant {tenant_id} key"
        try:
            return _open(self._master_key, wrapped, aad, what)
        except DecryptionError:
            if self._old_master_key is None:
                raise
        return _open(self._old_master_key, wrapped, aad, what)

    def rewrap_tenant_key(self, tenant_id: uuid.UUID, wrapped: bytes) -> bytes | None:
        """`wrapped` (a tenant key) moved under the current master key; None when it is under it already."""
        try:
            _open(self._master_key, wrapped, TENANT_KEY_AAD_PREFIX + tenant_id.bytes, f"tenant {tenant_id} key")
        except DecryptionError:
            return _seal(
                self._master_key, self._unwrap_tenant_key(tenant_id, wrapped), TENANT_KEY_AAD_PREFIX + tenant_id.bytes
            )
        return None

    def provision_tenant_key(self, tenant_id: uuid.UUID) -> TenantKeyRef:
        tenant_key = AESGCM.generate_key(bit_length=256)
        wrapped = _seal(self._master_key, tenant_key, TENANT_KEY_AAD_PREFIX + tenant_id.bytes)
        return TenantKeyRef(tenant_id=tenant_id, kms_key_id=None, wrapped_key=wrapped)

    def _tenant_key(self, tenant: TenantKeyRef) -> bytes:
        if tenant.wrapped_key is None:
            raise TenantKeyMissing(
                f"tenant {tenant.tenant_id} has no locally wrapped key (another provider, or destroyed)"
            )
        return self._unwrap_tenant_key(tenant.tenant_id, tenant.wrapped_key)

    def generate_data_key(self, tenant: TenantKeyRef, document_id: uuid.UUID) -> DataKey:
        data_key = AESGCM.generate_key(bit_length=256)
        wrapped = _seal(self._tenant_key(tenant), data_key, _data_key_aad(tenant.tenant_id, document_id))
        return DataKey(plaintext=data_key, wrapped=wrapped)

    def _open_data_key(self, tenant_key: bytes, tenant: TenantKeyRef, document_id: uuid.UUID, wrapped: bytes) -> bytes:
        return _open(
            tenant_key,
            wrapped,
            _data_key_aad(tenant.tenant_id, document_id),
            f"data key of document {document_id} (tenant {tenant.tenant_id})",
        )

    def unwrap_data_key(self, tenant: TenantKeyRef, document_id: uuid.UUID, wrapped: bytes) -> bytes:
        try:
            return self._open_data_key(self._tenant_key(tenant), tenant, document_id, wrapped)
        except DecryptionError:
            if tenant.previous_wrapped_key is None:
                raise
        previous = self._unwrap_tenant_key(tenant.tenant_id, tenant.previous_wrapped_key)
        return self._open_data_key(previous, tenant, document_id, wrapped)

    def rewrap_data_key(self, tenant: TenantKeyRef, document_id: uuid.UUID, wrapped: bytes) -> bytes | None:
        current = self._tenant_key(tenant)
        try:
            self._open_data_key(current, tenant, document_id, wrapped)
        except DecryptionError:
            data_key = self.unwrap_data_key(tenant, document_id, wrapped)
            return _seal(current, data_key, _data_key_aad(tenant.tenant_id, document_id))
        return None

    def rotate_tenant_key(self, tenant: TenantKeyRef) -> TenantKeyRef:
        self._tenant_key(tenant)  # the current key must be usable before it is retired
        fresh = self.provision_tenant_key(tenant.tenant_id)
        return TenantKeyRef(
            tenant_id=tenant.tenant_id,
            kms_key_id=None,
            wrapped_key=fresh.wrapped_key,
            previous_wrapped_key=tenant.wrapped_key,
        )

    def retire_previous_key(self, tenant: TenantKeyRef) -> None:
        """Nothing to do here: the previous wrapped key lives only in the tenants row, which the caller clears."""

    def destroy_tenant_key(self, tenant: TenantKeyRef) -> list[str]:
        return [key_fingerprint(key) for key in (tenant.wrapped_key, tenant.previous_wrapped_key) if key is not None]

    @staticmethod
    def _secret_aad(tenant_id: uuid.UUID, purpose: str) -> bytes:
        return SECRET_AAD_PREFIX + purpose.encode() + b"/" + tenant_id.bytes

    def wrap_secret(self, tenant: TenantKeyRef, secret: bytes, purpose: str) -> bytes:
        """A 32-byte tenant secret sealed under the tenant key, bound to the tenant and `purpose` (the AAD)."""
        return _seal(self._tenant_key(tenant), secret, self._secret_aad(tenant.tenant_id, purpose))

    def unwrap_secret(self, tenant: TenantKeyRef, wrapped: bytes, purpose: str) -> bytes:
        """A secret from `wrap_secret`, under the tenant's current key or else its previous one."""
        aad, what = self._secret_aad(tenant.tenant_id, purpose), f"{purpose} secret of tenant {tenant.tenant_id}"
        try:
            return _open(self._tenant_key(tenant), wrapped, aad, what)
        except DecryptionError:
            if tenant.previous_wrapped_key is None:
                raise
        return _open(self._unwrap_tenant_key(tenant.tenant_id, tenant.previous_wrapped_key), wrapped, aad, what)


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


def _under_another_key(error: Exception) -> bool:
    """Whether a failed Decrypt may mean "encrypted under another key" (worth trying the previous key).

    AWS answers `IncorrectKeyException` (a `DecryptionError` here); moto and some KMS-compatible servers answer
    `AccessDeniedException`.
    """
    if isinstance(error, DecryptionError):
        return True
    return isinstance(error, ClientError) and error.response.get("Error", {}).get("Code") == "AccessDeniedException"


class KmsKeyProvider:
    """One AWS KMS key per tenant; data keys from `GenerateDataKey` bound by encryption context."""

    name = "aws-kms"

    def __init__(self, client: KMSClient) -> None:
        self._client = client

    def _create_key(self, tenant_id: uuid.UUID, name: Callable[[str], object]) -> str:
        """A new tenant key with automatic yearly rotation, named by `name(key_id)`; its ARN."""
        created = self._client.create_key(
            Description=f"PHIVault tenant {tenant_id}",
            KeyUsage="ENCRYPT_DECRYPT",
            Tags=[{"TagKey": KMS_TENANT_TAG, "TagValue": str(tenant_id)}],
        )
        metadata = created["KeyMetadata"]
        try:
            self._client.enable_key_rotation(KeyId=metadata["KeyId"])
            name(metadata["KeyId"])
        except Exception:
            # Do not leave an orphaned, unnamed key behind; KMS keeps it recoverable for the pending window.
            with contextlib.suppress(ClientError):
                self._client.schedule_key_deletion(
                    KeyId=metadata["KeyId"], PendingWindowInDays=KMS_MIN_PENDING_WINDOW_DAYS
                )
            raise
        return metadata.get("Arn") or metadata["KeyId"]

    def provision_tenant_key(self, tenant_id: uuid.UUID) -> TenantKeyRef:
        key_arn = self._create_key(
            tenant_id, lambda key_id: self._client.create_alias(AliasName=kms_alias(tenant_id), TargetKeyId=key_id)
        )
        return TenantKeyRef(tenant_id=tenant_id, kms_key_id=key_arn, wrapped_key=None)

    @staticmethod
    def _key_id(tenant: TenantKeyRef) -> str:
        if not tenant.kms_key_id:
            raise TenantKeyMissing(f"tenant {tenant.tenant_id} has no KMS key (another provider, or destroyed)")
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
        try:
            return self._decrypt(self._key_id(tenant), tenant, document_id, wrapped)
        except (DecryptionError, ClientError) as error:
            if tenant.previous_kms_key_id is None or not _under_another_key(error):
                raise
        return self._decrypt(tenant.previous_kms_key_id, tenant, document_id, wrapped)

    def rewrap_data_key(self, tenant: TenantKeyRef, document_id: uuid.UUID, wrapped: bytes) -> bytes | None:
        current = self._key_id(tenant)
        try:
            self._decrypt(current, tenant, document_id, wrapped)
        except (DecryptionError, ClientError) as error:
            if tenant.previous_kms_key_id is None or not _under_another_key(error):
                raise
        else:
            return None
        return self._re_encrypt(tenant.previous_kms_key_id, current, tenant, document_id, wrapped)

    def _re_encrypt(
        self, source: str, destination: str, tenant: TenantKeyRef, document_id: uuid.UUID, wrapped: bytes
    ) -> bytes:
        """`ReEncrypt` inside KMS: the data key never leaves it in plaintext."""
        context = encryption_context(tenant.tenant_id, document_id)
        what = f"data key of document {document_id} (tenant {tenant.tenant_id})"
        try:
            response = self._client.re_encrypt(
                CiphertextBlob=wrapped,
                SourceKeyId=source,
                SourceEncryptionContext=context,
                DestinationKeyId=destination,
                DestinationEncryptionContext=context,
            )
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in _KMS_DECRYPTION_ERRORS:
                raise DecryptionError(f"{what}: KMS refused the ciphertext ({code})") from None
            raise
        if not kms_key_matches(destination, response.get("KeyId", "")):
            raise DecryptionError(f"{what}: not re-encrypted under the tenant's current KMS key")
        return response["CiphertextBlob"]

    def rotate_tenant_key(self, tenant: TenantKeyRef) -> TenantKeyRef:
        current = self._key_id(tenant)
        key_arn = self._create_key(
            tenant.tenant_id,
            lambda key_id: self._client.update_alias(AliasName=kms_alias(tenant.tenant_id), TargetKeyId=key_id),
        )
        return TenantKeyRef(
            tenant_id=tenant.tenant_id, kms_key_id=key_arn, wrapped_key=None, previous_kms_key_id=current
        )

    def retire_key(self, key_id: str, pending_days: int = KMS_MIN_PENDING_WINDOW_DAYS) -> None:
        """Schedule deletion of a key no longer used (a rotated-away key, a destroyed tenant's key); idempotent."""
        # ScheduleKeyDeletion acts in the caller's account only, where the bare key id names the same key as its ARN.
        bare = key_id.rsplit(":key/", 1)[-1]
        try:
            self._client.schedule_key_deletion(KeyId=bare, PendingWindowInDays=pending_days)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code not in ("KMSInvalidStateException", "NotFoundException"):  # already pending deletion, or gone
                raise

    def retire_previous_key(self, tenant: TenantKeyRef) -> None:
        if tenant.previous_kms_key_id:
            self.retire_key(tenant.previous_kms_key_id, KMS_MAX_PENDING_WINDOW_DAYS)

    def destroy_tenant_key(self, tenant: TenantKeyRef) -> list[str]:
        keys = [key for key in (tenant.kms_key_id, tenant.previous_kms_key_id) if key]
        for key in keys:
            self.retire_key(key)
        try:
            self._client.delete_alias(AliasName=kms_alias(tenant.tenant_id))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code", "") != "NotFoundException":
                raise
        return keys

    def _decrypt(self, key_id: str, tenant: TenantKeyRef, document_id: uuid.UUID, wrapped: bytes) -> bytes:
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

    def wrap_secret(self, tenant: TenantKeyRef, secret: bytes, purpose: str) -> bytes:
        """A 32-byte tenant secret encrypted (`Encrypt`) under the tenant's key, context `{"tenant_id", "purpose"}`."""
        context = {"tenant_id": str(tenant.tenant_id), "purpose": purpose}
        return self._client.encrypt(KeyId=self._key_id(tenant), Plaintext=secret, EncryptionContext=context)[
            "CiphertextBlob"
        ]

    def unwrap_secret(self, tenant: TenantKeyRef, wrapped: bytes, purpose: str) -> bytes:
        """A secret from `wrap_secret`, under the tenant's current key or else its previous one."""
        keys = [key for key in (self._key_id(tenant), tenant.previous_kms_key_id) if key]
        context = {"tenant_id": str(tenant.tenant_id), "purpose": purpose}
        what = f"{purpose} secret of tenant {tenant.tenant_id}"
        for key_id in keys:
            try:
                response = self._client.decrypt(
                    CiphertextBlob=wrapped,
                    KeyId=key_id,
                    EncryptionContext=context,
                    EncryptionAlgorithm="SYMMETRIC_DEFAULT",
                )
            except ClientError as error:
                if error.response.get("Error", {}).get("Code", "") not in _KMS_DECRYPTION_ERRORS:
                    raise
                continue
            if not kms_key_matches(key_id, response.get("KeyId", "")) or len(response["Plaintext"]) != KEY_BYTES:
                raise DecryptionError(f"{what}: not a secret of the tenant's KMS key")
            return response["Plaintext"]
        raise DecryptionError(f"{what}: KMS refused the ciphertext under the tenant's keys")


def decode_master_key(value: str, name: str = "PHIVAULT_MASTER_KEY") -> bytes:
    """Decode a base64 (standard or URL-safe, padding optional) master key of exactly 32 bytes."""
    text = "".join(value.split())
    text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{name} must be base64 (standard or URL-safe) of 32 random bytes") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(f"{name} must decode to exactly {KEY_BYTES} bytes, got {len(raw)}")
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


def load_old_master_key(settings: Settings) -> bytes | None:
    """`PHIVAULT_OLD_MASTER_KEY`, the fallback for unwrapping while the master key is rotated; None when unset."""
    if settings.old_master_key is None:
        return None
    return decode_master_key(settings.old_master_key.get_secret_value(), "PHIVAULT_OLD_MASTER_KEY")


def key_provider_from_settings(settings: Settings) -> KeyProvider:
    if settings.key_provider == "aws-kms":
        return KmsKeyProvider(kms_client(settings))
    return LocalKeyProvider(load_master_key(settings), load_old_master_key(settings))
