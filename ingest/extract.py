"""Turn a stored document's bytes into text sections for chunking.

Runs in the worker on content that `ingest.detect` already accepted, but the limits are enforced
again: settings may have changed since upload, and the bytes are still hostile input. Every failure
is a `ContentError` whose message never quotes document text or the filename.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import docx
import html2text
from docx.table import Table
from docx.text.paragraph import Paragraph

from core.settings import Settings
from ingest.formats import (
    CSV,
    DOCX,
    HTML,
    JSON,
    MARKDOWN,
    PDF,
    TEXT,
    ContentError,
    Section,
    decode_text,
    open_pdf,
    zip_limit_violation,
)

_LINE_BREAKS = re.compile(r"\r\n?|[\x0b\x0c]")
# PostgreSQL text cannot hold NUL and UTF-8 cannot encode lone surrogates (broken PDF font maps
# produce both); other C0 controls are noise to the embedder.
_UNSAFE_CHARS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\ud800-\udfff]")
_ATX_HEADING = re.compile(r"^ {0,3}#{1,6}(?:[ \t]+(?P<text>.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(?P<marker>```|~~~)")
_WORD_HEADING_STYLE = re.compile(r"^(?:Heading \d|Title)$")


@dataclass(frozen=True)
class ExtractionLimits:
    max_pages: int
    max_chars: int
    max_zip_uncompressed_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ExtractionLimits:
        return cls(
            max_pages=settings.max_pages,
            max_chars=settings.max_extracted_chars,
            max_zip_uncompressed_bytes=settings.max_zip_uncompressed_bytes,
        )


def extract_sections(data: bytes, content_type: str, limits: ExtractionLimits) -> list[Section]:
    """Extract the text of a document of `content_type` (one of `ingest.detect.SUPPORTED_TYPES`).

    PDFs give one section per page; DOCX, HTML and Markdown one section per heading, with the text
    before the first heading in a section without one; other text types a single section. Sections
    whose text is only whitespace are dropped. Raises `ContentError` (`unsupported_content`,
    `encrypted_pdf`, `corrupt_file`, `too_many_pages`, `too_large`, `no_text`).
    """
    sections = _SectionCollector(limits.max_chars)
    if content_type == PDF:
        _extract_pdf(data, limits, sections)
    elif content_type == DOCX:
        _extract_docx(data, limits, sections)
    elif content_type == HTML:
        _split_markdown(_html_to_markdown(_decode(data)), sections)
    elif content_type == MARKDOWN:
        _split_markdown(_decode(data), sections)
    elif content_type in (TEXT, CSV, JSON):
        sections.add(_decode(data))
    else:
        raise ContentError("unsupported_content", "This content type cannot be processed.")
    return sections.finish()


class _SectionCollector:
    """Cleans and collects sections, enforcing the character budget as text arrives so a huge
    document stops early instead of being extracted in full first."""

    def __init__(self, max_chars: int) -> None:
        self._max_chars = max_chars
        self._chars = 0
        self._sections: list[Section] = []

    def add(self, text: str, *, page: int | None = None, heading: str | None = None) -> None:
        text = _clean(text)
        if not text:
            return
        self._chars += len(text)
        if self._chars > self._max_chars:
            raise ContentError("too_large", f"The document contains more than {self._max_chars} characters of text.")
        self._sections.append(Section(text=text, page=page, heading=_clean(heading or "") or None))

    def finish(self) -> list[Section]:
        if not self._sections:
            raise ContentError(
                "no_text", "No text could be extracted. Scanned documents and images are not supported (no OCR)."
            )
        return self._sections


def _clean(text: str) -> str:
    return _UNSAFE_CHARS.sub("", _LINE_BREAKS.sub("\n", text)).strip()


def _decode(data: bytes) -> str:
    text = decode_text(data)
    if text is None:
        raise ContentError("unsupported_content", "The document is not readable text.")
    return text


def _extract_pdf(data: bytes, limits: ExtractionLimits, sections: _SectionCollector) -> None:
    reader = open_pdf(io.BytesIO(data), limits.max_pages)
    for number, page in enumerate(reader.pages, start=1):
        try:
            text = page.extract_text()
        except Exception as exc:  # pypdf raises many exception types on malformed content streams
            raise ContentError("corrupt_file", f"Page {number} of the PDF could not be read.") from exc
        sections.add(text, page=number)


def _extract_docx(data: bytes, limits: ExtractionLimits, sections: _SectionCollector) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            violation = zip_limit_violation(archive, max_uncompressed_bytes=limits.max_zip_uncompressed_bytes)
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise ContentError("corrupt_file", "The Word document could not be read; it may be damaged.") from exc
    if violation is not None:
        raise ContentError("too_large", violation)
    try:
        blocks = list(docx.Document(io.BytesIO(data)).iter_inner_content())
        heading: str | None = None
        body: list[str] = []
        for block in blocks:
            if isinstance(block, Table):
                body.append(_table_text(block))
            elif _is_heading(block):
                sections.add("\n".join(body), heading=heading)
                heading, body = block.text, []
            else:
                body.append(block.text)
        sections.add("\n".join(body), heading=heading)
    except ContentError:
        raise
    except Exception as exc:  # python-docx and lxml raise many exception types on malformed parts
        raise ContentError("corrupt_file", "The Word document could not be read; it may be damaged.") from exc


def _is_heading(paragraph: Paragraph) -> bool:
    style = paragraph.style
    return style is not None and style.name is not None and bool(_WORD_HEADING_STYLE.match(style.name))


def _table_text(table: Table) -> str:
    """One line per row with the non-empty cells separated by " | "; a nested table is inlined in its cell."""
    rows: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            if cell is previous:  # a horizontally merged cell is repeated once per grid column it spans
                continue
            previous = cell
            text = " ".join(part for part in _cell_parts(cell.iter_inner_content()) if part)
            if text:
                cells.append(text)
        if cells:
            rows.append(" | ".join(cells))
    return "\n".join(rows)


def _cell_parts(blocks: Iterable[Paragraph | Table]) -> Iterator[str]:
    for block in blocks:
        yield (_table_text(block) if isinstance(block, Table) else block.text).strip()


def _html_to_markdown(html: str) -> str:
    converter = html2text.HTML2Text()
    converter.ignore_links = True
    converter.ignore_images = True
    converter.ignore_emphasis = True
    converter.unicode_snob = True
    converter.body_width = 0
    try:
        return converter.handle(html)
    except Exception as exc:  # html.parser raises AssertionError on some malformed markup
        raise ContentError("corrupt_file", "The HTML document could not be parsed.") from exc


def _split_markdown(text: str, sections: _SectionCollector) -> None:
    """Split at ATX headings (`# Title`), ignoring `#` lines inside fenced code blocks."""
    heading: str | None = None
    body: list[str] = []
    fence: str | None = None
    for line in text.splitlines():
        fence_match = _FENCE.match(line)
        heading_match = None if fence is not None else _ATX_HEADING.match(line)
        if fence_match is not None:
            marker = fence_match.group("marker")
            fence = marker if fence is None else (None if marker == fence else fence)
        if heading_match is not None:
            sections.add("\n".join(body), heading=heading)
            heading, body = heading_match.group("text"), []
        else:
            body.append(line)
    sections.add("\n".join(body), heading=heading)
