"""What identifies the files of a document directory: their fingerprint and their signature.

The **fingerprint** digests the names, sizes and modification times of a directory's markdown
files (``index.md`` and the ``[0-9]*.md`` topic files, EverOS's cascade globs): a stat, no read,
so the scanner and the watcher can tell cheaply whether the files changed. The **signature**
digests the directory's path and every file's name and text: equal signatures mean equal rows.

A writer that publishes a document directory (ingest, PATCH) takes a :class:`WrittenFiles` of
its staged files just before the rename that publishes them (a rename keeps the files' times), and
hands it to the cascade with the enqueue: files that still carry that fingerprint are exactly
what the writer projected into the rows, so the cascade need not read them back.

:func:`stat_document_files` and :func:`written_files` block (a directory scan): call them in a
thread under the files limiter (G5). Everything else here is pure.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from everos.knowledge._layout import INDEX_FILENAME
from everos.knowledge._projection import DocumentContent, reads_back

__all__ = [
    "DirStat",
    "WrittenFiles",
    "document_signature",
    "fingerprint_digest",
    "is_markdown_name",
    "stat_document_files",
    "written_files",
]


@dataclass(frozen=True)
class DirStat:
    """A document directory's markdown files as stat'ed: their :func:`fingerprint_digest` and the
    newest modification time (seconds since the epoch)."""

    fingerprint: str
    max_mtime: float


@dataclass(frozen=True)
class WrittenFiles:
    """The receipt of a document directory a writer just published: the ``fingerprint`` of its
    files and the ``signature`` of their texts, as they were when its rows were projected.
    ``facts``: ``(topic_id, facts)`` the extractor gave with those topics (markdown does not hold
    facts); the cascade uses them while the files still carry this receipt."""

    fingerprint: str
    signature: str
    facts: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def as_payload(self) -> dict[str, Any]:
        """The receipt as JSON for a queue row."""
        payload: dict[str, Any] = {"fingerprint": self.fingerprint, "signature": self.signature}
        if self.facts:
            payload["facts"] = {topic_id: list(facts) for topic_id, facts in self.facts}
        return payload

    @classmethod
    def from_payload(cls, payload: Any) -> WrittenFiles | None:
        """The receipt :meth:`as_payload` stored, or None when there is none (or not a whole one).
        Facts that are not a list of strings for a topic id are left out."""
        if not isinstance(payload, dict):
            return None
        fingerprint, signature = payload.get("fingerprint"), payload.get("signature")
        if not isinstance(fingerprint, str) or not isinstance(signature, str):
            return None
        stored = payload.get("facts")
        facts = tuple(
            (topic_id, tuple(items)) for topic_id, items in (stored.items() if isinstance(stored, dict) else ())
            if isinstance(topic_id, str) and isinstance(items, list) and all(isinstance(f, str) for f in items))
        return cls(fingerprint, signature, facts)

    def facts_of(self) -> dict[str, tuple[str, ...]]:
        """``{topic_id: facts}`` of the receipt."""
        return dict(self.facts)


def is_markdown_name(name: str) -> bool:
    """True for the file names the cascade reads in a document directory: ``index.md`` and topic
    files (``[0-9]*.md``), as :func:`~everos.knowledge.md_kind` matches them."""
    return name == INDEX_FILENAME or (name[:1].isascii() and name[:1].isdigit() and name.endswith(".md"))


def fingerprint_digest(entries: Iterable[tuple[str, int, int]]) -> str:
    """A digest of ``(name, size_bytes, mtime_ns)`` entries, independent of their order."""
    digest = hashlib.sha256()
    for name, size, mtime_ns in sorted(entries):
        digest.update(f"{name}\0{size}\0{mtime_ns}\n".encode())
    return digest.hexdigest()


def document_signature(doc_dir: str, texts: Mapping[str, str]) -> str:
    """A digest of the directory path and every file's name and text: equal signatures mean the
    index and the SQLite rows built from them are equal too."""
    digest = hashlib.sha256(doc_dir.encode())
    for name in sorted(texts):
        digest.update(b"\0" + name.encode() + b"\0" + texts[name].encode())
    return digest.hexdigest()


def stat_document_files(path: Path) -> DirStat | None:
    """The :class:`DirStat` of the directory ``path``, or None when it is gone or has no
    ``index.md``. Symlinks are not followed. Blocks."""
    entries: list[tuple[str, int, int]] = []
    try:
        with os.scandir(path) as scan:
            for entry in scan:
                if entry.is_file(follow_symlinks=False) and is_markdown_name(entry.name):
                    st = entry.stat(follow_symlinks=False)
                    entries.append((entry.name, st.st_size, st.st_mtime_ns))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return None  # a file vanished mid-scan: the directory is changing, the next look decides
    if not any(name == INDEX_FILENAME for name, _, _ in entries):
        return None
    return DirStat(fingerprint_digest(entries), max(m for _, _, m in entries) / 1e9)


def written_files(staging: Path, doc_dir: str, content: DocumentContent, texts: Mapping[str, str], *,
                  facts: Mapping[str, Sequence[str]] | None = None) -> WrittenFiles | None:
    """The receipt of the markdown ``texts`` of ``content``, written into ``staging`` and about to
    be published at ``doc_dir`` (relative to the root), with the extractor's ``facts`` by topic
    id. None when that markdown would not read back as ``content``
    (:func:`~everos.knowledge._projection.reads_back`: the cascade must read the files then) or
    ``staging`` holds no ``index.md``. Blocks."""
    if not reads_back(content):
        return None
    stat = stat_document_files(staging)
    if stat is None:
        return None
    given = tuple((topic_id, tuple(items)) for topic_id, items in (facts or {}).items())
    return WrittenFiles(stat.fingerprint, document_signature(doc_dir, texts), given)
