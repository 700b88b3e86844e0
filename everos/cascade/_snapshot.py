"""Reading document directories from disk. Every function here blocks: call it in a thread under
the files limiter (G5).

Only ``<root>/<app>/<project>/knowledge/<Category>/<Title>_<doc_id>/`` directories are documents;
hidden names (``.index``, ``.tmp``, ``.taxonomy.md``, ``.<name>.backup``) and symlinks are never
followed, so nothing outside the root is read.

:class:`DocumentDirs` walks the tree again and again (the scanner) and looks into a directory only
when its modification time moved: adding, removing or renaming an entry changes a directory's
mtime, so a category whose mtime is the same has the same document directories, and a document
directory whose mtime is the same has the same file names. What that does not see is a file
rewritten in place (its own mtime and size change, its directory's do not): the watcher reports
it, and a full walk (``full=True``: every directory listed, every file stat'ed) finds it when the
watcher did not (it was down, or ``[cascade] watch`` is off).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from everos.cascade._rows import DocumentFiles, DocumentLocation, is_document_file, locate_document
from everos.errors import InvalidInput
from everos.knowledge._fingerprint import DirStat, stat_document_files
from everos.knowledge._layout import INDEX_FILENAME, KNOWLEDGE_DIRNAME, ORIGINAL_DIRNAME

__all__ = [
    "MAX_FILE_BYTES",
    "SETTLED_AFTER_S",
    "DocumentDirs",
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
SETTLED_AFTER_S = 2.0
"""A directory whose mtime is at least this old when it is listed is trusted until its mtime moves:
a filesystem keeps times to a tick (ext4: milliseconds; FAT: 2 s), and a second change within
the tick of the listing would leave the same mtime (git's "racy" entries). A younger one is
listed again at the next walk."""


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
    return DocumentDirs(root).walk(full=True)


@dataclass(frozen=True)
class _Listing:
    """What a walk saw of a directory: its inode and mtime before it was listed, and what the
    listing gave (a category: its document directories' names; a document directory: its DirStat)."""

    identity: tuple[int, int]  # (st_ino, st_mtime_ns)
    seen: tuple[str, ...] | DirStat | None
    settled: bool


class DocumentDirs:
    """:func:`walk_document_dirs` again and again over ``root``, remembering each category's and
    each document directory's mtime and listing: an unchanged directory costs one stat, not a
    listing and a stat per file (see the module docstring). ``clock`` (seconds since the epoch,
    the filesystem's clock) says when a directory's mtime is settled (:data:`SETTLED_AFTER_S`).

    After each walk: ``documents_listed`` counts the document directories whose files it
    stat'ed, ``categories_listed`` the category directories it listed. Not thread-safe: one walk
    at a time."""

    def __init__(self, root: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self._root = os.fspath(root)
        self._clock = clock
        self._categories: dict[str, _Listing] = {}
        self._documents: dict[str, _Listing] = {}
        self.documents_listed = 0
        self.categories_listed = 0

    def walk(self, *, full: bool = False) -> dict[str, DirStat | None]:
        """What :func:`walk_document_dirs` returns, from the directories whose mtime moved since
        the last walk (``full``: from every directory). Forgets directories that are gone. Blocks."""
        settled_before_ns = int((self._clock() - SETTLED_AFTER_S) * 1e9)
        categories: dict[str, _Listing] = {}
        documents: dict[str, _Listing] = {}
        self.documents_listed = self.categories_listed = 0
        found: dict[str, DirStat | None] = {}
        for app in _visible_dirs(self.root):
            for project in _visible_dirs(Path(app.path)):
                knowledge = Path(project.path) / KNOWLEDGE_DIRNAME
                for category in _visible_dirs(knowledge):
                    relative = f"{app.name}/{project.name}/{KNOWLEDGE_DIRNAME}/{category.name}"
                    listing = self._look(self._categories, relative, full, settled_before_ns, self._list_category)
                    if listing is None:
                        continue
                    categories[relative] = listing
                    for name in listing.seen:
                        doc_dir = f"{relative}/{name}"
                        document = self._look(self._documents, doc_dir, full, settled_before_ns, self._stat_document)
                        if document is not None:
                            documents[doc_dir] = document
                        found[doc_dir] = None if document is None else document.seen
        self._categories, self._documents = categories, documents
        return found

    def _look(self, known: dict[str, _Listing], relative: str, full: bool, settled_before_ns: int,
              list_it: Callable[[Path], tuple[str, ...] | DirStat | None]) -> _Listing | None:
        """The listing of ``root/relative``: the one remembered while its mtime stays, else a new
        one; None when it is gone."""
        try:  # a plain string path: a Path per directory cost more than its stat
            st = os.stat(f"{self._root}/{relative}", follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return None
        identity = (st.st_ino, st.st_mtime_ns)
        before = known.get(relative)
        if not full and before is not None and before.settled and before.identity == identity:
            return before
        return _Listing(identity, list_it(self.root / relative), settled=st.st_mtime_ns < settled_before_ns)

    def _list_category(self, path: Path) -> tuple[str, ...]:
        """The names of the document directories in a category (names that map to no scope or
        doc id are left out: nothing could index them)."""
        self.categories_listed += 1
        relative = path.relative_to(self.root).as_posix()
        return tuple(entry.name for entry in _visible_dirs(path) if _is_document_dir(f"{relative}/{entry.name}"))

    def _stat_document(self, path: Path) -> DirStat | None:
        self.documents_listed += 1
        return stat_document_files(path)


def _is_document_dir(doc_dir: str) -> bool:
    try:
        locate_document(doc_dir)
    except InvalidInput:
        return False
    return True


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
