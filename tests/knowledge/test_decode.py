"""Upload decoding: text and markdown in, a clear 415 for everything else (G10, G11)."""

from __future__ import annotations

import codecs

import pytest

from everos.errors import UnsupportedFormat
from everos.knowledge import decode_upload


def test_utf8_text_decodes() -> None:
    assert decode_upload("# Titel\n\nÜber 机器\n".encode(), "a.md", "text/markdown") == "# Titel\n\nÜber 机器\n"


def test_utf8_bom_is_dropped() -> None:
    assert decode_upload(codecs.BOM_UTF8 + b"hello", "a.txt", None) == "hello"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"])
def test_utf16_and_utf32_with_bom_decode(encoding: str) -> None:
    bom = {
        "utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE,
        "utf-32-le": codecs.BOM_UTF32_LE, "utf-32-be": codecs.BOM_UTF32_BE,
    }.get(encoding, b"")
    data = bom + "héllo 机器\r\nline".encode(encoding)
    assert decode_upload(data, "a.txt", "text/plain") == "héllo 机器\nline"


def test_newlines_are_normalised() -> None:
    assert decode_upload(b"a\r\nb\rc\n", "a.txt", None) == "a\nb\nc\n"


def test_empty_upload_is_empty_text() -> None:
    """The extractor, not the decoder, reports an empty document (EXTRACTION_EMPTY)."""
    assert decode_upload(b"", "a.txt", None) == ""


def test_nul_bytes_are_rejected() -> None:
    with pytest.raises(UnsupportedFormat, match="NUL") as info:
        decode_upload(b"text\x00more", "a.bin", "application/octet-stream")
    assert info.value.status == 415


def test_utf16_without_bom_is_rejected() -> None:
    with pytest.raises(UnsupportedFormat):
        decode_upload("hello".encode("utf-16-le"), "a.txt", None)


def test_nul_character_in_utf16_is_rejected() -> None:
    with pytest.raises(UnsupportedFormat, match="NUL"):
        decode_upload(codecs.BOM_UTF16_LE + "a\x00b".encode("utf-16-le"), "a.txt", None)


def test_invalid_utf8_names_the_byte() -> None:
    with pytest.raises(UnsupportedFormat, match=r"not valid UTF-8 \(byte 3\)"):
        decode_upload(b"abc\xff\xfe def", "latin.txt", "text/plain")


def test_truncated_utf16_is_rejected() -> None:
    with pytest.raises(UnsupportedFormat, match="UTF-16"):
        decode_upload(codecs.BOM_UTF16_LE + b"a\x00b", "a.txt", None)


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"%PDF-1.7\n%text only", "PDF"),
        (b"PK\x03\x04rest", "ZIP"),
        (b"\x89PNG\r\n\x1a\nrest", "PNG"),
        (b"\xff\xd8\xff\xe0rest", "JPEG"),
        (b"{\\rtf1 hello}", "RTF"),
    ],
)
def test_binary_formats_are_named(data: bytes, kind: str) -> None:
    with pytest.raises(UnsupportedFormat, match=kind) as info:
        decode_upload(data, "report.bin", "application/pdf")
    assert "UTF-8" in info.value.message


def test_error_message_echoes_a_bounded_printable_name() -> None:
    with pytest.raises(UnsupportedFormat) as info:
        decode_upload(b"\xff", "evil\x1b[31m" + "x" * 500 + ".txt", "text/plain; charset=latin-1")
    message = info.value.message
    assert "\x1b" not in message and len(message) < 300
    assert "(text/plain)" in message
