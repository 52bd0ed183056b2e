"""Extraction: exact sections per format, and hostile or unusable content mapped to stable error codes."""

from __future__ import annotations

import io
import zipfile

import docx
import pytest

from core.settings import Settings
from ingest.extract import ExtractionLimits, extract_sections
from ingest.formats import CSV, DOCX, HTML, JSON, MARKDOWN, PDF, TEXT, ContentError, Section
from tests.sample_files import MIB, make_blank_pdf, make_docx, make_docx_bomb, make_encrypted_pdf, make_pdf

LIMITS = ExtractionLimits(max_pages=10, max_chars=100_000, max_zip_uncompressed_bytes=100 * MIB)


def failure(data: bytes, content_type: str, limits: ExtractionLimits = LIMITS) -> ContentError:
    with pytest.raises(ContentError) as caught:
        extract_sections(data, content_type, limits)
    return caught.value


def test_limits_from_settings_use_the_configured_values() -> None:
    settings = Settings(max_pages=3, max_extracted_chars=99, max_zip_uncompressed_bytes=1234)
    assert ExtractionLimits.from_settings(settings) == ExtractionLimits(
        max_pages=3, max_chars=99, max_zip_uncompressed_bytes=1234
    )


# PDF


def test_pdf_gives_one_section_per_page_with_page_numbers() -> None:
    sections = extract_sections(make_pdf(["First page text", "", "Third (page) text"]), PDF, LIMITS)
    assert sections == [Section("First page text", page=1), Section("Third (page) text", page=3)]


def test_scanned_pdf_has_no_text() -> None:
    error = failure(make_blank_pdf(pages=2), PDF)
    assert error.code == "no_text"
    assert "OCR" in error.message


def test_encrypted_pdf() -> None:
    assert failure(make_encrypted_pdf(), PDF).code == "encrypted_pdf"


def test_corrupt_pdf_does_not_echo_content() -> None:
    error = failure(b"%PDF-1.4\n" + b"SECRET-PHI garbage " * 20, PDF)
    assert error.code == "corrupt_file"
    assert "SECRET" not in error.message


def test_pdf_with_too_many_pages() -> None:
    data = make_pdf(["one", "two", "three"])
    assert (
        len(extract_sections(data, PDF, ExtractionLimits(max_pages=3, max_chars=100, max_zip_uncompressed_bytes=1)))
        == 3
    )
    error = failure(data, PDF, ExtractionLimits(max_pages=2, max_chars=100, max_zip_uncompressed_bytes=1))
    assert error.code == "too_many_pages"


def test_pdf_text_beyond_the_character_budget_is_too_large() -> None:
    data = make_pdf(["SECRET-PHI " * 10, "more text"])
    assert (
        len(extract_sections(data, PDF, ExtractionLimits(max_pages=10, max_chars=120, max_zip_uncompressed_bytes=1)))
        == 2
    )
    error = failure(data, PDF, ExtractionLimits(max_pages=10, max_chars=100, max_zip_uncompressed_bytes=1))
    assert error.code == "too_large"
    assert "SECRET" not in error.message


# DOCX


def test_docx_sections_follow_headings_and_include_tables() -> None:
    assert extract_sections(make_docx(), DOCX, LIMITS) == [
        Section("Intro before any heading."),
        Section("Lisinopril 10 mg daily.\nDrug | Dose\nMetformin | 500 mg", heading="Medications"),
        Section("Penicillin.", heading="Allergies"),
    ]


def test_docx_merged_and_nested_table_cells_appear_once() -> None:
    document = docx.Document()
    table = document.add_table(rows=2, cols=3)
    merged = table.cell(0, 0).merge(table.cell(0, 1))
    merged.text = "Span"
    table.cell(0, 2).text = "Right"
    table.cell(1, 0).text = "Outer"
    table.cell(1, 0).add_table(rows=1, cols=2).cell(0, 1).text = "Inner"
    buffer = io.BytesIO()
    document.save(buffer)
    assert extract_sections(buffer.getvalue(), DOCX, LIMITS) == [Section("Span | Right\nOuter Inner")]


def test_docx_zip_limits_are_checked_again_before_parsing() -> None:
    bomb = failure(make_docx_bomb(), DOCX)  # 5 MiB of zeros deflated about 1000:1
    assert bomb.code == "too_large"
    stored = make_docx_bomb(zeros=2 * MIB, compression=zipfile.ZIP_STORED)
    assert len(extract_sections(stored, DOCX, LIMITS)) == 3
    oversized = failure(stored, DOCX, ExtractionLimits(max_pages=10, max_chars=100_000, max_zip_uncompressed_bytes=MIB))
    assert oversized.code == "too_large"


def test_corrupt_docx() -> None:
    assert failure(b"PK\x03\x04" + b"\x01garbage" * 50, DOCX).code == "corrupt_file"


def test_docx_without_text() -> None:
    buffer = io.BytesIO()
    docx.Document().save(buffer)
    assert failure(buffer.getvalue(), DOCX).code == "no_text"


# HTML and Markdown


def test_html_sections_at_headings_without_links_images_or_scripts() -> None:
    html = (
        "<!doctype html><html><head><title>Title</title><style>p{color:red}</style>"
        "<script>var secret = 1;</script></head><body><p>Intro &amp; more</p>"
        "<h1>Findings</h1><p>See <a href='https://x.example/'>the chart</a> <img src='a.png' alt='scan'> "
        "<b>now</b>.</p><h2>Plan</h2><ul><li>Rest</li></ul></body></html>"
    )
    assert extract_sections(html.encode(), HTML, LIMITS) == [
        Section("Intro & more"),
        Section("See the chart now.", heading="Findings"),
        Section("* Rest", heading="Plan"),
    ]


def test_malformed_html_is_corrupt_not_a_crash() -> None:
    assert failure(b"<p>x</p><![foo[ bar", HTML).code == "corrupt_file"


def test_markdown_splits_at_atx_headings_outside_code_fences() -> None:
    markdown = (
        "Preamble line.\n\n"
        "# Visit ##\n"
        "Patient is well.\n"
        "```bash\n"
        "# not a heading\n"
        "```\n"
        "## Plan\n"
        "- rest\n"
        "#hashtag stays in the body\n"
        "###\n"
        "After an empty heading.\n"
    )
    assert extract_sections(markdown.encode(), MARKDOWN, LIMITS) == [
        Section("Preamble line."),
        Section("Patient is well.\n```bash\n# not a heading\n```", heading="Visit"),
        Section("- rest\n#hashtag stays in the body", heading="Plan"),
        Section("After an empty heading."),
    ]


# Plain text, CSV, JSON


@pytest.mark.parametrize(
    ("data", "content_type", "expected"),
    [
        pytest.param(
            "Le café est très bon, à Noël.\n".encode("latin-1"), TEXT, "Le café est très bon, à Noël.", id="latin-1"
        ),
        pytest.param("\ufeffGröße\r\nÜberweisung\r\n".encode(), TEXT, "Größe\nÜberweisung", id="utf-8-bom-crlf"),
        pytest.param(b"a\x00b\x07c\td", TEXT, "abc\td", id="controls-removed"),
        pytest.param(b"name,age\nAda,36\n", CSV, "name,age\nAda,36", id="csv"),
        pytest.param(b'{"a": [1, 2]}', JSON, '{"a": [1, 2]}', id="json"),
    ],
)
def test_text_types_are_one_section(data: bytes, content_type: str, expected: str) -> None:
    assert extract_sections(data, content_type, LIMITS) == [Section(expected)]


def test_whitespace_only_text_has_no_text() -> None:
    assert failure(b" \n\t\r\n", TEXT).code == "no_text"


def test_text_beyond_the_character_budget_is_too_large() -> None:
    limits = ExtractionLimits(max_pages=1, max_chars=10, max_zip_uncompressed_bytes=1)
    assert extract_sections(b"0123456789", TEXT, limits) == [Section("0123456789")]
    error = failure(b"SECRET-PHI!", TEXT, limits)
    assert error.code == "too_large"
    assert "SECRET" not in error.message


def test_undecodable_text_is_unsupported() -> None:
    assert failure(bytes(range(128, 256)) * 40, TEXT).code == "unsupported_content"


def test_unknown_content_type_is_unsupported() -> None:
    assert failure(b"\x89PNG\r\n\x1a\n", "image/png").code == "unsupported_content"
