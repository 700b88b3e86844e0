"""Reading document directories from disk. Every function here blocks: call it in a thread under
the files limiter (G5).

Only ``<root>/<app>/<project>/knowledge/<Category>/<Title>_<doc_id>/`` directories are documents;
hidden names (``.index``, ``.tmp``, ``.taxonomy.md``, ``.<name>.backup``) and symlinks are never
followed, so nothing outside the root is read.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from everos.cascade._rows import DocumentFiles, DocumentLocation, is_document_file, locate_document
from everos.errors import InvalidInput
from everos.knowledge._fingerprint import DirStat, stat_document_files
from everos.knowledge._layout import INDEX_FILENAME, KNOWLEDGE_DIRNAME, ORIGINAL_DIRNAME

__all__ = [
    "MAX_FILE_BYTES",
    "find_document_dirs",
    "read_document_dir",
    "sha256_file",
    "stat_document_dir",
    "walk_document_dirs",
]

# A markdown file larger than this is not one everos wrote (uploads are capped well below it):
# refuse it instead of reading it into memory.
MAX_FILE_BYTES = 64 * 1024 * 1024
_HASH_CHUNK_BYTES = 1024 * 1024


def _visible_dirs(path: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as entries:
            return [e for e in entries if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []


def stat_document_dir(root: Path, doc_dir: str) -> DirStat | None:
    """The :class:`~everos.knowledge._fingerprint.DirStat` of ``root/doc_dir``, or None when it
    is gone or has no ``index.md``."""
    return stat_document_files(root / doc_dir)


def read_document_dir(root: Path, doc_dir: str) -> DocumentFiles | None:
    """Stat, then read every markdown file of ``root/doc_dir``; None when it is gone (or has no
    ``index.md``). A file deleted between the listing and the read counts as gone too; the
    watcher or the scanner brings the directory back if it still exists.

    Raises:
        InvalidInput: a file is not UTF-8 or is larger than :data:`MAX_FILE_BYTES`.
    """
    stat = stat_document_dir(root, doc_dir)
    if stat is None:
        return None
    path = root / doc_dir
    texts: dict[str, str] = {}
    try:
        names = sorted(os.listdir(path))
        for name in names:
            file = path / name
            if not is_document_file(doc_dir, name) or file.is_symlink() or not file.is_file():
                continue
            if file.stat().st_size > MAX_FILE_BYTES:
                raise InvalidInput(f"{doc_dir}/{name} is larger than {MAX_FILE_BYTES} bytes", field="md_path")
            try:
                texts[name] = file.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise InvalidInput(f"{doc_dir}/{name} is not UTF-8 text", field="md_path") from None
    except FileNotFoundError:
        return None
    if INDEX_FILENAME not in texts:
        return None
    return DocumentFiles(doc_dir, stat.fingerprint, texts, _original_name(path / ORIGINAL_DIRNAME))


def _original_name(original_dir: Path) -> str | None:
    try:
        with os.scandir(original_dir) as entries:
            names = sorted(e.name for e in entries if e.is_file(follow_symlinks=False) and not e.name.startswith("."))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    return names[0] if names else None


def walk_document_dirs(root: Path) -> dict[str, DirStat | None]:
    """Every document directory under ``root`` (relative path ->
    :class:`~everos.knowledge._fingerprint.DirStat`, None for a
    directory without ``index.md``). Directories whose names map to no scope or doc id are
    skipped: nothing could index them."""
    found: dict[str, DirStat | None] = {}
    for app in _visible_dirs(root):
        for project in _visible_dirs(Path(app.path)):
            knowledge = Path(project.path) / KNOWLEDGE_DIRNAME
            for category in _visible_dirs(knowledge):
                for document in _visible_dirs(Path(category.path)):
                    doc_dir = f"{app.name}/{project.name}/{KNOWLEDGE_DIRNAME}/{category.name}/{document.name}"
                    try:
                        locate_document(doc_dir)
                    except InvalidInput:
                        continue
                    found[doc_dir] = stat_document_dir(root, doc_dir)
    return found


def find_document_dirs(root: Path, location: DocumentLocation) -> list[str]:
    """The directories of ``location.doc_id`` that exist (with an ``index.md``) in its scope, in
    any category and under any title: where a moved document lives now."""
    knowledge = root / "/".join(location.doc_dir.split("/")[:3])
    suffix = f"_{location.doc_id}"
    found = []
    for category in _visible_dirs(knowledge):
        for document in _visible_dirs(Path(category.path)):
            if document.name.endswith(suffix) and (Path(document.path) / INDEX_FILENAME).is_file():
                found.append(f"{'/'.join(location.doc_dir.split('/')[:3])}/{category.name}/{document.name}")
    return found


def sha256_file(path: Path) -> str | None:
    """The sha256 of a file's bytes, or None when it does not exist."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(_HASH_CHUNK_BYTES):
                digest.update(chunk)
    except (FileNotFoundError, IsADirectoryError):
        return None
    return digest.hexdigest()
