"""The envelope format: how PHIVault itself encrypts an object (`EnvelopeSealer` writes it, `open_envelope` reads it).

A fresh data key per object comes from the `KeyProvider` (wrapped by the tenant key, bound to tenant and document),
and the content is a sequence of AES-256-GCM segments, so objects of any size stream in constant memory. The local
store and `S3EnvelopeStore` both hold exactly this format.

Envelope format, version 1 (all integers big-endian)::

    header   magic            4 bytes   b"PHV1"
             wrapped_len      2 bytes   uint16, length of the wrapped data key
             wrapped_key      wrapped_len bytes (KeyProvider.generate_data_key(...).wrapped)
    segment  seg_len          4 bytes   uint32, = 12 + len(plaintext) + 16
    (1..n)   nonce            12 bytes  random per segment
             ciphertext||tag  seg_len - 12 bytes, AES-256-GCM under the data key

Every segment but the last holds exactly `SEGMENT_SIZE` (1 MiB) of plaintext; the last holds 0..1 MiB, so an empty
object is one empty final segment. The associated data of segment *i* is::

    tenant_id.bytes (16) || document_id.bytes (16) || i as uint64 (8) || final flag (1: 0x01 last, 0x00 otherwise)

The reader derives *i* from the position and the final flag from "nothing follows this segment", so an object
copied under another tenant's or document's key, segments reordered, dropped, duplicated or appended, or a
truncated object all fail authentication with `DecryptionError`.

A key rotation re-wraps only the header's data key (`rewrapped_header`): the segments stay as they are.

Decryption is streamed: a tampered segment raises in the middle of `iter_plaintext`, after earlier segments were
yielded. Consumers that must not act on partial data (the API streaming a download) treat an exception during
iteration as a failed read.
"""

from __future__ import annotations

import os
import struct
import uuid
from collections.abc import Iterator
from contextlib import closing
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.keys import NONCE_BYTES, TAG_BYTES, DecryptionError, KeyProvider, TenantKeyRef
from core.storage.objects import DEFAULT_CHUNK_SIZE, MIB, ByteSource, check_chunk_size

SEGMENT_SIZE: Final = MIB

MAGIC: Final = b"PHV1"
_WRAPPED_LEN: Final = struct.Struct(">H")
_SEGMENT_LEN: Final = struct.Struct(">I")
_SEGMENT_INDEX: Final = struct.Struct(">Q")
_MIN_SEGMENT: Final = NONCE_BYTES + TAG_BYTES
_MAX_SEGMENT: Final = NONCE_BYTES + SEGMENT_SIZE + TAG_BYTES


def _read_full(source: ByteSource, size: int) -> bytes:
    """Read exactly `size` bytes, fewer only at end of file (raw and socket-like files may return short reads)."""
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        part = source.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def _segment_aad(tenant_id: uuid.UUID, document_id: uuid.UUID, index: int, final: bool) -> bytes:
    return tenant_id.bytes + document_id.bytes + _SEGMENT_INDEX.pack(index) + (b"\x01" if final else b"\x00")


def _header(wrapped: bytes) -> bytes:
    if len(wrapped) > 0xFFFF:
        raise ValueError("wrapped data key too long for the envelope header")
    return MAGIC + _WRAPPED_LEN.pack(len(wrapped)) + wrapped


def read_wrapped_key(source: ByteSource, document_id: uuid.UUID) -> bytes:
    """Read the header from `source` (left just past it) and return the wrapped data key in it."""
    header = _read_full(source, len(MAGIC) + _WRAPPED_LEN.size)
    if len(header) != len(MAGIC) + _WRAPPED_LEN.size or header[: len(MAGIC)] != MAGIC:
        raise DecryptionError(f"document {document_id}: not a PHIVault v1 object")
    (wrapped_len,) = _WRAPPED_LEN.unpack(header[len(MAGIC) :])
    wrapped = _read_full(source, wrapped_len)
    if len(wrapped) != wrapped_len:
        raise DecryptionError(f"document {document_id}: truncated header")
    return wrapped


def rewrapped_header(
    source: ByteSource, keys: KeyProvider, tenant: TenantKeyRef, document_id: uuid.UUID
) -> bytes | None:
    """The header to replace the one in `source` with, its data key under the tenant's current key; None when it
    is under the current key already. `source` is left just past the old header (the segments follow)."""
    rewrapped = keys.rewrap_data_key(tenant, document_id, read_wrapped_key(source, document_id))
    return None if rewrapped is None else _header(rewrapped)


def copy_rest(source: ByteSource, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
    """What is left in `source`, in chunks (the segments after a header, copied unchanged)."""
    while chunk := source.read(chunk_size):
        yield chunk


class EnvelopeSealer:
    """Encrypts one object into the envelope format under a fresh data key, generated when the sealer is made."""

    def __init__(self, keys: KeyProvider, tenant: TenantKeyRef, document_id: uuid.UUID) -> None:
        data_key = keys.generate_data_key(tenant, document_id)
        self._header = _header(data_key.wrapped)
        self._aead = AESGCM(data_key.plaintext)
        self._tenant_id = tenant.tenant_id
        self._document_id = document_id
        self.plaintext_size = 0
        """Plaintext bytes sealed so far; the object's size once `chunks` is exhausted."""

    def chunks(self, source: ByteSource) -> Iterator[bytes]:
        """The header, then one sealed segment per `SEGMENT_SIZE` of `source`, read from its current position."""
        yield self._header
        index = 0
        current = _read_full(source, SEGMENT_SIZE)
        while True:
            following = _read_full(source, SEGMENT_SIZE) if len(current) == SEGMENT_SIZE else b""
            final = not following
            nonce = os.urandom(NONCE_BYTES)
            sealed = self._aead.encrypt(nonce, current, _segment_aad(self._tenant_id, self._document_id, index, final))
            self.plaintext_size += len(current)
            yield _SEGMENT_LEN.pack(NONCE_BYTES + len(sealed)) + nonce + sealed
            if final:
                return
            current = following
            index += 1


def open_envelope(
    source: ByteSource,
    keys: KeyProvider,
    tenant: TenantKeyRef,
    document_id: uuid.UUID,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Iterator[bytes]:
    """The plaintext of the envelope in `source`, in chunks of at most `chunk_size` bytes; takes over `source`.

    The header is read and the data key unwrapped now, so a foreign or damaged object fails at the call rather than
    at the first chunk; the segments are decrypted as they are consumed. `source` is closed when the iterator
    finishes, is closed, or this call fails.
    """
    try:
        check_chunk_size(chunk_size)
        data_key = keys.unwrap_data_key(tenant, document_id, read_wrapped_key(source, document_id))
    except BaseException:
        source.close()
        raise
    return _open_segments(source, AESGCM(data_key), tenant.tenant_id, document_id, chunk_size)


def _open_segments(
    source: ByteSource, aead: AESGCM, tenant_id: uuid.UUID, document_id: uuid.UUID, chunk_size: int
) -> Iterator[bytes]:
    with closing(source):
        index = 0
        prefix = _read_full(source, _SEGMENT_LEN.size)
        while True:
            if len(prefix) != _SEGMENT_LEN.size:
                raise DecryptionError(f"document {document_id}: truncated (segment {index} missing)")
            (length,) = _SEGMENT_LEN.unpack(prefix)
            if not _MIN_SEGMENT <= length <= _MAX_SEGMENT:
                raise DecryptionError(f"document {document_id}: bad length of segment {index}")
            body = _read_full(source, length)
            if len(body) != length:
                raise DecryptionError(f"document {document_id}: truncated (segment {index} cut short)")
            # Look ahead one length prefix: the segment is final exactly when nothing follows it.
            prefix = _read_full(source, _SEGMENT_LEN.size)
            final = not prefix
            aad = _segment_aad(tenant_id, document_id, index, final)
            try:
                plaintext = aead.decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], aad)
            except InvalidTag:
                raise DecryptionError(f"document {document_id}: segment {index} failed authentication") from None
            for start in range(0, len(plaintext), chunk_size):
                yield plaintext[start : start + chunk_size]
            if final:
                return
            index += 1
