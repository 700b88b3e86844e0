"""Documents to markdown: every format keeps its headings and lists; refusals say why (issue #12).

The files are built by ``tests/knowledge/documents.py``; hostile ones are in
``test_convert_hostile.py``.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from io import BytesIO

import pytest

from everos.errors import ConversionFailed, ExtractionEmpty, UnsupportedFormat
from everos.knowledge._convert import CONVERTED_FORMATS, convert_to_markdown, detect_format

from . import documents


def _headings(markdown: str) -> list[tuple[int, str]]:
    return [(len(m.group(1)), m.group(2).strip()) for m in re.finditer(r"^(#{1,6}) (.+)$", markdown, re.MULTILINE)]


def _list_items(markdown: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"^\s*(?:[-*+]|\d+[.)]) (.+)$", markdown, re.MULTILINE)]


@pytest.mark.parametrize(("name", "build"), [
    ("guide.pdf", documents.outline_pdf),
    ("guide.docx", documents.outline_docx),
    ("guide.html", lambda: documents.outline_html().encode()),
    ("guide.epub", documents.outline_epub),
])
def test_headings_keep_their_levels_and_lists_their_items(name: str, build: Callable[[], bytes]) -> None:
    converted = convert_to_markdown(build(), name)
    assert converted.detected_format == name.rsplit(".", 1)[1]
    assert _headings(converted.markdown) == documents.HEADINGS
    items = _list_items(converted.markdown)
    if name.endswith(".pdf"):
        # PDF has no list structure: bullets are recognised by their glyph, numbered lines are
        # kept as text, in order.
        assert items[:2] == documents.LIST_ITEMS[:2]
        assert converted.markdown.index("Check the soil") < converted.markdown.index("Water at the roots")
    else:
        assert items == documents.LIST_ITEMS


def test_slides_become_sections_with_their_bullets() -> None:
    converted = convert_to_markdown(documents.outline_pptx(), "guide.pptx")
    assert converted.detected_format == "pptx"
    assert _headings(converted.markdown) == [(2, "Gardening Guide"), (2, "Soil"), (2, "Watering")]
    assert _list_items(converted.markdown) == documents.LIST_ITEMS


def test_sheets_become_sections_with_a_table_each() -> None:
    converted = convert_to_markdown(documents.outline_xlsx(), "plan.xlsx")
    assert converted.detected_format == "xlsx"
    assert _headings(converted.markdown) == [(2, "Soil"), (2, "Watering")]
    assert "| Task | When |" in converted.markdown
    assert "| Water at the roots | 06:05 |" in converted.markdown


def test_html_drops_scripts_styles_and_keeps_the_title_once() -> None:
    markdown = convert_to_markdown(documents.outline_html().encode(), "page.html").markdown
    assert "tracking" not in markdown and "color: red" not in markdown and "title:" not in markdown
    assert markdown.startswith("# Gardening Guide\n")


def test_an_html_title_becomes_the_heading_when_the_body_has_none() -> None:
    page = b"<html><head><title>Notes &amp; Plans</title></head><body><p>Plant in May.</p></body></html>"
    assert convert_to_markdown(page, "notes.html").markdown == "# Notes & Plans\n\nPlant in May.\n"


def test_html_is_recognised_by_its_start_whatever_the_name() -> None:
    assert detect_format(b"  <!DOCTYPE html><html><body><p>x</p></body></html>", "upload") == "html"
    assert detect_format(b'<?xml version="1.0"?>\n<html xmlns="http://www.w3.org/1999/xhtml">', "upload") == "html"
    assert detect_format(b"<p>x</p>", "page.htm") == "html"
    assert detect_format(b"<p>x</p> is how a paragraph starts", "notes.md") == "markdown"


def test_epub_chapters_come_in_spine_order() -> None:
    epub = documents.epub_document(["<h1>Second in the zip</h1>", "<h1>Third</h1>"])
    # Rewrite the spine backwards: the order comes from the package, not the zip.
    with zipfile.ZipFile(BytesIO(epub)) as source:
        parts = {item.filename: source.read(item) for item in source.infolist()}
    parts["OEBPS/content.opf"] = parts["OEBPS/content.opf"].replace(
        b'<itemref idref="c0"/><itemref idref="c1"/>', b'<itemref idref="c1"/><itemref idref="c0"/>')
    out = BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for filename, data in parts.items():
            target.writestr(filename, data)
    markdown = convert_to_markdown(out.getvalue(), "book.epub").markdown
    assert _headings(markdown) == [(1, "Third"), (1, "Second in the zip")]


def test_text_and_markdown_go_through_the_text_decoder() -> None:
    assert convert_to_markdown("# Titel\r\nÜber".encode(), "a.md") == \
        convert_to_markdown("# Titel\nÜber".encode(), "a.md")
    assert convert_to_markdown(b"# T\n", "a.md").detected_format == "markdown"
    assert convert_to_markdown(b"plain\n", "a.txt").detected_format == "text"
    assert convert_to_markdown(b"plain\n", "a.txt").markdown == "plain\n"


def test_every_converted_format_is_detected_from_its_bytes_not_its_name() -> None:
    built = {"pdf": documents.outline_pdf(), "docx": documents.outline_docx(), "pptx": documents.outline_pptx(),
             "xlsx": documents.outline_xlsx(), "epub": documents.outline_epub(),
             "html": documents.outline_html().encode()}
    assert set(built) == CONVERTED_FORMATS
    for kind, data in built.items():
        assert detect_format(data, "upload.bin") == kind


@pytest.mark.parametrize(("data", "kind"), [
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64, "a legacy Office file (DOC/XLS/PPT)"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "a PNG image"),
    (b"\x1f\x8b\x08\x00", "a gzip archive"),
])
def test_binaries_that_are_not_converted_are_unsupported_with_their_kind(data: bytes, kind: str) -> None:
    with pytest.raises(UnsupportedFormat) as caught:
        convert_to_markdown(data, "scan.bin")
    assert caught.value.message.startswith(f"'scan.bin' is {kind}; everos accepts PDF, DOCX, PPTX, XLSX, HTML and EPUB")


def test_a_password_protected_office_file_says_so() -> None:
    # What Office writes: an OLE container whose directory names the EncryptedPackage stream.
    container = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 500 + "EncryptedPackage".encode("utf-16-le")
    with pytest.raises(ConversionFailed, match="'budget.xlsx' is a password-protected Office file; everos cannot open"):
        convert_to_markdown(container, "budget.xlsx")


def test_a_plain_zip_archive_is_unsupported() -> None:
    out = BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(UnsupportedFormat, match="'bundle.zip' is a ZIP archive but not a DOCX, PPTX, XLSX or EPUB"):
        convert_to_markdown(out.getvalue(), "bundle.zip")


def test_a_damaged_zip_is_a_conversion_failure() -> None:
    with pytest.raises(ConversionFailed, match="'report.docx' is a damaged ZIP archive"):
        convert_to_markdown(b"PK\x03\x04" + b"\x00" * 100, "report.docx")


def test_a_damaged_pdf_is_a_conversion_failure_that_names_the_format() -> None:
    with pytest.raises(ConversionFailed) as caught:
        convert_to_markdown(b"%PDF-1.4\nnothing else", "broken.pdf")
    assert caught.value.message.startswith("'broken.pdf' could not be read as PDF: ")
    assert caught.value.status == 422 and caught.value.code == "CONVERSION_FAILED"


def test_a_pdf_without_text_says_ocr_is_not_available() -> None:
    with pytest.raises(ExtractionEmpty) as caught:
        convert_to_markdown(documents.scanned_pdf(), "scan.pdf")
    assert "no text could be extracted from 'scan.pdf'" in caught.value.message
    assert "OCR is not available" in caught.value.message


def test_a_pdf_over_the_page_limit_is_refused_with_its_page_count() -> None:
    with pytest.raises(ConversionFailed, match="'long.pdf' has 12 pages; everos converts PDFs of at most 10 pages"):
        convert_to_markdown(documents.text_pdf(12), "long.pdf", max_pages=10)


def test_markdown_over_the_size_limit_is_refused_with_its_length() -> None:
    with pytest.raises(ConversionFailed, match=r"'plan.xlsx' converts to [\d,]+ characters of markdown, more than "
                                               r"the 100 everos takes from one document"):
        convert_to_markdown(documents.outline_xlsx(), "plan.xlsx", max_chars=100)


def test_a_converted_document_is_returned_with_unix_newlines_and_one_final_newline() -> None:
    markdown = convert_to_markdown(documents.outline_docx(), "guide.docx").markdown
    assert "\r" not in markdown and markdown.endswith("\n") and not markdown.endswith("\n\n")
