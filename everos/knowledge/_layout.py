"""Where knowledge lives under a memory root (EverOS reference §4), and the way back.

::

    <root>/<app_dir>/<project_dir>/knowledge/
        .taxonomy.md
        <Category>/<TitleSlug>_<doc_id>/
            index.md                 topic 0: the document
            <n>_<TopicSlug>.md       topic n >= 1
            _original/<filename>     the uploaded bytes

``default`` scope ids map to ``default_app`` / ``default_project`` on disk. Names built from free
text go through :func:`sanitize_name` (EverOS ``sanitize_dirname``); uploaded file names through
:func:`safe_filename`. Every path returned is checked to stay under the root it was built from,
lexically (this module does no I/O, so it does not resolve symlinks; the store must not create
any). Pure functions only.
"""

from __future__ import annotations

import posixpath
import re
import unicodedata
from pathlib import Path, PurePath, PurePosixPath
from typing import Final, NamedTuple

from everos.errors import PathTraversal
from everos.knowledge._models import (
    DOC_ID_RE,
    OTHERS_CATEGORY,
    validate_app_id,
    validate_doc_id,
    validate_project_id,
)

__all__ = [
    "INDEX_FILENAME",
    "ORIGINAL_DIRNAME",
    "TAXONOMY_FILENAME",
    "DocumentPath",
    "app_dir_name",
    "app_id_from_dir",
    "category_dir_name",
    "document_dir",
    "document_dir_name",
    "ensure_within",
    "knowledge_dir",
    "md_kind",
    "original_path",
    "parse_document_path",
    "project_dir_name",
    "project_id_from_dir",
    "safe_filename",
    "sanitize_name",
    "scope_dir",
    "taxonomy_path",
    "topic_filename",
]

INDEX_FILENAME: Final = "index.md"
TAXONOMY_FILENAME: Final = ".taxonomy.md"
ORIGINAL_DIRNAME: Final = "_original"
KNOWLEDGE_DIRNAME: Final = "knowledge"

_DEFAULT_SCOPE_ID: Final = "default"
_DEFAULT_APP_DIR: Final = "default_app"
_DEFAULT_PROJECT_DIR: Final = "default_project"

_NAME_MAX_CHARS: Final = 50
_UNSAFE_NAME_CHARS: Final = re.compile(r"[^\w\-.]")
_FILENAME_MAX_BYTES: Final = 255
_FILENAME_FALLBACK: Final = "upload"
# Characters that render as a slash or backslash, or that some filesystem reserves: an uploaded
# name is shown back to people and may be copied to other systems, so none of them survive.
_LOOKALIKE_SEPARATORS: Final = frozenset(
    "\u2044\u2215\u2216\u29f5\u29f8\u29f9\ufe68\uff0f\uff3c\u2571\u2572\u27cb\u27cd"
)
_RESERVED_FILENAME_CHARS: Final = frozenset('<>:"|?*')
# Longest tail kept as an extension when a long file name is cut.
_EXTENSION_MAX_BYTES: Final = 32
_DOC_DIR_RE: Final = re.compile(r"_(d_[a-f0-9]{12,32})\Z")


def sanitize_name(text: str, fallback: str) -> str:
    """One safe path component from free text (EverOS 1.5.1 ``sanitize_dirname``).

    NFC first; spaces become ``_``; characters outside Unicode ``[\\w\\-.]`` are dropped (CJK and
    accents survive); the result is cut to 50 characters. ``""``, ``"."`` and ``".."`` give
    ``fallback``. One everos addition: leading dots are dropped too, so a category or topic named
    ``.taxonomy.md`` can neither hide a directory nor collide with the taxonomy file (EverOS would
    create a hidden directory). Idempotent: ``sanitize_name(sanitize_name(x, f), f) ==
    sanitize_name(x, f)``; never contains a path separator.
    """
    slug = unicodedata.normalize("NFC", text).replace(" ", "_")
    slug = _UNSAFE_NAME_CHARS.sub("", slug)
    slug = slug.lstrip(".")[:_NAME_MAX_CHARS]
    return fallback if slug in ("", ".", "..") else slug


def safe_filename(name: str) -> str:
    """The name an uploaded file is stored under in ``_original/``.

    Keeps the base name only (after ``/`` or ``\\``), drops control characters, look-alike
    slashes (U+2215, U+FF0F …), Windows-reserved characters and leading dots or spaces (never a
    hidden file, never ``..``), and cuts names over 255 UTF-8 bytes, keeping a short extension.
    Never empty: the fallback is ``upload``.

    Raises:
        PathTraversal: the name contains a NUL byte.
    """
    if "\x00" in name:
        raise PathTraversal("file name contains a NUL byte")
    name = unicodedata.normalize("NFC", name).replace("\\", "/")
    name = name.rsplit("/", 1)[-1]
    name = "".join(
        ch
        for ch in name
        if ch not in _LOOKALIKE_SEPARATORS
        and ch not in _RESERVED_FILENAME_CHARS
        and unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp")
    )
    name = name.lstrip(". ").rstrip(". ")
    if not name:
        return _FILENAME_FALLBACK
    return _cut_to_bytes(name, _FILENAME_MAX_BYTES)


def _cut_to_bytes(name: str, max_bytes: int) -> str:
    if len(name.encode("utf-8")) <= max_bytes:
        return name
    stem, dot, extension = name.rpartition(".")
    suffix = f".{extension}" if dot and stem and len(extension.encode("utf-8")) < _EXTENSION_MAX_BYTES else ""
    if not suffix:
        stem = name
    budget = max_bytes - len(suffix.encode("utf-8"))
    # errors="ignore" drops a multi-byte character cut in half instead of corrupting it.
    cut = stem.encode("utf-8")[:budget].decode("utf-8", errors="ignore").rstrip(". ")
    return (cut or _FILENAME_FALLBACK) + suffix


def ensure_within(root: PurePath, path: PurePath) -> PurePath:
    """Return ``path`` if it lies lexically under ``root``; raise :class:`PathTraversal` if not.

    Both are normalised without touching the disk (``..`` is folded, symlinks are not followed).
    """
    root_norm = posixpath.normpath(PurePath(root).as_posix())
    path_norm = posixpath.normpath(PurePath(path).as_posix())
    if path_norm == root_norm or path_norm.startswith(root_norm.rstrip("/") + "/"):
        return path
    raise PathTraversal("path escapes the memory root")


def app_dir_name(app_id: str) -> str:
    """The directory of an ``app_id``: ``default`` is ``default_app``; raises ``InvalidInput``."""
    validate_app_id(app_id)
    return _DEFAULT_APP_DIR if app_id == _DEFAULT_SCOPE_ID else app_id


def project_dir_name(project_id: str) -> str:
    """The directory of a ``project_id``: ``default`` is ``default_project``."""
    validate_project_id(project_id)
    return _DEFAULT_PROJECT_DIR if project_id == _DEFAULT_SCOPE_ID else project_id


def app_id_from_dir(dir_name: str) -> str:
    """Inverse of :func:`app_dir_name`; raises ``InvalidInput`` for a name no app_id maps to."""
    return validate_app_id(_DEFAULT_SCOPE_ID if dir_name == _DEFAULT_APP_DIR else dir_name)


def project_id_from_dir(dir_name: str) -> str:
    """Inverse of :func:`project_dir_name`."""
    return validate_project_id(_DEFAULT_SCOPE_ID if dir_name == _DEFAULT_PROJECT_DIR else dir_name)


def scope_dir(root: Path, app_id: str, project_id: str) -> Path:
    """``<root>/<app_dir>/<project_dir>``; raises ``InvalidInput`` for a bad scope id."""
    path = root / app_dir_name(app_id) / project_dir_name(project_id)
    ensure_within(root, path)
    return path


def knowledge_dir(root: Path, app_id: str, project_id: str) -> Path:
    """``<root>/<app_dir>/<project_dir>/knowledge``."""
    return scope_dir(root, app_id, project_id) / KNOWLEDGE_DIRNAME


def taxonomy_path(root: Path, app_id: str, project_id: str) -> Path:
    """``<root>/<app_dir>/<project_dir>/knowledge/.taxonomy.md``."""
    return knowledge_dir(root, app_id, project_id) / TAXONOMY_FILENAME


def category_dir_name(category_id: str | None) -> str:
    """The directory of a category: sanitized, ``Others`` when empty or degenerate."""
    return sanitize_name(category_id or OTHERS_CATEGORY, OTHERS_CATEGORY)


def document_dir_name(title: str, doc_id: str) -> str:
    """``<TitleSlug>_<doc_id>``; the title falls back to ``doc``. Raises ``InvalidInput``."""
    return f"{sanitize_name(title, 'doc')}_{validate_doc_id(doc_id)}"


def document_dir(
    root: Path, app_id: str, project_id: str, category_id: str | None, title: str, doc_id: str
) -> Path:
    """``<root>/<app>/<project>/knowledge/<Category>/<TitleSlug>_<doc_id>``.

    Raises:
        InvalidInput: a scope id or the doc id is malformed.
        PathTraversal: the result would leave the root (cannot happen with sanitized names; kept
            as a backstop).
    """
    base = knowledge_dir(root, app_id, project_id)
    path = base / category_dir_name(category_id) / document_dir_name(title, doc_id)
    ensure_within(base, path)
    return path


def topic_filename(topic_index: int, topic_name: str) -> str:
    """``<n>_<TopicSlug>.md``; the name falls back to ``topic_<n>``. ``n`` must be >= 1."""
    if isinstance(topic_index, bool) or not isinstance(topic_index, int) or topic_index < 1:
        raise ValueError(f"topic files are numbered from 1, got {topic_index!r}")
    return f"{topic_index}_{sanitize_name(topic_name, f'topic_{topic_index}')}.md"


def original_path(doc_dir: Path, filename: str) -> Path:
    """``<doc_dir>/_original/<safe filename>``; raises :class:`PathTraversal` on a NUL byte."""
    original_dir = doc_dir / ORIGINAL_DIRNAME
    path = original_dir / safe_filename(filename)
    ensure_within(original_dir, path)
    return path


class DocumentPath(NamedTuple):
    """The parts of a knowledge markdown path, as found on disk."""

    app_dir: str
    project_dir: str
    category: str
    doc_id: str


def md_kind(relpath: str | PurePath) -> str | None:
    """``knowledge_document``, ``knowledge_topic`` or ``None`` for a path relative to the root.

    Matches EverOS's cascade globs ``*/*/knowledge/*/*/index.md`` and
    ``*/*/knowledge/*/*/[0-9]*.md`` anchored at the root (exactly six components). Hidden
    components (``.tmp``, ``.<name>.backup``) and ``..`` never match.
    """
    parts = _parts(relpath)
    if parts is None:
        return None
    filename = parts[5]
    if filename == INDEX_FILENAME:
        return "knowledge_document"
    if filename[:1].isascii() and filename[:1].isdigit() and filename.endswith(".md"):
        return "knowledge_topic"
    return None


def parse_document_path(relpath: str | PurePath) -> DocumentPath | None:
    """Split a knowledge markdown path into ``(app_dir, project_dir, category, doc_id)``.

    Returns ``None`` unless the path matches a knowledge glob (see :func:`md_kind`) and its
    document directory ends in ``_<doc_id>``. Map the scope directories back to ids with
    :func:`app_id_from_dir` / :func:`project_id_from_dir`.
    """
    if md_kind(relpath) is None:
        return None
    parts = _parts(relpath)
    assert parts is not None  # md_kind accepted it
    match = _DOC_DIR_RE.search(parts[4])
    if match is None or not DOC_ID_RE.fullmatch(match.group(1)):
        return None
    return DocumentPath(parts[0], parts[1], parts[3], match.group(1))


def _parts(relpath: str | PurePath) -> tuple[str, ...] | None:
    path = PurePosixPath(relpath.as_posix() if isinstance(relpath, PurePath) else relpath)
    parts = path.parts
    if path.is_absolute() or len(parts) != 6 or parts[2] != KNOWLEDGE_DIRNAME:
        return None
    if any(part.startswith(".") for part in parts):
        return None
    return parts
