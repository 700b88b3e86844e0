"""Knowledge rows in SQLite: documents, topics and idempotency answers.

Plain functions over a ``sqlite3.Connection``; they run inside :meth:`Database.read` /
:meth:`Database.write` (one transaction per call, in a worker thread). Every write is an upsert or
a delete keyed by id, so running one twice is harmless (guarantee G8). The document and topic
rows are written by :func:`save_rows` alone, from a document's projection
(:mod:`everos.knowledge._projection`): ingest's publish, PATCH and the cascade all call it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from everos.knowledge._models import SORT_COLUMNS
from everos.knowledge._projection import DocumentRows
from everos.store import MigrationSet

__all__ = ["MIGRATIONS", "DocumentRow", "SORT_COLUMNS", "fallback_documents", "load_rows", "save_rows"]

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


_READ_COLUMNS = ", ".join(DocumentRow.__dataclass_fields__)
_TOPIC_COLUMNS = ("node_id", "doc_id", "app_id", "project_id", "category_id", "topic_index", "topic_name",
                  "topic_path", "depth", "parent_node_id", "children_node_ids", "summary", "content",
                  "content_labels", "md_path")


def save_rows(conn: sqlite3.Connection, rows: DocumentRows, now: float) -> None:
    """Write exactly the rows of one document (its projection) in the caller's transaction: the
    document row is upserted (its ``created_at`` kept; an ``extractor`` of None keeps the stored
    one), its topic rows replaced (each topic's ``created_at`` kept). ``updated_at`` is ``now``."""
    doc = rows.document_row()
    columns = list(doc)
    conn.execute(
        f"INSERT INTO knowledge_documents ({', '.join(columns)}, created_at, updated_at)"
        f" VALUES ({', '.join(':' + c for c in columns)}, :now, :now)"
        " ON CONFLICT (doc_id) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in columns if c not in ("doc_id", "extractor"))
        + ", extractor = coalesce(excluded.extractor, extractor), updated_at = excluded.updated_at",
        {**doc, "now": now},
    )
    doc_id = doc["doc_id"]
    created = {row[0]: row[1] for row in conn.execute(
        "SELECT node_id, created_at FROM knowledge_topics WHERE doc_id = ?", (doc_id,))}
    conn.execute("DELETE FROM knowledge_topics WHERE doc_id = ?", (doc_id,))
    conn.executemany(
        f"INSERT INTO knowledge_topics ({', '.join(_TOPIC_COLUMNS)}, created_at, updated_at)"
        f" VALUES ({', '.join(':' + c for c in _TOPIC_COLUMNS)}, :created_at, :updated_at)",
        [{**topic, "created_at": created.get(topic["node_id"], now), "updated_at": now}
         for topic in rows.topic_rows()],
    )


def load_rows(conn: sqlite3.Connection, doc_id: str) -> DocumentRows | None:
    """The stored rows of a document as its projection (:meth:`DocumentRows.from_stored`), or
    None when it has no row."""
    doc = conn.execute("SELECT * FROM knowledge_documents WHERE doc_id = ?", (doc_id,)).fetchone()
    if doc is None:
        return None
    return DocumentRows.from_stored(doc, list_topics(conn, doc_id))


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


_HIT_COLUMNS = ("doc_id", "category_id", "topic_name", "topic_path", "depth", "summary")


def hit_details(conn: sqlite3.Connection, node_ids: Sequence[str], with_content: bool) -> dict[str, dict[str, Any]]:
    """``{node_id: {doc_id, category_id, topic_name, topic_path, depth, summary, document: {title,
    summary}[, content]}}`` of the given topics whose topic and document rows exist: what a search
    hit shows beyond its score, in one query per 500 ids (a search asks for a few dozen)."""
    columns = ", ".join(f"t.{name}" for name in (*_HIT_COLUMNS, *(("content",) if with_content else ())))
    details: dict[str, dict[str, Any]] = {}
    for start in range(0, len(node_ids), 500):
        chunk = list(node_ids[start : start + 500])
        for row in conn.execute(
            f"SELECT t.node_id, {columns}, d.title AS document_title, d.summary AS document_summary"
            " FROM knowledge_topics AS t JOIN knowledge_documents AS d ON d.doc_id = t.doc_id"
            f" WHERE t.node_id IN ({', '.join('?' * len(chunk))})", chunk,
        ):
            found = {name: row[name] for name in _HIT_COLUMNS}
            found["document"] = {"title": row["document_title"], "summary": row["document_summary"]}
            if with_content:
                found["content"] = row["content"]
            details[row["node_id"]] = found
    return details


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
