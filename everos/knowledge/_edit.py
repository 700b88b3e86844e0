"""PATCH of a document's title or category: its files rewritten and moved, its rows updated.

Both functions block (files, SQLite) and run in threads: :func:`rewrite_directory` under the files
limiter, :func:`save_rewritten` inside :meth:`Database.write`. The caller holds the document's lock.
"""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
from pathlib import Path

from everos.knowledge._layout import INDEX_FILENAME, ORIGINAL_DIRNAME
from everos.knowledge._markdown import parse_index_md, parse_topic_md, render_index_md, render_topic_md
from everos.knowledge._models import KnowledgeDocument, KnowledgeTopic
from everos.knowledge._repository import DocumentRow
from everos.store import atomic_write_text_sync, publish_directory_sync, remove_tree_sync, staging_dir_sync

__all__ = ["rewrite_directory", "save_rewritten"]

Rewritten = tuple[KnowledgeDocument, list[tuple[str, KnowledgeTopic]]]


def rewrite_directory(root: Path, old_dir: Path, new_dir: Path, title: str, category_id: str) -> Rewritten:
    """Copy the document into staging with its frontmatter updated (title, category, topic paths),
    publish it at ``new_dir`` (old or new, never a mix) and remove ``old_dir`` if it moved.
    Returns the new index record and ``(file name, topic)`` of every topic file."""
    staging = staging_dir_sync(root)
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
    new_dir.parent.mkdir(parents=True, exist_ok=True)
    publish_directory_sync(staging, new_dir)
    if old_dir != new_dir:
        remove_tree_sync(old_dir, root=root)
    return index, topics


def save_rewritten(conn: sqlite3.Connection, root: Path, doc: DocumentRow, rewritten: Rewritten, new_dir: Path,
                   title: str, category_id: str, now: float) -> None:
    """Update the document's and its topics' rows to match :func:`rewrite_directory`'s result."""
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
