"""Knowledge rows in SQLite: documents, topics and idempotency answers.

Plain functions over a ``sqlite3.Connection``; they run inside :meth:`Database.read` /
:meth:`Database.write` (one transaction per call, in a worker thread). Every write is an upsert or
a delete keyed by id, so running one twice is harmless (guarantee G8).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from everos.knowledge._models import KnowledgeDocument, KnowledgeTopic
from everos.store import MigrationSet

__all__ = ["MIGRATIONS", "DocumentRow", "SORT_COLUMNS", "fallback_documents", "set_extractor"]

MIGRATIONS = MigrationSet("knowledge", (
    """
    CREATE TABLE knowledge_documents (
        doc_id TEXT PRIMARY KEY,
        app_id TEXT NOT NULL,
        project_id TEXT NOT NULL,
        category_id TEXT NOT NULL,
        title TEXT NOT NULL,
        summary TEXT NOT NULL DEFAULT '',
        source_name TEXT,
        source_type TEXT,
        language TEXT NOT NULL DEFAULT '',
        keywords TEXT NOT NULL DEFAULT '[]',
        md_path TEXT NOT NULL,
        original_path TEXT,
        content_sha256 TEXT,
        topic_count INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX knowledge_documents_scope ON knowledge_documents (app_id, project_id, category_id);
    CREATE INDEX knowledge_documents_sha ON knowledge_documents (app_id, project_id, content_sha256);
    CREATE TABLE knowledge_topics (
        node_id TEXT PRIMARY KEY,
        doc_id TEXT NOT NULL,
        app_id TEXT NOT NULL,
        project_id TEXT NOT NULL,
        category_id TEXT NOT NULL,
        topic_index INTEGER NOT NULL,
        topic_name TEXT NOT NULL,
        topic_path TEXT NOT NULL,
        depth INTEGER NOT NULL,
        parent_node_id TEXT,
        children_node_ids TEXT NOT NULL DEFAULT '[]',
        summary TEXT NOT NULL DEFAULT '',
        content TEXT NOT NULL DEFAULT '',
        content_labels TEXT NOT NULL DEFAULT '[]',
        md_path TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX knowledge_topics_doc ON knowledge_topics (doc_id);
    CREATE TABLE idempotency_keys (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        status INTEGER NOT NULL,
        body TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (scope, key)
    );
    """,
    # Which extractor made the document's topics (llm, builtin, "builtin (llm fallback: …)");
    # NULL for a document ingest did not write (a hand-made directory, an EverOS root).
    "ALTER TABLE knowledge_documents ADD COLUMN extractor TEXT",
))

SORT_COLUMNS = ("created_at", "updated_at", "title")


@dataclass(frozen=True)
class DocumentRow:
    doc_id: str
    app_id: str
    project_id: str
    category_id: str
    title: str
    summary: str
    source_name: str | None
    source_type: str | None
    md_path: str
    original_path: str | None
    content_sha256: str | None
    topic_count: int
    created_at: float
    updated_at: float
    extractor: str | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> DocumentRow:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


# The columns save_document writes; reads add the extractor, which only ingest sets.
_DOC_COLUMNS = ", ".join(name for name in DocumentRow.__dataclass_fields__ if name != "extractor")
_READ_COLUMNS = ", ".join(DocumentRow.__dataclass_fields__)


def save_document(
    conn: sqlite3.Connection,
    *,
    doc: KnowledgeDocument,
    topics: Sequence[KnowledgeTopic],
    topic_paths: dict[int, str],
    app_id: str,
    project_id: str,
    md_path: str,
    original_path: str | None,
    content_sha256: str | None,
    now: float,
) -> None:
    """Replace the document's row and all its topic rows (topic 0 included) in one transaction."""
    count = sum(1 for topic in topics if topic.topic_index != 0)
    conn.execute(
        f"INSERT INTO knowledge_documents ({_DOC_COLUMNS}, language, keywords)"
        " VALUES (:doc_id, :app_id, :project_id, :category_id, :title, :summary, :source_name, :source_type,"
        " :md_path, :original_path, :content_sha256, :topic_count, :now, :now, :language, :keywords)"
        " ON CONFLICT (doc_id) DO UPDATE SET app_id = excluded.app_id, project_id = excluded.project_id,"
        " category_id = excluded.category_id, title = excluded.title, summary = excluded.summary,"
        " source_name = excluded.source_name, source_type = excluded.source_type, md_path = excluded.md_path,"
        " original_path = excluded.original_path, content_sha256 = excluded.content_sha256,"
        " topic_count = excluded.topic_count, language = excluded.language, keywords = excluded.keywords,"
        " updated_at = excluded.updated_at",
        {"doc_id": doc.doc_id, "app_id": app_id, "project_id": project_id, "category_id": doc.category_id,
         "title": doc.title, "summary": doc.summary, "source_name": doc.source_name,
         "source_type": doc.source_type, "md_path": md_path, "original_path": original_path,
         "content_sha256": content_sha256, "topic_count": count, "now": now, "language": doc.language,
         "keywords": json.dumps(list(doc.keywords), ensure_ascii=False)},
    )
    created = {row[0]: row[1] for row in conn.execute(
        "SELECT node_id, created_at FROM knowledge_topics WHERE doc_id = ?", (doc.doc_id,))}
    conn.execute("DELETE FROM knowledge_topics WHERE doc_id = ?", (doc.doc_id,))
    conn.executemany(
        "INSERT INTO knowledge_topics (node_id, doc_id, app_id, project_id, category_id, topic_index, topic_name,"
        " topic_path, depth, parent_node_id, children_node_ids, summary, content, content_labels, md_path,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (t.topic_id, doc.doc_id, app_id, project_id, t.category_id, t.topic_index, t.topic_name, t.topic_path,
             t.depth, None if t.depth <= 1 else f"{doc.doc_id}_{t.parent_index}",  # EverOS: null at depth <= 1
             json.dumps([f"{doc.doc_id}_{i}" for i in t.children_index]), t.summary, t.content,
             json.dumps(list(t.content_labels), ensure_ascii=False), topic_paths.get(t.topic_index),
             created.get(t.topic_id, now), now)
            for t in topics
        ],
    )


def set_extractor(conn: sqlite3.Connection, doc_id: str, extractor: str) -> None:
    """Record which extractor made the document's topics (ingest; the markdown does not say)."""
    conn.execute("UPDATE knowledge_documents SET extractor = ? WHERE doc_id = ?", (extractor, doc_id))


def fallback_documents(conn: sqlite3.Connection, app_id: str | None = None,
                       project_id: str | None = None) -> list[DocumentRow]:
    """The documents whose extraction fell back from the model to the built-in extractor, oldest
    first, in one scope or (both None) in every scope."""
    where, params = "extractor LIKE 'builtin (llm fallback%'", []
    if app_id is not None and project_id is not None:
        where += " AND app_id = ? AND project_id = ?"
        params = [app_id, project_id]
    return [DocumentRow.from_row(row) for row in conn.execute(
        f"SELECT {_READ_COLUMNS} FROM knowledge_documents WHERE {where} ORDER BY created_at, doc_id", params)]


def get_document(conn: sqlite3.Connection, doc_id: str) -> DocumentRow | None:
    row = conn.execute(f"SELECT {_READ_COLUMNS} FROM knowledge_documents WHERE doc_id = ?", (doc_id,)).fetchone()
    return None if row is None else DocumentRow.from_row(row)


def find_by_content(conn: sqlite3.Connection, app_id: str, project_id: str, sha256: str) -> DocumentRow | None:
    row = conn.execute(
        f"SELECT {_READ_COLUMNS} FROM knowledge_documents WHERE app_id = ? AND project_id = ? AND content_sha256 = ?"
        " ORDER BY created_at LIMIT 1", (app_id, project_id, sha256)).fetchone()
    return None if row is None else DocumentRow.from_row(row)


def list_documents(
    conn: sqlite3.Connection, *, app_id: str, project_id: str, category_id: str | None, page: int, page_size: int,
    sort_by: str, sort_order: str,
) -> tuple[list[DocumentRow], int]:
    if sort_by not in SORT_COLUMNS or sort_order not in ("asc", "desc"):
        raise ValueError("sort_by/sort_order must be validated by the caller")
    where = "app_id = ? AND project_id = ?"
    params: list[Any] = [app_id, project_id]
    if category_id is not None:
        where += " AND category_id = ?"
        params.append(category_id)
    total = conn.execute(f"SELECT count(*) FROM knowledge_documents WHERE {where}", params).fetchone()[0]
    rows = conn.execute(
        f"SELECT {_READ_COLUMNS} FROM knowledge_documents WHERE {where}"
        f" ORDER BY {sort_by} {sort_order}, doc_id {sort_order} LIMIT ? OFFSET ?",
        [*params, page_size, (page - 1) * page_size],
    ).fetchall()
    return [DocumentRow.from_row(row) for row in rows], total


def list_topics(conn: sqlite3.Connection, doc_id: str) -> list[sqlite3.Row]:
    return conn.execute("SELECT * FROM knowledge_topics WHERE doc_id = ? ORDER BY topic_index", (doc_id,)).fetchall()


def get_topic(conn: sqlite3.Connection, node_id: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM knowledge_topics WHERE node_id = ?", (node_id,)).fetchone()


def delete_document(conn: sqlite3.Connection, doc_id: str) -> int:
    """Delete the document and its topics; return how many topics (root excluded) were deleted."""
    count = conn.execute(
        "SELECT count(*) FROM knowledge_topics WHERE doc_id = ? AND topic_index != 0", (doc_id,)).fetchone()[0]
    conn.execute("DELETE FROM knowledge_topics WHERE doc_id = ?", (doc_id,))
    conn.execute("DELETE FROM knowledge_documents WHERE doc_id = ?", (doc_id,))
    return count


def category_counts(conn: sqlite3.Connection, app_id: str, project_id: str) -> dict[str, int]:
    return {row[0]: row[1] for row in conn.execute(
        "SELECT category_id, count(*) FROM knowledge_documents WHERE app_id = ? AND project_id = ?"
        " GROUP BY category_id", (app_id, project_id))}


def get_idempotent(conn: sqlite3.Connection, scope: str, key: str, not_before: float) -> sqlite3.Row | None:
    return conn.execute(
        "SELECT request_hash, status, body FROM idempotency_keys WHERE scope = ? AND key = ? AND created_at >= ?",
        (scope, key, not_before)).fetchone()


def put_idempotent(
    conn: sqlite3.Connection, scope: str, key: str, request_hash: str, status: int, body: str, now: float,
    not_before: float,
) -> None:
    conn.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (not_before,))
    conn.execute(
        "INSERT OR REPLACE INTO idempotency_keys (scope, key, request_hash, status, body, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)", (scope, key, request_hash, status, body, now))
