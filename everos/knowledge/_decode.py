"""Uploaded bytes to text: UTF-8 or BOM-marked UTF-16/32, text and markdown only (G10, G11).

everos reads text itself and needs no parser or LLM for it. Binary formats (PDF, Office files,
images, archives) are recognised by their signature and refused with a message that names them;
anything else must decode as text. Pure and linear in the size of the upload; callers run it in a
worker thread for large uploads (G5).
"""

from __future__ import annotations

import codecs
from typing import Final

from everos.errors import UnsupportedFormat

__all__ = ["decode_upload"]

# (signature, format name) for binaries people upload by mistake; checked before decoding.
_SIGNATURES: Final = (
    (b"%PDF-", "PDF"),
    (b"PK\x03\x04", "a ZIP archive (or DOCX/XLSX/PPTX/EPUB)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Office file (DOC/XLS/PPT)"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"{\\rtf", "RTF"),
)
# UTF-32 marks first: the UTF-32-LE mark starts with the UTF-16-LE one.
_BOMS: Final = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_ACCEPTED: Final = "everos accepts text and markdown in UTF-8 (or UTF-16/32 with a byte-order mark)"


def decode_upload(data: bytes, filename: str, content_type: str | None) -> str:
    """Decode an upload to text with ``\\n`` newlines.

    UTF-8 (a BOM is dropped), or UTF-16 / UTF-32 when a byte-order mark says so. ``filename`` and
    ``content_type`` only shape the error message: the bytes decide. Empty input gives ``""``
    (the extractor then reports ``ExtractionEmpty``).

    Raises:
        UnsupportedFormat: a known binary signature (PDF, ZIP/Office, images, gzip, RTF), a NUL
            character (binary data), or bytes that do not decode strictly.
    """
    for signature, kind in _SIGNATURES:
        if data.startswith(signature):
            raise UnsupportedFormat(f"{_describe(filename, content_type)} is {kind}; {_ACCEPTED}")
    encoding, offset = "utf-8", 0
    for bom, bom_encoding in _BOMS:
        if data.startswith(bom):
            encoding, offset = bom_encoding, len(bom)
            break
    if encoding == "utf-8" and b"\x00" in data:
        raise UnsupportedFormat(f"{_describe(filename, content_type)} contains NUL bytes (binary data); {_ACCEPTED}")
    try:
        text = data[offset:].decode(encoding)
    except UnicodeDecodeError as exc:
        position = offset + exc.start
        raise UnsupportedFormat(
            f"{_describe(filename, content_type)} is not valid {encoding.upper()} (byte {position}); {_ACCEPTED}"
        ) from None
    if "\x00" in text:
        raise UnsupportedFormat(
            f"{_describe(filename, content_type)} contains NUL characters (binary data); {_ACCEPTED}"
        )
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _describe(filename: str, content_type: str | None) -> str:
    # Bounded, printable echo of what the client sent: it ends up in a JSON error message.
    name = "".join(ch for ch in filename[:80] if ch.isprintable()) or "the upload"
    shown = f"'{name}'" if name != "the upload" else name
    if content_type:
        media_type = "".join(ch for ch in content_type.split(";", 1)[0][:60] if ch.isprintable()).strip()
        if media_type:
            shown += f" ({media_type})"
    return shown
