"""`LocalEncryptedStore`: envelope-encrypted files on local disk, one per object.

Files are written to a temporary file in the same directory and published with `os.replace`, then the directory is
fsynced; files are 0600 and directories 0700.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from core.keys import KeyProvider, TenantKeyRef
from core.storage.envelope import EnvelopeSealer, copy_rest, open_envelope, rewrapped_header
from core.storage.objects import (
    DEFAULT_CHUNK_SIZE,
    ObjectNotFoundError,
    StoredObject,
    check_chunk_size,
    document_id_of,
    object_key,
    tenant_prefix,
)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalEncryptedStore:
    """Envelope-encrypted files under `root`, one per object (format in `core.storage.envelope`)."""

    def __init__(self, root: Path, keys: KeyProvider) -> None:
        self.root = root
        self.keys = keys

    def _path(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> Path:
        return self.root / object_key(tenant_id, document_id)

    def _ensure_dir(self, directory: Path) -> None:
        missing: list[Path] = []
        current = directory
        while not current.is_dir():
            missing.append(current)
            current = current.parent
        for path in reversed(missing):
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                continue
            os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask

    def _publish(self, path: Path, chunks: Iterator[bytes]) -> None:
        """Write `chunks` to a private temporary file, fsync it, then replace `path` with it (all or nothing)."""
        self._ensure_dir(path.parent)
        fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".upload-", suffix=".tmp")  # 0600, O_EXCL
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    def put(self, tenant: TenantKeyRef, document_id: uuid.UUID, source: BinaryIO) -> StoredObject:
        key = object_key(tenant.tenant_id, document_id)
        sealer = EnvelopeSealer(self.keys, tenant, document_id)
        source.seek(0)
        self._publish(self.root / key, sealer.chunks(source))
        return StoredObject(key=key, size_bytes=sealer.plaintext_size, kms_key_id=tenant.kms_key_id)

    def rekey(self, tenant: TenantKeyRef, document_id: uuid.UUID) -> bool:
        path = self._path(tenant.tenant_id, document_id)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise ObjectNotFoundError(f"no object {object_key(tenant.tenant_id, document_id)}") from None
        with handle:
            header = rewrapped_header(handle, self.keys, tenant, document_id)
            if header is None:
                return False
            self._publish(path, itertools.chain([header], copy_rest(handle)))
        return True

    def iter_plaintext(
        self, tenant: TenantKeyRef, document_id: uuid.UUID, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> Iterator[bytes]:
        check_chunk_size(chunk_size)
        path = self._path(tenant.tenant_id, document_id)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - open_envelope closes it
        except FileNotFoundError:
            raise ObjectNotFoundError(f"no object {object_key(tenant.tenant_id, document_id)}") from None
        return open_envelope(handle, self.keys, tenant, document_id, chunk_size)

    def read(self, tenant: TenantKeyRef, document_id: uuid.UUID) -> bytes:
        return b"".join(self.iter_plaintext(tenant, document_id))

    def delete(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> None:
        self._path(tenant_id, document_id).unlink(missing_ok=True)

    def exists(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> bool:
        return self._path(tenant_id, document_id).is_file()

    def document_ids(self, tenant_id: uuid.UUID) -> list[uuid.UUID]:
        directory = self.root / tenant_prefix(tenant_id)
        if not directory.is_dir():
            return []
        found = (document_id_of(path.name) for path in directory.iterdir() if path.is_file())
        return sorted(document_id for document_id in found if document_id is not None)
