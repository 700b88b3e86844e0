"""Uploaded documents to markdown, offline: PDF, DOCX, PPTX, XLSX, HTML and EPUB (issue #12).

One seam, :func:`convert_to_markdown`: bytes and a file name in, markdown and the detected format
out, headings and lists kept so topics follow the document's structure. The bytes decide the
format, as in :func:`~everos.knowledge._decode.decode_upload` (the name only breaks the tie between
HTML and text); text and markdown go through ``decode_upload`` unchanged.

The conversion is pure, synchronous and CPU-bound, and runs native code on untrusted files: call
it in a worker process (:meth:`everos.workers.CpuWorkers.run_cpu`), where a deadline and a memory
limit stop what the library does not refuse itself. :func:`warm_up_converter` is that worker's ``init``.

Kreuzberg (MIT; a Rust core with PDFium, one wheel without dependencies) does the work. Against
markitdown and pdfminer.six + mammoth + python-pptx + openpyxl + markdownify on the same generated
files it kept PDF headings (font-size levels), was 7-25x faster, and refused a DOCX zip bomb
itself in 0.1 s (the comparison is in the commit that added this module). It runs with OCR,
caching and every model-backed feature off: nothing is downloaded, nothing is written.
"""

from __future__ import annotations

import dataclasses
import html
import io
import re
import zipfile
from typing import Any, Final

from everos.errors import ConversionFailed, ExtractionEmpty, UnsupportedFormat
from everos.knowledge._decode import _SIGNATURES, _describe, decode_upload

__all__ = ["CONVERTED_FORMATS", "Converted", "convert_to_markdown", "detect_format", "warm_up_converter"]

# Detected format -> the media type kreuzberg is told (it would sniff, but we have decided).
_MEDIA_TYPES: Final[dict[str, str]] = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "epub": "application/epub+zip",
    "html": "text/html",
}
CONVERTED_FORMATS: Final = frozenset(_MEDIA_TYPES)
_NAMES: Final = {"pdf": "PDF", "docx": "DOCX", "pptx": "PPTX", "xlsx": "XLSX", "epub": "EPUB", "html": "HTML"}
# The Office part that tells one OOXML package from another.
_OOXML_PARTS: Final = (("word/document.xml", "docx"), ("ppt/presentation.xml", "pptx"), ("xl/workbook.xml", "xlsx"))
_HTML_SUFFIXES: Final = (".html", ".htm", ".xhtml")
_HTML_STARTS: Final = (b"<!doctype html", b"<html")
_CFB_SIGNATURE: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED_PACKAGE: Final = "EncryptedPackage".encode("utf-16-le")  # the stream's name in the container
_MARKDOWN_SUFFIXES: Final = (".md", ".markdown")
_ACCEPTED: Final = ("everos accepts PDF, DOCX, PPTX, XLSX, HTML and EPUB files, and text and markdown "
                    "in UTF-8 (or UTF-16/32 with a byte-order mark)")

MAX_PAGES: Final = 5_000
"""PDFs with more pages are refused: a book is about a thousand pages."""
MAX_MARKDOWN_CHARS: Final = 10_000_000
"""Converted documents longer than this are refused (about 2,500 dense pages): split them."""
# Library messages echoed in errors are cut here: they can quote parts of the file.
_DETAIL_CHARS: Final = 240
# The <title> is looked for in the head of an HTML file only, so a missing </title> costs nothing.
_TITLE_SCAN_BYTES: Final = 65_536
_TITLE_RE: Final = re.compile(rb"<title\b[^>]{0,200}>(.{0,2000}?)</title\s*>", re.IGNORECASE | re.DOTALL)


@dataclasses.dataclass(frozen=True, slots=True)
class Converted:
    """An upload as markdown. ``detected_format`` is ``pdf``, ``docx``, ``pptx``, ``xlsx``,
    ``epub``, ``html``, ``markdown`` or ``text``: what the bytes were, for the document's record."""

    markdown: str
    detected_format: str


def detect_format(data: bytes, filename: str) -> str:
    """The format of an upload, from its bytes: one of :data:`CONVERTED_FORMATS`, or ``markdown`` /
    ``text`` for everything :func:`decode_upload` is to decide. Cheap (a ZIP's directory at most):
    a caller can use it to send only converted formats to a worker process.

    Raises:
        UnsupportedFormat: a binary everos does not convert (legacy Office, images, archives, RTF).
        ConversionFailed: a ZIP archive too damaged to list.
    """
    head = data[:1024]
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if start.startswith(b"%PDF-"):
        return "pdf"
    if data.startswith(b"PK\x03\x04"):
        return _zip_format(data, filename)
    if data.startswith(_CFB_SIGNATURE) and _ENCRYPTED_PACKAGE in data:
        # A password-protected DOCX/XLSX/PPTX is an OLE container holding the encrypted package.
        raise ConversionFailed(f"{_describe(filename, None)} is a password-protected Office file; everos cannot "
                               "open it (remove the password and upload it again)")
    for signature, kind in _SIGNATURES:
        if data.startswith(signature):
            raise UnsupportedFormat(f"{_describe(filename, None)} is {kind}; {_ACCEPTED}")
    lowered = filename.lower()
    start = start.lower()
    if lowered.endswith(_HTML_SUFFIXES) or start.startswith(_HTML_STARTS) or (
            start.startswith(b"<?xml") and b"<html" in start):
        return "html"
    return "markdown" if lowered.endswith(_MARKDOWN_SUFFIXES) else "text"


def convert_to_markdown(data: bytes, filename: str, *, max_pages: int = MAX_PAGES,
                        max_chars: int = MAX_MARKDOWN_CHARS) -> Converted:
    """Convert an upload to markdown with ``\\n`` newlines.

    Pure and synchronous; CPU-bound for the converted formats, so run it in a worker process.
    ``filename`` shapes the error messages and breaks the HTML/text tie, the bytes decide.

    Raises:
        UnsupportedFormat: a binary format everos does not convert, or text that does not decode.
        ExtractionEmpty: the document holds no text (a scanned PDF: OCR is not available).
        ConversionFailed: an encrypted, damaged or oversized document (a zip bomb, more than
            ``max_pages`` pages, more than ``max_chars`` characters of markdown).
        MemoryError: the worker's memory limit was reached (the worker reports it).
    """
    kind = detect_format(data, filename)
    if kind not in CONVERTED_FORMATS:
        return Converted(decode_upload(data, filename, None), kind)
    name = _describe(filename, None)
    title = None
    if kind == "html":
        # Kreuzberg 4.10 renders an HTML <title> as YAML front matter that its own markdown pass
        # then turns into a "## title: ..." heading; we lift the title out and put it back as "#".
        data, title = _lift_title(data)
    result = _extract(data, kind, name)
    markdown = result.content.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").strip()
    pages = result.metadata.get("page_count") if kind == "pdf" else None
    if isinstance(pages, int) and pages > max_pages:
        raise ConversionFailed(f"{name} has {pages:,} pages; everos converts PDFs of at most {max_pages:,} pages")
    if not markdown:
        if kind == "pdf":
            raise ExtractionEmpty(f"no text could be extracted from {name}: it has no text layer (a scanned "
                                  "PDF?) or its pages cannot be read, and OCR is not available")
        if kind == "html":
            raise ExtractionEmpty(f"no text could be extracted from {name}: it has none, or its markup is "
                                  "nested too deeply to follow")
        raise ExtractionEmpty(f"no text could be extracted from {name} ({_NAMES[kind]})")
    if title and not re.search(r"^# ", markdown, re.MULTILINE):
        markdown = f"# {title}\n\n{markdown}"
    if len(markdown) > max_chars:
        raise ConversionFailed(f"{name} converts to {len(markdown):,} characters of markdown, more than the "
                               f"{max_chars:,} everos takes from one document; split it into smaller files")
    return Converted(markdown + "\n", kind)


def warm_up_converter() -> None:
    """Load the converter and run it once on a tiny document: a worker process's ``init``, so
    the first real conversion pays no import or library start-up."""
    _extract(b"<html><body><h1>warm</h1><p>up</p></body></html>", "html", "warm-up")


def _zip_format(data: bytes, filename: str) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            if "mimetype" in names:
                # Read a few bytes only: the member may be a bomb like any other.
                with archive.open("mimetype") as member:
                    if member.read(64).strip() == b"application/epub+zip":
                        return "epub"
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, NotImplementedError,
            RuntimeError) as exc:  # RuntimeError: an encrypted member
        raise ConversionFailed(f"{_describe(filename, None)} is a damaged ZIP archive: {_detail(exc)}") from None
    if "[Content_Types].xml" in names:
        for part, kind in _OOXML_PARTS:
            if part in names:
                return kind
    raise UnsupportedFormat(f"{_describe(filename, None)} is a ZIP archive but not a DOCX, PPTX, XLSX or EPUB "
                            f"file; {_ACCEPTED}")


def _lift_title(data: bytes) -> tuple[bytes, str | None]:
    match = _TITLE_RE.search(data, 0, _TITLE_SCAN_BYTES)
    if match is None:
        return data, None
    title = " ".join(html.unescape(match.group(1).decode("utf-8", "replace")).split())
    return data[:match.start()] + data[match.end():], title or None


def _extract(data: bytes, kind: str, name: str) -> Any:
    import kreuzberg  # here, not at the top: only worker processes load the converter

    config = kreuzberg.ExtractionConfig(
        output_format="markdown",
        use_cache=False,       # no cache directory: the function stays pure
        disable_ocr=True,      # OCR would need Tesseract and language data: not offline-by-default
        enable_quality_processing=False,
        # One thread: the pool runs one conversion per process, and the memory limit counts threads.
        concurrency=kreuzberg.ConcurrencyConfig(max_threads=1),
    )
    try:
        return kreuzberg.extract_bytes_sync(data, _MEDIA_TYPES[kind], config)
    except MemoryError:
        raise
    except kreuzberg.KreuzbergError as exc:
        message = str(exc)
        if "password" in message.lower():
            raise ConversionFailed(f"{name} is a password-protected {_NAMES[kind]}; everos cannot open it "
                                   "(remove the password and upload it again)") from None
        if "security limit" in message.lower():
            raise ConversionFailed(f"{name} was refused by the converter's safety limits (a zip bomb or an "
                                   f"oversized part?): {_detail(exc)}") from None
        raise ConversionFailed(f"{name} could not be read as {_NAMES[kind]}: {_detail(exc)}") from None
    except Exception as exc:  # a panic or binding error inside the library: still the file's fault
        raise ConversionFailed(f"{name} could not be read as {_NAMES[kind]}: "
                               f"{type(exc).__name__}: {_detail(exc)}") from None


def _detail(exc: BaseException) -> str:
    # Kreuzberg repeats its message ("ParsingError: X: X"); keep one copy, printable and bounded.
    text = str(exc)
    for prefix in ("ParsingError: ", "ValidationError: "):
        text = text.removeprefix(prefix)
    half = (len(text) - 2) // 2
    if half > 0 and text[:half] == text[half + 2:]:
        text = text[:half]
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return text if len(text) <= _DETAIL_CHARS else text[:_DETAIL_CHARS - 1] + "…"
