"""Decide what an upload is from its bytes alone, and refuse what we cannot or should not process.

The client's filename and Content-Type header are never trusted: both are attacker-controlled and
a mislabelled file must not reach a parser chosen for another format. Checks here are cheap and run
in the API process before anything is stored; `ingest.extract` repeats the limits it relies on.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

from core.settings import Settings
from ingest.formats import (
    CSV,
    DEFAULT_MAX_ZIP_ENTRIES,
    DEFAULT_MAX_ZIP_RATIO,
    DOCX,
    HTML,
    JSON,
    MARKDOWN,
    PDF,
    TEXT,
    ContentError,
    decode_text,
    open_pdf,
    zip_limit_violation,
)

_PDF_MAGIC = b"%PDF-"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or the end record of an empty archive
_DOCX_REQUIRED_MEMBERS = ("[Content_Types].xml", "word/document.xml")
_TEXT_PREFIX_BYTES = 64 * 1024
_HTML_WINDOW_CHARS = 1024
_CSV_SAMPLE_LINES = 50
_MARKDOWN_MIN_MARKER_LINES = 3
_MAX_EXTENSION_CHARS = 16
_DEFAULT_FILENAME = "document"

_HTML_TAG = re.compile(r"<(?:html|head|body)[\s>]")
_MARKDOWN_BLOCK = re.compile(r"^(?:#{1,6} \S| {0,3}(?:```|~~~))", re.MULTILINE)
_MARKDOWN_LINK = re.compile(r"\[[^\]\n]+\]\([^)\s]+\)")
_MARKDOWN_MARKER = re.compile(r"^\s*(?:[-*+]|\d+[.)])[ \t]+\S|\*\*[^*\n]+\*\*|__[^_\n]+__")
_WHITESPACE_RUN = re.compile(r"\s+")
_LEADING_DOTS_AND_SPACES = re.compile(r"^[\s.]+")


class RejectedUpload(ContentError):
    """An upload refused at the door, before anything is stored.

    `too_large` when it passes the size limit; `unsupported_content` when we do not handle the kind of
    file at all; otherwise it is a kind we handle but this file is unusable (`empty_file`,
    `corrupt_file`, `encrypted_pdf`, `too_many_pages`, `zip_bomb`). `api.errors` maps these to 413, 415
    and 422.
    """


@dataclass(frozen=True)
class UploadLimits:
    max_pages: int
    max_zip_uncompressed_bytes: int
    max_zip_ratio: int = DEFAULT_MAX_ZIP_RATIO
    max_zip_entries: int = DEFAULT_MAX_ZIP_ENTRIES

    @classmethod
    def from_settings(cls, settings: Settings) -> UploadLimits:
        return cls(max_pages=settings.max_pages, max_zip_uncompressed_bytes=settings.max_zip_uncompressed_bytes)


def inspect_upload(path: Path, limits: UploadLimits) -> str:
    """Return the content type of the file at `path`, judged from its content only.

    Raises `RejectedUpload` for anything we will not accept; messages never quote the content.
    """
    if path.stat().st_size == 0:
        raise RejectedUpload("empty_file", "The uploaded file is empty.")
    with path.open("rb") as handle:
        head = handle.read(_TEXT_PREFIX_BYTES)
        complete = not handle.read(1)
    if head.startswith(_PDF_MAGIC):
        _check_pdf(path, limits)
        return PDF
    if head.startswith(_ZIP_MAGICS):
        _check_docx(path, limits)
        return DOCX
    # Executables, images, archives and other binary formats almost always carry NUL bytes near the start;
    # what is left that is not text fails to decode. Both are refused rather than guessed at.
    text = None if b"\x00" in head else decode_text(head, complete=complete)
    if text is None:
        raise RejectedUpload(
            "unsupported_content", "Unsupported file type: upload a PDF, DOCX, text, Markdown, HTML, CSV or JSON file."
        )
    return _classify_text(text, path, complete=complete)


def sanitize_filename(raw: str | None, max_length: int = 255) -> str:
    """A display-safe version of a client-supplied filename, at most `max_length` characters.

    Keeps only the last path component (either separator), drops control, format and surrogate
    characters (NUL, CR/LF, bidi overrides, lone surrogates...: so also all PostgreSQL could not store),
    normalises to NFC, collapses whitespace and removes leading dots so the name can never be hidden,
    relative or a header injection. Truncation keeps a short
    alphanumeric extension. Falls back to "document".
    """
    if max_length < 1:
        raise ValueError("max_length must be at least 1")
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(char for char in name if not unicodedata.category(char).startswith("C"))
    name = unicodedata.normalize("NFC", name)
    name = _LEADING_DOTS_AND_SPACES.sub("", _WHITESPACE_RUN.sub(" ", name)).rstrip()
    if len(name) > max_length:
        stem, dot, extension = name.rpartition(".")
        if dot and stem and extension.isalnum() and len(extension) <= min(_MAX_EXTENSION_CHARS, max_length - 2):
            name = stem[: max_length - len(extension) - 1].rstrip() + "." + extension
        else:
            name = name[:max_length].rstrip()
    return name or _DEFAULT_FILENAME[:max_length]


def _check_pdf(path: Path, limits: UploadLimits) -> None:
    try:
        open_pdf(path, limits.max_pages)
    except ContentError as exc:
        raise RejectedUpload(exc.code, exc.message) from exc


def _check_docx(path: Path, limits: UploadLimits) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            violation = zip_limit_violation(
                archive,
                max_uncompressed_bytes=limits.max_zip_uncompressed_bytes,
                max_ratio=limits.max_zip_ratio,
                max_entries=limits.max_zip_entries,
            )
            names = set(archive.namelist())
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise RejectedUpload("corrupt_file", "The archive could not be read; it may be damaged.") from exc
    if violation is not None:
        raise RejectedUpload("zip_bomb", violation)
    if not names.issuperset(_DOCX_REQUIRED_MEMBERS):
        raise RejectedUpload("unsupported_content", "Unsupported archive: only Word documents (DOCX) are accepted.")


def _classify_text(text: str, path: Path, *, complete: bool) -> str:
    """JSON, HTML, CSV, Markdown or plain text, in that order of precedence (first match wins)."""
    start = text.lstrip("\ufeff \t\r\n")
    if start[:1] in ("{", "[") and _is_json(path):
        return JSON
    window = start[:_HTML_WINDOW_CHARS].lower()
    if window.startswith(("<!doctype html", "<html")) or _HTML_TAG.search(window):
        return HTML
    if _looks_like_csv(text, complete=complete):
        return CSV
    if _looks_like_markdown(text):
        return MARKDOWN
    return TEXT


def _is_json(path: Path) -> bool:
    """Whether the whole file parses as a JSON object or array (RFC 8259: UTF-8, BOM tolerated)."""
    try:
        value = json.loads(path.read_bytes())
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return False
    return isinstance(value, dict | list)


def _looks_like_csv(text: str, *, complete: bool) -> bool:
    """At least two non-blank rows, all with the same number (>= 2) of fields for a sniffed delimiter."""
    lines = text.splitlines()
    if not complete:
        lines = lines[:-1]  # the prefix may end mid-line
    lines = [line for line in lines[:_CSV_SAMPLE_LINES] if line.strip()]
    if len(lines) < 2:
        return False
    sample = "\n".join(lines)
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
        widths = {len(row) for row in csv.reader(io.StringIO(sample), dialect) if row}
    except csv.Error:
        return False
    return len(widths) == 1 and widths.pop() >= 2


def _looks_like_markdown(text: str) -> bool:
    """Any ATX heading, code fence or inline link, or list/emphasis markers on several lines."""
    if _MARKDOWN_BLOCK.search(text) or _MARKDOWN_LINK.search(text):
        return True
    marked = sum(1 for line in text.splitlines() if _MARKDOWN_MARKER.search(line))
    return marked >= _MARKDOWN_MIN_MARKER_LINES
