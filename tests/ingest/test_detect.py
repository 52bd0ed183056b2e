"""Upload detection: the type comes from the bytes, never the name, and hostile files are refused."""

from __future__ import annotations

import gzip
import io
import json
import unicodedata
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pypdf import PdfReader

from api.errors import status_of
from core.settings import Settings
from ingest.detect import RejectedUpload, UploadLimits, inspect_upload, sanitize_filename
from ingest.formats import CSV, DOCX, HTML, JSON, MARKDOWN, PDF, SUPPORTED_TYPES, TEXT, decode_text
from tests.sample_files import MIB, make_docx, make_docx_bomb, make_encrypted_pdf, make_pdf

LIMITS = UploadLimits(max_pages=10, max_zip_uncompressed_bytes=100 * MIB)
ELF = b"\x7fELF" + bytes(range(256)) * 10
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def rejection(path: Path, limits: UploadLimits = LIMITS) -> RejectedUpload:
    with pytest.raises(RejectedUpload) as caught:
        inspect_upload(path, limits)
    return caught.value


# Content types


def test_supported_types_are_the_seven_formats() -> None:
    assert SUPPORTED_TYPES == (
        "application/pdf",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "text/plain",
        "text/markdown",
        "text/html",
        "text/csv",
        "application/json",
    )


def test_limits_from_settings_use_the_configured_values() -> None:
    limits = UploadLimits.from_settings(Settings(max_pages=7, max_zip_uncompressed_bytes=1234))
    assert limits == UploadLimits(
        max_pages=7, max_zip_uncompressed_bytes=1234, max_zip_ratio=100, max_zip_entries=10_000
    )


def test_pdf_detected_whatever_the_name(tmp_path: Path) -> None:
    assert inspect_upload(write(tmp_path, "notes.txt", make_pdf(["Hello"])), LIMITS) == PDF


def test_docx_detected(tmp_path: Path) -> None:
    assert inspect_upload(write(tmp_path, "upload.bin", make_docx()), LIMITS) == DOCX


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(b'{"patient": "x", "visits": [1, 2]}', JSON, id="json-object"),
        pytest.param(b'  \n[{"a": 1}, {"a": 2}]\n', JSON, id="json-array"),
        pytest.param(b'\xef\xbb\xbf{"a": "caf\xc3\xa9"}', JSON, id="json-bom"),
        pytest.param(b"<!DOCTYPE html>\n<html><body><p>Hi</p></body></html>", HTML, id="html-doctype"),
        pytest.param(b"  <html lang='en'><p>Hi</p></html>", HTML, id="html-tag"),
        pytest.param(b"<!-- note -->\n<head><title>t</title></head><body>x</body>", HTML, id="html-body"),
        pytest.param(b"name,age,city\nAda,36,London\nAlan,41,Wilmslow\n", CSV, id="csv-comma"),
        pytest.param(b"name;age\nAda;36\nAlan;41\n", CSV, id="csv-semicolon"),
        pytest.param(b"name\tage\nAda\t36\nAlan\t41\n", CSV, id="csv-tab"),
        pytest.param(b"# Visit notes\n\nPatient is well.\n", MARKDOWN, id="md-heading"),
        pytest.param(b"See [the guide](https://example.org/guide) first.\n", MARKDOWN, id="md-link"),
        pytest.param(b"Intro\n```\ncode\n```\n", MARKDOWN, id="md-fence"),
        pytest.param(b"Plan:\n- rest\n- fluids\n- **follow up** in a week\n", MARKDOWN, id="md-list"),
        pytest.param(b"Patient seen today. Feeling better.\nNo new complaints.\n", TEXT, id="text"),
        pytest.param(b"#1 priority is rest\n", TEXT, id="text-hashtag-not-heading"),
        pytest.param(b"42", TEXT, id="json-scalar-is-text"),
        pytest.param(b'{"unterminated": ', TEXT, id="broken-json-is-text"),
        pytest.param(b"a,b\n1,2,3\n", TEXT, id="ragged-rows-not-csv"),
        pytest.param("Le café est très bon, à Noël.\n".encode("latin-1"), TEXT, id="latin-1-text"),
        pytest.param("Größe: 1,80 m\nÜberweisung\n".encode(), TEXT, id="utf-8-text"),
    ],
)
def test_text_types(tmp_path: Path, data: bytes, expected: str) -> None:
    assert inspect_upload(write(tmp_path, "upload.pdf", data), LIMITS) == expected


def test_deeply_nested_json_is_not_a_crash(tmp_path: Path) -> None:
    assert inspect_upload(write(tmp_path, "deep.json", b"[" * 100_000 + b"]" * 100_000), LIMITS) == TEXT


def test_prefix_cut_inside_a_utf8_character_still_decodes_as_utf8(tmp_path: Path) -> None:
    data = b"x" + ("é" * 40_000).encode()  # the 64 KiB prefix ends on the first byte of an "é"
    assert decode_text(data[: 64 * 1024], complete=False) == "x" + "é" * 32_767
    assert decode_text(data[: 64 * 1024]) != "x" + "é" * 32_767
    assert inspect_upload(write(tmp_path, "big.txt", data), LIMITS) == TEXT


def test_latin1_text_decodes_as_windows_1252() -> None:
    text = "Le café est très bon. Une naïve résumé à Noël, garçon façade.\n"
    assert decode_text(text.encode("latin-1")) == text
    assert decode_text(text.encode("cp1252")) == text


def test_large_json_is_parsed_whole(tmp_path: Path) -> None:
    data = json.dumps([{"n": index, "note": "x" * 50} for index in range(5000)]).encode()
    assert len(data) > 64 * 1024
    assert inspect_upload(write(tmp_path, "big.json", data), LIMITS) == JSON


# Rejections


def test_empty_file(tmp_path: Path) -> None:
    error = rejection(write(tmp_path, "empty.pdf", b""))
    assert (error.code, status_of(error)) == ("empty_file", 422)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(ELF, id="elf"),
        pytest.param(PNG, id="png"),
        pytest.param(b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff", id="pe"),
        pytest.param(gzip.compress(b"hello"), id="gzip"),
        pytest.param(b"GIF89a\x01\x00\x01\x00\x80\x00\x00", id="gif"),
        pytest.param(bytes(range(128, 256)) * 40, id="undecodable"),
        pytest.param(b"header\x00\x01\x00" * 20, id="nul-bytes-in-valid-utf8"),
    ],
)
def test_binary_is_unsupported_even_named_pdf(tmp_path: Path, data: bytes) -> None:
    error = rejection(write(tmp_path, "report.pdf", data))
    assert (error.code, status_of(error)) == ("unsupported_content", 415)


def test_encrypted_pdf(tmp_path: Path) -> None:
    error = rejection(write(tmp_path, "a.pdf", make_encrypted_pdf()))
    assert (error.code, status_of(error)) == ("encrypted_pdf", 422)


def test_corrupt_pdf(tmp_path: Path) -> None:
    error = rejection(write(tmp_path, "a.pdf", b"%PDF-1.4\n" + b"SECRET-PHI garbage " * 20))
    assert (error.code, status_of(error)) == ("corrupt_file", 422)
    assert "SECRET" not in error.message


def test_too_many_pages(tmp_path: Path) -> None:
    path = write(tmp_path, "a.pdf", make_pdf(["one", "two", "three"]))
    assert inspect_upload(path, UploadLimits(max_pages=3, max_zip_uncompressed_bytes=MIB)) == PDF
    error = rejection(path, UploadLimits(max_pages=2, max_zip_uncompressed_bytes=MIB))
    assert (error.code, status_of(error)) == ("too_many_pages", 422)


def test_zip_bomb_by_total_size(tmp_path: Path) -> None:
    limits = UploadLimits(max_pages=10, max_zip_uncompressed_bytes=MIB, max_zip_ratio=1_000_000)
    error = rejection(write(tmp_path, "a.docx", make_docx_bomb()), limits)
    assert (error.code, status_of(error)) == ("zip_bomb", 422)


def test_zip_bomb_by_ratio(tmp_path: Path) -> None:
    path = write(tmp_path, "a.docx", make_docx_bomb())
    assert (
        inspect_upload(path, UploadLimits(max_pages=10, max_zip_uncompressed_bytes=100 * MIB, max_zip_ratio=10_000))
        == DOCX
    )
    error = rejection(path, UploadLimits(max_pages=10, max_zip_uncompressed_bytes=100 * MIB))
    assert (error.code, status_of(error)) == ("zip_bomb", 422)


def test_zip_bomb_by_entry_count(tmp_path: Path) -> None:
    path = write(tmp_path, "a.docx", make_docx())
    entries = len(zipfile.ZipFile(path).infolist())
    assert (
        inspect_upload(path, UploadLimits(max_pages=10, max_zip_uncompressed_bytes=MIB, max_zip_entries=entries))
        == DOCX
    )
    error = rejection(path, UploadLimits(max_pages=10, max_zip_uncompressed_bytes=MIB, max_zip_entries=entries - 1))
    assert (error.code, status_of(error)) == ("zip_bomb", 422)


def test_zip_that_is_not_docx(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "hello")
    error = rejection(write(tmp_path, "a.docx", buffer.getvalue()))
    assert (error.code, status_of(error)) == ("unsupported_content", 415)


def test_corrupt_zip(tmp_path: Path) -> None:
    error = rejection(write(tmp_path, "a.docx", b"PK\x03\x04" + b"\x01garbage" * 50))
    assert (error.code, status_of(error)) == ("corrupt_file", 422)


def test_too_large_is_answered_413() -> None:
    assert status_of(RejectedUpload("too_large", "Too large.")) == 413


# Filenames


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("../../etc/passwd", "passwd", id="posix-traversal"),
        pytest.param("..\\..\\win.ini", "win.ini", id="windows-traversal"),
        pytest.param("a\x00b\x1fc.txt", "abc.txt", id="controls"),
        pytest.param("\u202eevil.txt", "evil.txt", id="rtl-override"),
        pytest.param("  .hidden  report\t.pdf ", "hidden report.pdf", id="dots-and-whitespace"),
        pytest.param("cafe\u0301.txt", "caf\u00e9.txt", id="nfc"),
        pytest.param("", "document", id="empty"),
        pytest.param(None, "document", id="none"),
        pytest.param("..", "document", id="dotdot"),
        pytest.param("dir/", "document", id="directory-only"),
    ],
)
def test_sanitize_filename(raw: str | None, expected: str) -> None:
    assert sanitize_filename(raw) == expected


def test_long_filename_is_bounded_and_keeps_extension() -> None:
    assert sanitize_filename("a" * 1000 + ".pdf") == "a" * 251 + ".pdf"
    assert sanitize_filename("b" * 1000) == "b" * 255
    assert sanitize_filename("report.final.docx", max_length=10) == "repor.docx"


@given(st.text(), st.integers(min_value=1, max_value=300))
def test_sanitized_filenames_are_always_safe(raw: str, max_length: int) -> None:
    name = sanitize_filename(raw, max_length)
    assert 0 < len(name) <= max_length
    assert "/" not in name
    assert "\\" not in name
    assert not any(unicodedata.category(char).startswith("C") for char in name)
    assert not name.startswith((".", " "))
    assert name == name.strip()
    assert sanitize_filename(name, max_length) == name


def test_generated_pdf_is_strictly_valid() -> None:
    reader = PdfReader(io.BytesIO(make_pdf(["first (page)", "second"])), strict=True)
    assert [page.extract_text() for page in reader.pages] == ["first (page)", "second"]
