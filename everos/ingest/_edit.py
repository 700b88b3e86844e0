"""PATCH of a document's title or category: its files rewritten and moved, its rows updated.

A failed PATCH leaves the files and the rows exactly as they were (G10). The steps, each undone
if a later one fails: :func:`stage_rewrite` (a copy under ``<root>/.tmp``; nothing else
touched), :func:`row_snapshot` then :func:`save_rewritten` (the rewritten document's projection,
one transaction), then
:func:`publish_rewrite` (one atomic rename or exchange; a failure puts the rows back with
:func:`restore_rows`). Every function blocks (files, SQLite) and runs in a thread: the file ones
under the files limiter, the row ones inside :meth:`Database.read` / :meth:`Database.write`. The
caller holds the document's lock.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from everos.knowledge._fingerprint import WrittenFiles, written_files
from everos.knowledge._layout import INDEX_FILENAME, ORIGINAL_DIRNAME
from everos.knowledge._markdown import parse_index_md, parse_topic_md, render_index_md, render_topic_md
from everos.knowledge._projection import DocumentContent, content_from_markdown, project
from everos.ingest._repository import DocumentRow, save_rows
from everos.store import publish_directory_sync, remove_tree_sync, staging_dir_sync, write_staged_files_sync

__all__ = ["Rewritten", "discard_staging", "publish_rewrite", "restore_rows", "row_snapshot", "save_rewritten",
           "stage_rewrite"]


@dataclass(frozen=True)
class Rewritten:
    """What :func:`stage_rewrite` staged: the document's new content, the file name of each
    topic (by topic index) and the receipt of the staged files (None when their markdown would
    not read back as the content)."""

    content: DocumentContent
    topic_files: dict[int, str]
    written: WrittenFiles | None


def stage_rewrite(root: Path, old_dir: Path, title: str, category_id: str, new_dir: Path) -> tuple[Path, Rewritten]:
    """Copy the document into a new staging directory with its frontmatter updated (title,
    category, topic paths), to be published at ``new_dir``. Nothing outside ``<root>/.tmp``
    changes. Returns the staging directory and what it holds."""
    staging = staging_dir_sync(root)
    try:
        index = dataclasses.replace(parse_index_md((old_dir / INDEX_FILENAME).read_text(encoding="utf-8")),
                                    title=title, category_id=category_id)
        texts = {INDEX_FILENAME: render_index_md(index)}
        topics, names = [], {}
        for path in sorted(old_dir.glob("[0-9]*.md")):
            topic = parse_topic_md(path.read_text(encoding="utf-8"))
            rest = topic.topic_path.split(" > ", 1)
            topic = dataclasses.replace(topic, category_id=category_id,
                                        topic_path=title + (" > " + rest[1] if len(rest) > 1 else ""))
            texts[path.name] = render_topic_md(topic)
            topics.append(topic)
            names[topic.topic_index] = path.name
        # The original travels byte for byte, written as durably as the topic files (G6).
        originals: dict[str, str | bytes] = {}
        if (old_dir / ORIGINAL_DIRNAME).is_dir():
            originals = {f"{ORIGINAL_DIRNAME}/{path.name}": path.read_bytes()
                         for path in sorted((old_dir / ORIGINAL_DIRNAME).iterdir()) if path.is_file()}
        write_staged_files_sync(staging, {**texts, **originals})
        content = content_from_markdown(index, topics)
        # Files the cascade would refuse (ids that disagree) get no receipt: it reads them and fails.
        consistent = (new_dir.name.endswith(f"_{index.doc_id}") and len(names) == len(topics)
                      and all(topic.doc_id == index.doc_id for topic in topics))
        written = written_files(staging, new_dir.relative_to(root).as_posix(), content, texts) if consistent else None
    except BaseException:
        remove_tree_sync(staging)
        raise
    return staging, Rewritten(content, names, written)


def publish_rewrite(root: Path, staging: Path, old_dir: Path, new_dir: Path) -> None:
    """Put the staged copy at ``new_dir`` (the old or the new tree, never a mix) and remove
    ``old_dir`` if it moved. On failure the document is where and what it was: a copy published
    at a new place is taken away again before the error propagates."""
    new_dir.parent.mkdir(parents=True, exist_ok=True)
    publish_directory_sync(staging, new_dir)
    if old_dir == new_dir:
        return
    try:
        remove_tree_sync(old_dir, root=root)
    except BaseException:
        if old_dir.exists():  # the old tree is still whole (it is moved away in one rename)
            remove_tree_sync(new_dir, root=root)
        raise


def discard_staging(staging: Path) -> None:
    """Remove a staging directory that was not published (a no-op once it was)."""
    remove_tree_sync(staging)


def row_snapshot(conn: sqlite3.Connection, doc_id: str) -> tuple[dict, list[dict]]:
    """The document's row and topic rows as they are now, in full, for :func:`restore_rows`."""
    doc = conn.execute("SELECT * FROM knowledge_documents WHERE doc_id = ?", (doc_id,)).fetchone()
    topics = conn.execute("SELECT * FROM knowledge_topics WHERE doc_id = ? ORDER BY rowid", (doc_id,)).fetchall()
    return dict(doc), [dict(topic) for topic in topics]


def restore_rows(conn: sqlite3.Connection, snapshot: tuple[dict, list[dict]]) -> None:
    """Put back what :func:`row_snapshot` saw (a PATCH whose files could not be published)."""
    doc, topics = snapshot
    conn.execute(f"UPDATE knowledge_documents SET {', '.join(f'{c} = :{c}' for c in doc)} WHERE doc_id = :doc_id",
                 doc)
    conn.execute("DELETE FROM knowledge_topics WHERE doc_id = ?", (doc["doc_id"],))
    for topic in topics:
        conn.execute(f"INSERT INTO knowledge_topics ({', '.join(topic)}) VALUES ({', '.join(':' + c for c in topic)})",
                     topic)


def save_rewritten(conn: sqlite3.Connection, root: Path, doc: DocumentRow, rewritten: Rewritten, new_dir: Path,
                   title: str, category_id: str, now: float) -> None:
    """Write the rows of :func:`stage_rewrite`'s result (its projection at ``new_dir``, which
    carries the new ``title`` and ``category_id``), keeping the upload's original, digest and
    extractor."""
    doc_dir = new_dir.relative_to(root).as_posix()
    original = doc.original_path and f"{doc_dir}/{ORIGINAL_DIRNAME}/{Path(doc.original_path).name}"
    save_rows(conn, project(rewritten.content, doc_dir=doc_dir, app_id=doc.app_id, project_id=doc.project_id,
                            topic_files=rewritten.topic_files, original_path=original,
                            content_sha256=doc.content_sha256), now)
