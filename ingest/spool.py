"""Spooling an upload: copy the client's stream to a private temporary file, hashing it on the way.

The size limit is enforced while copying, so an oversized upload never fills the disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ingest.detect import RejectedUpload

COPY_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class SpooledUpload:
    path: Path
    size_bytes: int
    sha256: str


@asynccontextmanager
async def spooled(source: BinaryIO, spool_dir: Path, max_bytes: int) -> AsyncIterator[SpooledUpload]:
    """Copy `source` to a private temporary file, hashing as it goes; removed on exit."""
    upload = await asyncio.to_thread(_spool, source, spool_dir, max_bytes)
    try:
        yield upload
    finally:
        await asyncio.to_thread(upload.path.unlink, missing_ok=True)


def _spool(source: BinaryIO, spool_dir: Path, max_bytes: int) -> SpooledUpload:
    spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(prefix="upload-", dir=spool_dir)
    path = Path(name)
    try:
        size, digest = _copy_and_hash(source, fd, max_bytes)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return SpooledUpload(path=path, size_bytes=size, sha256=digest)


def _copy_and_hash(source: BinaryIO, fd: int, max_bytes: int) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with os.fdopen(fd, "wb") as target:
        while chunk := source.read(COPY_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise RejectedUpload("too_large", f"the file is larger than the limit of {max_bytes} bytes")
            digest.update(chunk)
            target.write(chunk)
    if size == 0:
        raise RejectedUpload("empty_file", "the file is empty")
    return size, digest.hexdigest()
