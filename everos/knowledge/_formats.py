"""The file formats the server accepts, by file-name suffix, in one place.

:func:`everos.knowledge._decode.decode_upload` decides from the bytes, not the name; this table is
what clients use to pick files out of a folder (``everos ingest``) and which media type to send.
Whoever teaches the decoder a new format (PDF, Office) adds its suffixes here. Pure data.

:data:`CONVERTED_SUFFIXES` are the formats :func:`everos.knowledge._convert.convert_to_markdown`
turns into markdown (issue #12); ingest converts them in its worker processes, so they are part of
:data:`ACCEPTED_SUFFIXES` too.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ACCEPTED_SUFFIXES", "CONVERTED_SUFFIXES", "media_type_for"]

# Lower-case suffix -> media type, for the formats converted to markdown.
CONVERTED_SUFFIXES: Final[dict[str, str]] = {
    ".pdf": "application/pdf",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".html": "text/html",
    ".htm": "text/html",
    ".xhtml": "application/xhtml+xml",
    ".epub": "application/epub+zip",
}

# Lower-case suffix -> the media type sent with the upload: text and markdown, and the converted formats.
ACCEPTED_SUFFIXES: Final[dict[str, str]] = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".txt": "text/plain",
    ".text": "text/plain",
    **CONVERTED_SUFFIXES,
}


def media_type_for(name: str) -> str:
    """The media type to upload ``name`` with: its suffix's, else ``application/octet-stream``
    (the server still decides from the bytes)."""
    dot = name.rfind(".")
    return ACCEPTED_SUFFIXES.get(name[dot:].lower(), "application/octet-stream") if dot > 0 else \
        "application/octet-stream"
