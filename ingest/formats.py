"""The document formats PHIVault accepts, and what detection (at upload) and extraction (in the
worker) both need to know about them: their content types, how text is decoded, how a PDF is opened
safely, when a zip archive is unsafe to open, and the sections and errors extraction produces.
"""

from __future__ import annotations

import codecs
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import charset_normalizer
from pypdf import PdfReader

from core.errors import DomainError

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
TEXT = "text/plain"
MARKDOWN = "text/markdown"
HTML = "text/html"
CSV = "text/csv"
JSON = "application/json"
SUPPORTED_TYPES = (PDF, DOCX, TEXT, MARKDOWN, HTML, CSV, JSON)

DEFAULT_MAX_ZIP_RATIO = 100
DEFAULT_MAX_ZIP_ENTRIES = 10_000
# Small members may legitimately compress very well (XML full of repeated tags); only big ones matter.
_RATIO_CHECK_MIN_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Section:
    """A run of text with where it came from: the 1-based page (PDF) and the nearest heading."""

    text: str
    page: int | None = None
    heading: str | None = None


class ContentError(DomainError):
    """A document that cannot be processed, with a stable code and a message a person can act on.

    Codes: `unsupported_content`, `encrypted_pdf`, `no_text`, `too_many_pages`, `corrupt_file`,
    `too_large`. Messages never quote document content.
    """



def decode_text(data: bytes, *, complete: bool = True) -> str | None:
    """Decode bytes that should be text, or return None when no encoding gives plausible text.

    UTF-8 (with or without BOM) is tried first: it is by far the most common and charset_normalizer
    guesses poorly on short samples. `complete=False` marks a prefix cut at an arbitrary byte, so a
    multi-byte sequence split at the end is not an error.
    """
    try:
        return codecs.getincrementaldecoder("utf-8-sig")().decode(data, final=complete)
    except UnicodeDecodeError:
        pass
    matches = charset_normalizer.from_bytes(data)
    best = matches.best()
    if best is None:
        return None
    # Western legacy text is overwhelmingly Windows-1252 (Latin-1's printable superset), but
    # charset_normalizer often ranks an equally clean Central European or Mac code page first.
    for match in matches:
        if match.chaos == best.chaos and "cp1252" in match.could_be_from_charset:
            return str(match)
    return str(best)


def zip_limit_violation(
    archive: zipfile.ZipFile,
    *,
    max_uncompressed_bytes: int,
    max_ratio: int = DEFAULT_MAX_ZIP_RATIO,
    max_entries: int = DEFAULT_MAX_ZIP_ENTRIES,
) -> str | None:
    """Why opening `archive` would be unsafe, judged from its central directory without decompressing.

    Python's zipfile never yields more than a member's declared size, so the declared sizes are a
    sound bound. Returns None when the archive is within limits.
    """
    members = archive.infolist()
    if len(members) > max_entries:
        return f"The archive has more than {max_entries} entries."
    if sum(member.file_size for member in members) > max_uncompressed_bytes:
        return f"The archive expands to more than {max_uncompressed_bytes} bytes."
    for member in members:
        if member.file_size > _RATIO_CHECK_MIN_BYTES and member.file_size > max_ratio * member.compress_size:
            return f"An archive member is compressed more than {max_ratio} to 1."
    return None


def open_pdf(source: Path | BinaryIO, max_pages: int) -> PdfReader:
    """Open a PDF that is readable, unencrypted and at most `max_pages` long, else raise `ContentError`."""
    try:
        reader = PdfReader(source, strict=False)
        encrypted = reader.is_encrypted
        pages = 0 if encrypted else len(reader.pages)
    except Exception as exc:  # pypdf raises many exception types on malformed input, not only PdfReadError
        raise ContentError("corrupt_file", "The PDF could not be read; it may be damaged.") from exc
    if encrypted:
        raise ContentError("encrypted_pdf", "The PDF is password-protected; upload an unencrypted copy.")
    if pages > max_pages:
        raise ContentError("too_many_pages", f"The PDF has more than {max_pages} pages.")
    return reader
