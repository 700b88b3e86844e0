"""PATCH of a document's title or category: its files rewritten and moved, its rows updated.

A failed PATCH leaves the files and the rows exactly as they were (G10). The steps, each undone
if a later one fails: :func:`stage_rewrite` (a copy under ``<root>/.tmp``; nothing else
touched), :func:`row_snapshot` then :func:`save_rewritten` (one transaction), then
:func:`publish_rewrite` (one atomic rename or exchange; a failure puts the rows back with
:func:`restore_rows`). Every function blocks (files, SQLite) and runs in a thread: the file ones
under the files limiter, the row ones inside :meth:`Database.read` / :meth:`Database.write`. The
caller holds the document's lock.
"""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
from pathlib import Path

from everos.knowledge._layout import INDEX_FILENAME, ORIGINAL_DIRNAME
from everos.knowledge._markdown import parse_index_md, parse_topic_md, render_index_md, render_topic_md
from everos.knowledge._models import KnowledgeDocument, KnowledgeTopic
from everos.ingest._repository import DocumentRow
from everos.store import atomic_write_text_sync, publish_directory_sync, remove_tree_sync, staging_dir_sync

__all__ = ["discard_staging", "publish_rewrite", "restore_rows", "row_snapshot", "save_rewritten", "stage_rewrite"]

Rewritten = tuple[KnowledgeDocument, list[tuple[str, KnowledgeTopic]]]


def stage_rewrite(root: Path, old_dir: Path, title: str, category_id: str) -> tuple[Path, Rewritten]:
    """Copy the document into a new staging directory with its frontmatter updated (title,
    category, topic paths). Nothing outside ``<root>/.tmp`` changes. Returns the staging directory,
    the new index record and ``(file name, topic)`` of every topic file."""
    staging = staging_dir_sync(root)
    try:
        index = dataclasses.replace(parse_index_md((old_dir / INDEX_FILENAME).read_text(encoding="utf-8")),
                                    title=title, category_id=category_id)
        atomic_write_text_sync(staging / INDEX_FILENAME, render_index_md(index))
        topics = []
        for path in sorted(old_dir.glob("[0-9]*.md")):
            topic = parse_topic_md(path.read_text(encoding="utf-8"))
            rest = topic.topic_path.split(" > ", 1)
            topic = dataclasses.replace(topic, category_id=category_id,
                                        topic_path=title + (" > " + rest[1] if len(rest) > 1 else ""))
            atomic_write_text_sync(staging / path.name, render_topic_md(topic))
            topics.append((path.name, topic))
        if (old_dir / ORIGINAL_DIRNAME).is_dir():
            shutil.copytree(old_dir / ORIGINAL_DIRNAME, staging / ORIGINAL_DIRNAME)
    except BaseException:
        remove_tree_sync(staging)
        raise
    return staging, (index, topics)


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
    """The columns :func:`save_rewritten` changes, as they are now, for :func:`restore_rows`."""
    doc = conn.execute("SELECT doc_id, title, category_id, md_path, original_path, updated_at "
                       "FROM knowledge_documents WHERE doc_id = ?", (doc_id,)).fetchone()
    topics = conn.execute("SELECT node_id, category_id, topic_path, md_path, updated_at FROM knowledge_topics "
                          "WHERE doc_id = ?", (doc_id,)).fetchall()
    return dict(doc), [dict(topic) for topic in topics]


def restore_rows(conn: sqlite3.Connection, snapshot: tuple[dict, list[dict]]) -> None:
    """Put back what :func:`row_snapshot` saw (a PATCH whose files could not be published)."""
    doc, topics = snapshot
    conn.execute("UPDATE knowledge_documents SET title = :title, category_id = :category_id, md_path = :md_path, "
                 "original_path = :original_path, updated_at = :updated_at WHERE doc_id = :doc_id", doc)
    conn.executemany("UPDATE knowledge_topics SET category_id = :category_id, topic_path = :topic_path, "
                     "md_path = :md_path, updated_at = :updated_at WHERE node_id = :node_id", topics)


def save_rewritten(conn: sqlite3.Connection, root: Path, doc: DocumentRow, rewritten: Rewritten, new_dir: Path,
                   title: str, category_id: str, now: float) -> None:
    """Update the document's and its topics' rows to match :func:`stage_rewrite`'s result."""
    _index, topics = rewritten

    def relative(path: Path) -> str:
        return path.relative_to(root).as_posix()

    original = doc.original_path and relative(new_dir / ORIGINAL_DIRNAME / Path(doc.original_path).name)
    conn.execute(
        "UPDATE knowledge_documents SET title = ?, category_id = ?, md_path = ?, original_path = ?,"
        " updated_at = ? WHERE doc_id = ?",
        (title, category_id, relative(new_dir / INDEX_FILENAME), original, now, doc.doc_id))
    conn.execute("UPDATE knowledge_topics SET category_id = ?, updated_at = ? WHERE doc_id = ?",
                 (category_id, now, doc.doc_id))
    for name, topic in topics:
        conn.execute("UPDATE knowledge_topics SET topic_path = ?, md_path = ? WHERE node_id = ?",
                     (topic.topic_path, relative(new_dir / name), topic.topic_id))
    conn.execute("UPDATE knowledge_topics SET topic_path = ? WHERE doc_id = ? AND topic_index = 0",
                 (title, doc.doc_id))
