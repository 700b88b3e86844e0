"""Documents the converter tests build themselves: one outline in every format, and hostile files.

Nothing here is downloaded or committed as a binary: PDFs are written byte by byte (a few standard
objects, Helvetica text), DOCX/PPTX/XLSX with python-docx, python-pptx and openpyxl, EPUB as a zip.
Every well-formed document carries :data:`OUTLINE`, so a test (and ``bench/convert.py``) can check
that headings and list items come through.
"""

from __future__ import annotations

import io
import zipfile

# (level, text) headings, with the paragraphs and list items under them; level 0 is body text.
OUTLINE: list[tuple[str, int | None, str]] = [
    ("heading", 1, "Gardening Guide"),
    ("para", None, "A short guide to a small garden."),
    ("heading", 2, "Soil"),
    ("para", None, "Good soil holds water and air."),
    ("bullet", None, "Add compost every spring"),
    ("bullet", None, "Test the acidity once a year"),
    ("heading", 2, "Watering"),
    ("heading", 3, "Morning"),
    ("para", None, "Water early so the leaves dry by noon."),
    ("number", None, "Check the soil with a finger"),
    ("number", None, "Water at the roots"),
]
HEADINGS = [(level, text) for kind, level, text in OUTLINE if kind == "heading"]
LIST_ITEMS = [text for kind, _, text in OUTLINE if kind in ("bullet", "number")]


# -- PDF, written by hand -------------------------------------------------------------------------

def _pdf(objects: list[bytes], *, root: int = 1, trailer_extra: bytes = b"") -> bytes:
    """Serialise numbered objects (1-based, in order) with a correct cross-reference table."""
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root %d 0 R %s>>\nstartxref\n%d\n%%%%EOF\n"
              % (len(objects) + 1, root, trailer_extra, xref))
    return out.getvalue()


def _stream(content: bytes) -> bytes:
    return b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream"


def _text_ops(lines: list[tuple[float, str]]) -> bytes:
    """Content-stream operators that draw ``(font size, text)`` lines top-down in Helvetica."""
    ops, y = [], 800.0
    for size, text in lines:
        y -= size * 1.6
        escaped = text.encode("cp1252").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
        ops.append(b"BT /F1 %.1f Tf 72 %.1f Td (%s) Tj ET" % (size, y, escaped))
    return b"\n".join(ops)


_CATALOG = b"<< /Type /Catalog /Pages 2 0 R >>"
_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"


def pdf_document(pages: list[list[tuple[float, str]]], *, encrypt: bytes | None = None) -> bytes:
    """A text PDF: each page a list of ``(font size, text)`` lines. Objects: 1 catalog, 2 page
    tree, 3 font, then a page and its content stream per page, then ``encrypt`` if given (an
    ``/Encrypt`` dictionary the trailer points at)."""
    kids = b" ".join(b"%d 0 R" % (4 + 2 * i) for i in range(len(pages)))
    objects = [_CATALOG, b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(pages)), _FONT]
    for i, lines in enumerate(pages):
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 842] /Contents %d 0 R "
                       b"/Resources << /Font << /F1 3 0 R >> >> >>" % (5 + 2 * i))
        objects.append(_stream(_text_ops(lines)))
    if encrypt is None:
        return _pdf(objects)
    objects.append(encrypt)
    file_id = b"<" + b"00" * 16 + b">"
    return _pdf(objects, trailer_extra=b"/Encrypt %d 0 R /ID [%s %s] " % (len(objects), file_id, file_id))


def outline_pdf() -> bytes:
    """:data:`OUTLINE` as a one-page PDF: headings 20/16/13 pt, body 11 pt, bullets and numbers."""
    return pdf_document([_outline_lines()])


def _outline_lines() -> list[tuple[float, str]]:
    sizes = {1: 20.0, 2: 16.0, 3: 13.0}
    lines, number = [], 0
    for kind, level, text in OUTLINE:
        if kind == "heading":
            lines.append((sizes[level or 1], text))
        elif kind == "bullet":
            lines.append((11.0, f"\u2022 {text}"))
        elif kind == "number":
            number += 1
            lines.append((11.0, f"{number}. {text}"))
        else:
            lines.append((11.0, text))
    return lines


def text_pdf(pages: int) -> bytes:
    """A plain text PDF of ``pages`` pages, a heading and 40 lines of body text on each."""
    body = "The quick brown fox jumps over the lazy dog while the gardener waters the roses."
    return pdf_document([[(16.0, f"Chapter {page + 1}")] + [(10.0, body)] * 40 for page in range(pages)])


def many_pages_pdf(pages: int) -> bytes:
    """``pages`` pages that all share one content stream: cheap to build at 100,000 pages."""
    kids = b" ".join(b"%d 0 R" % (5 + i) for i in range(pages))
    objects = [_CATALOG, b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages), _FONT,
               _stream(_text_ops([(11.0, "One more page.")]))]
    page = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 842] /Contents 4 0 R "
            b"/Resources << /Font << /F1 3 0 R >> >> >>")
    objects += [page] * pages
    return _pdf(objects)


def looping_pdf() -> bytes:
    """A page tree that contains itself: the root's kids are a node whose kids are the root."""
    objects = [_CATALOG,
               b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
               _FONT,
               b"<< /Type /Pages /Parent 2 0 R /Kids [2 0 R] /Count 1 >>"]
    return _pdf(objects)


def scanned_pdf() -> bytes:
    """A page with only a drawing on it, like a scan: no text operators at all."""
    objects = [_CATALOG, b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>", _FONT,
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 842] /Contents 5 0 R >>",
               _stream(b"0.5 g 72 72 468 698 re f")]
    return _pdf(objects)


# -- Office files ---------------------------------------------------------------------------------

def outline_docx() -> bytes:
    """Headings as Heading 1-3 styles; list items numbered on the paragraph itself, as Word writes
    them (kreuzberg drops the marker when the numbering is only on the style, python-docx's way)."""
    import docx  # python-docx: test-only

    document = docx.Document()
    for kind, level, text in OUTLINE:
        if kind == "heading":
            document.add_heading(text, level=level or 1)
        elif kind in ("bullet", "number"):
            paragraph = document.add_paragraph(text, style="List Bullet" if kind == "bullet" else "List Number")
            numbering = paragraph._p.get_or_add_pPr().get_or_add_numPr()
            numbering.get_or_add_ilvl().val = 0
            numbering.get_or_add_numId().val = paragraph.style.element.pPr.numPr.numId.val
        else:
            document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def outline_pptx() -> bytes:
    """One slide per level-1/level-2 heading: the title, then its body and list items as bullets."""
    import pptx

    presentation = pptx.Presentation()
    slide = None
    for kind, level, text in OUTLINE:
        if kind == "heading" and level in (1, 2):
            slide = presentation.slides.add_slide(presentation.slide_layouts[1])
            slide.shapes.title.text = text
            body = slide.placeholders[1].text_frame
            body.text = ""
            first = True
        else:
            assert slide is not None
            paragraph = body.paragraphs[0] if first else body.add_paragraph()
            paragraph.text = text
            paragraph.level = 1 if kind in ("bullet", "number") else 0
            first = False
    out = io.BytesIO()
    presentation.save(out)
    return out.getvalue()


def outline_xlsx() -> bytes:
    """Two sheets named like headings, each a small table with a header row."""
    import openpyxl

    workbook = openpyxl.Workbook()
    soil = workbook.active
    soil.title = "Soil"
    soil.append(["Task", "When"])
    soil.append(["Add compost every spring", "March"])
    soil.append(["Test the acidity once a year", "April"])
    watering = workbook.create_sheet("Watering")
    watering.append(["Step", "Time"])
    watering.append(["Check the soil with a finger", "06:00"])
    watering.append(["Water at the roots", "06:05"])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


# -- HTML and EPUB --------------------------------------------------------------------------------

def outline_html(*, title: str = "Gardening Guide") -> str:
    parts, open_list = [], None
    for kind, level, text in OUTLINE:
        tag = {"bullet": "ul", "number": "ol"}.get(kind)
        if open_list and tag != open_list:
            parts.append(f"</{open_list}>")
            open_list = None
        if tag and not open_list:
            parts.append(f"<{tag}>")
            open_list = tag
        if kind == "heading":
            parts.append(f"<h{level}>{text}</h{level}>")
        elif tag:
            parts.append(f"<li>{text}</li>")
        else:
            parts.append(f"<p>{text}</p>")
    if open_list:
        parts.append(f"</{open_list}>")
    return (f"<!DOCTYPE html><html><head><title>{title}</title><style>p {{ color: red }}</style>"
            f"<script>var tracking = 1;</script></head><body><nav><a href='/'>Home</a></nav>"
            + "".join(parts) + "</body></html>")


def epub_document(chapters: list[str]) -> bytes:
    """An EPUB 3 zip: the mimetype first and stored, a container, a package with a spine, and one
    XHTML file per chapter body."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as epub:
        epub.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        epub.writestr("META-INF/container.xml",
                      '<?xml version="1.0"?><container version="1.0" '
                      'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
                      '<rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
                      "</rootfiles></container>")
        manifest = "".join(f'<item id="c{i}" href="c{i}.xhtml" media-type="application/xhtml+xml"/>'
                           for i in range(len(chapters)))
        spine = "".join(f'<itemref idref="c{i}"/>' for i in range(len(chapters)))
        epub.writestr("OEBPS/content.opf",
                      '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0" '
                      'unique-identifier="id"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
                      '<dc:identifier id="id">everos-test</dc:identifier><dc:title>Gardening Guide</dc:title>'
                      f"<dc:language>en</dc:language></metadata><manifest>{manifest}</manifest>"
                      f"<spine>{spine}</spine></package>")
        for i, body in enumerate(chapters):
            epub.writestr(f"OEBPS/c{i}.xhtml",
                          '<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml">'
                          f"<head><title>Chapter {i}</title></head><body>{body}</body></html>")
    return out.getvalue()


def outline_epub() -> bytes:
    """:data:`OUTLINE` split in two chapters at "Watering", in spine order."""
    html = outline_html()
    body = html[html.index("<h1>"):html.index("</body>")]
    cut = body.index("<h2>Watering")
    return epub_document([body[:cut], body[cut:]])


# -- hostile files --------------------------------------------------------------------------------

def zip_bomb_docx(uncompressed_mib: int = 1024) -> bytes:
    """A DOCX whose document.xml inflates to ``uncompressed_mib`` MiB of blank XML (about
    1000:1). Built from one compressed chunk repeated, so it takes well under a second."""
    import zlib

    real = outline_docx()
    chunk = b" " * (1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = (b'<?xml version="1.0"?><w:document '
            b'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>')
    # After a full flush the compressor starts afresh, so one compressed MiB can be repeated.
    parts = [compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)]
    one = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    parts += [one] * uncompressed_mib
    parts.append(compressor.compress(b"</w:body></w:document>") + compressor.flush())
    deflated = b"".join(parts)
    size = len(head) + len(chunk) * uncompressed_mib + len(b"</w:body></w:document>")
    crc = zlib.crc32(head)
    for _ in range(uncompressed_mib):
        crc = zlib.crc32(chunk, crc)
    crc = zlib.crc32(b"</w:body></w:document>", crc)

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(real)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bomb:
        for item in source.infolist():
            if item.filename != "word/document.xml":
                bomb.writestr(item, source.read(item))
        info = zipfile.ZipInfo("word/document.xml")
        info.compress_type = zipfile.ZIP_DEFLATED
        # Write the precompressed member by hand: ZipFile has no API for raw deflate data.
        info.CRC, info.compress_size, info.file_size = crc, len(deflated), size
        info.header_offset = bomb.fp.tell()  # type: ignore[union-attr]
        bomb.fp.write(info.FileHeader())  # type: ignore[union-attr]
        bomb.fp.write(deflated)  # type: ignore[union-attr]
        bomb.filelist.append(info)
        bomb.NameToInfo[info.filename] = info
        bomb.start_dir = bomb.fp.tell()  # type: ignore[union-attr]
    return out.getvalue()


def deep_html(depth: int = 100_000) -> bytes:
    return b"<html><body>" + b"<div>" * depth + b"deep" + b"</div>" * depth + b"</body></html>"


def big_xlsx(target_mib: int) -> bytes:
    """An XLSX of about ``target_mib`` MiB: a real workbook whose sheet is replaced by rows of
    inline strings, stored uncompressed so the file itself is that large (built in well under a
    second)."""
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.active.title = "Data"
    real = io.BytesIO()
    workbook.save(real)
    row = b'<row>' + b''.join(b'<c t="inlineStr"><is><t>cell value %d</t></is></c>' % c for c in range(10)) + b'</row>'
    rows = row * max(1, (target_mib << 20) // len(row))
    sheet = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
             b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
             + rows + b"</sheetData></worksheet>")
    out = io.BytesIO()
    with zipfile.ZipFile(real) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as target:
        for item in source.infolist():
            data = sheet if item.filename == "xl/worksheets/sheet1.xml" else source.read(item)
            target.writestr(item.filename, data, compress_type=zipfile.ZIP_STORED)
    return out.getvalue()



def encrypted_pdf() -> bytes:
    """:data:`OUTLINE` behind a user password nobody knows: a standard-security ``/Encrypt``
    dictionary whose ``/U`` check value matches no password, the empty one included."""
    check = b"<" + b"5a" * 32 + b">"
    return pdf_document([_outline_lines()], encrypt=b"<< /Filter /Standard /V 1 /R 2 /O %s /U %s /P -44 >>"
                        % (check, check))
