"""The cascade's SQLite tables: per-directory index state and the per-topic derived cache.

``cascade_index_state`` has one row per document directory (the queue key): the document's
``index_status`` for list/get (``pending`` | ``indexed`` | ``failed``), the ``fingerprint`` of the
files the last attempt saw (``gone`` when the directory was gone; NULL before any attempt), the
``indexed_sha`` signature of the files last indexed and the last error. The scanner compares
fingerprints with the disk, which is what keeps it from re-queueing what an attempt already saw.
``vectors_pending`` says why an ``indexed`` document is in the index for keyword search only
(the embedding endpoint failed or ran past its deadline); NULL once its vectors are in.

``cascade_topic_cache`` keeps, per live topic, what was derived for its content digest: its facts
(and who wrote them) and which embedder made the vectors the index holds for it, so an unchanged
topic of a changed document is neither embedded nor sent to the LLM again. The vectors themselves
are read back from the index (``IndexSink.indexed_vectors``), which holds them already: until
issue #17 this table kept a second copy of every vector, ``(1 + facts) * dim * 4`` bytes a topic
(at 10,000 topics the SQLite file was 108 MiB with them, 28 MiB without). An entry names an
embedder only once the index holds its vectors (it is written after the commit); the facts of
topics derived afresh are written before it, as keyword-only entries, so a failed commit does not
ask the LLM for them again. Its ``vectors`` column is written empty (step 4 of
:data:`MIGRATIONS`; a root from before keeps its old blobs until their rows are written again or
rebuild drops them). Dropped by rebuild.

Plain functions over a ``sqlite3.Connection``, run inside ``Database.read``/``write``; every
write is an upsert or a delete keyed by id (G8).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from everos.store import MigrationSet
from everos.store._lease import error_text

__all__ = [
    "INDEX_STATUSES",
    "KEYWORD_ONLY",
    "MIGRATIONS",
    "CachedTopic",
    "IndexState",
    "begin_attempt",
    "clear_all",
    "finish_indexed",
    "fingerprints",
    "forget_dir",
    "forget_document",
    "get_state",
    "index_states",
    "index_statuses",
    "indexed_doc_ids",
    "load_cache",
    "mark_failed",
    "mark_pending",
    "mark_other_embedder",
    "pending_vectors",
    "prune_cache",
    "recent_failures",
    "state_counts",
    "store_cache",
    "vectors_pending_count",
    "vectors_pending_dirs",
]

INDEX_STATUSES = ("pending", "indexed", "failed")
KEYWORD_ONLY = "none"
"""The embedder of a cached topic whose facts are known but whose vectors are not in the index."""

MIGRATIONS = MigrationSet("cascade", (
    """
    CREATE TABLE cascade_index_state (
        doc_dir TEXT PRIMARY KEY,
        doc_id TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'indexed', 'failed')),
        fingerprint TEXT,
        indexed_sha TEXT,
        last_error TEXT,
        updated_at REAL NOT NULL
    );
    CREATE INDEX cascade_index_state_doc ON cascade_index_state (doc_id);
    CREATE TABLE cascade_topic_cache (
        topic_id TEXT PRIMARY KEY,
        doc_id TEXT NOT NULL,
        content_sha256 TEXT NOT NULL,
        embedder TEXT NOT NULL,
        facts_source TEXT NOT NULL,
        facts TEXT NOT NULL,
        vectors BLOB NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX cascade_topic_cache_doc ON cascade_topic_cache (doc_id);
    """,
    # Documents indexed for keyword search while their vectors could not be made: why, until a
    # later attempt embeds them (NULL when every vector is in the index).
    "ALTER TABLE cascade_index_state ADD COLUMN vectors_pending TEXT",
    # The status block reads these once a second (status_facts): counts per status, the newest
    # failures and the documents waiting for vectors, without a scan of every document's row
    # (85 ms a second at 100,000 documents; under 7 ms with them).
    """
    CREATE INDEX cascade_index_state_status ON cascade_index_state (status, updated_at);
    CREATE INDEX cascade_index_state_vectors_pending ON cascade_index_state (status)
        WHERE vectors_pending IS NOT NULL;
    """,
    # The vectors are read from the index; ``vectors`` is written empty from here on. An entry of
    # a document that was not fully indexed may name an embedder whose vectors never reached the
    # index (the old code cached them before the commit): it keeps its facts and is embedded again.
    # The column stays: DROP COLUMN rewrites the table, 19 s for 713 MiB (about 50,000 topics),
    # inside the startup deadline (30 s). Old blobs go as their rows are written again.
    f"""
    UPDATE cascade_topic_cache SET embedder = '{KEYWORD_ONLY}', vectors = x'' WHERE doc_id NOT IN
        (SELECT doc_id FROM cascade_index_state WHERE status = 'indexed' AND vectors_pending IS NULL);
    """,
))


@dataclass(frozen=True)
class IndexState:
    """What list/get say about a document's index: its ``status`` and, when it is ``failed``, the
    last error of its directory, when it is ``indexed`` by keyword only, why its vectors are
    pending (None otherwise)."""

    status: str
    error: str | None = None

    def fields(self) -> dict[str, str | None]:
        """The ``index_status`` and ``index_error`` fields of a document answer."""
        return {"index_status": self.status, "index_error": self.error}


@dataclass(frozen=True)
class CachedTopic:
    """What was derived for one topic's content: facts (and where they came from) and vectors
    (empty as :func:`load_cache` reads it: the vectors live in the index)."""

    topic_id: str
    content_sha256: str
    embedder: str
    facts_source: str
    facts: tuple[str, ...]
    vector: tuple[float, ...]
    fact_vectors: tuple[tuple[float, ...], ...]
    created_at: float


def mark_pending(conn: sqlite3.Connection, doc_dir: str, doc_id: str, now: float) -> None:
    """The directory was queued: its index is behind its files until an attempt succeeds."""
    conn.execute(
        "INSERT INTO cascade_index_state (doc_dir, doc_id, status, updated_at) VALUES (?, ?, 'pending', ?)"
        " ON CONFLICT (doc_dir) DO UPDATE SET doc_id = excluded.doc_id, status = 'pending',"
        " updated_at = excluded.updated_at",
        (doc_dir, doc_id, now),
    )


def begin_attempt(conn: sqlite3.Connection, doc_dir: str, doc_id: str, fingerprint: str, now: float) -> str | None:
    """An attempt starts and sees ``fingerprint``: recorded first, so a reaped attempt still
    tells the scanner what it saw. Returns the ``indexed_sha`` of the last successful attempt.

    A keyword-only document queued again for its vectors (not marked pending) stays ``indexed``:
    it is searchable by keyword all the while."""
    row = conn.execute("SELECT indexed_sha FROM cascade_index_state WHERE doc_dir = ?", (doc_dir,)).fetchone()
    conn.execute(
        "INSERT INTO cascade_index_state (doc_dir, doc_id, status, fingerprint, updated_at)"
        " VALUES (?, ?, 'pending', ?, ?)"
        " ON CONFLICT (doc_dir) DO UPDATE SET doc_id = excluded.doc_id,"
        " status = CASE WHEN status = 'indexed' AND vectors_pending IS NOT NULL THEN 'indexed' ELSE 'pending' END,"
        " fingerprint = excluded.fingerprint, updated_at = excluded.updated_at",
        (doc_dir, doc_id, fingerprint, now),
    )
    return None if row is None else row[0]


def get_state(conn: sqlite3.Connection, doc_dir: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM cascade_index_state WHERE doc_dir = ?", (doc_dir,)).fetchone()


def finish_indexed(conn: sqlite3.Connection, doc_dir: str, signature: str, now: float,
                   vectors_pending: str | None = None) -> None:
    """The attempt indexed the files with ``signature``: status ``indexed``, error cleared;
    ``vectors_pending`` says why some vectors are missing (None: every vector is in)."""
    conn.execute(
        "UPDATE cascade_index_state SET status = 'indexed', indexed_sha = ?, last_error = NULL, updated_at = ?,"
        " vectors_pending = ? WHERE doc_dir = ?",
        (signature, now, None if vectors_pending is None else error_text(vectors_pending), doc_dir))


def pending_vectors(conn: sqlite3.Connection, doc_dir: str) -> str | None:
    """Why the directory's document is indexed without (some of) its vectors; None if it is not."""
    row = conn.execute("SELECT vectors_pending FROM cascade_index_state WHERE doc_dir = ?", (doc_dir,)).fetchone()
    return None if row is None else row[0]


def vectors_pending_dirs(conn: sqlite3.Connection, limit: int) -> list[str]:
    """Up to ``limit`` indexed directories whose vectors are pending, the longest waiting first."""
    return [row[0] for row in conn.execute(
        "SELECT doc_dir FROM cascade_index_state WHERE status = 'indexed' AND vectors_pending IS NOT NULL"
        " ORDER BY updated_at, doc_dir LIMIT ?", (limit,))]


def mark_other_embedder(conn: sqlite3.Connection, embedder: str, keyword_only: str) -> int:
    """Mark every indexed document whose cached vectors another embedder made (the configured
    model changed) as waiting for its vectors, so the re-embed pass makes them with ``embedder``.
    Returns how many documents were marked."""
    return conn.execute(
        "UPDATE cascade_index_state SET vectors_pending = ? WHERE status = 'indexed' AND vectors_pending IS NULL"
        " AND doc_id IN (SELECT DISTINCT doc_id FROM cascade_topic_cache WHERE embedder NOT IN (?, ?))",
        (f"the embedder changed: embedding again with {embedder}", embedder, keyword_only)).rowcount


def vectors_pending_count(conn: sqlite3.Connection) -> int:
    """How many indexed documents are searchable by keyword only, waiting for their vectors."""
    return conn.execute("SELECT count(*) FROM cascade_index_state WHERE status = 'indexed'"
                        " AND vectors_pending IS NOT NULL").fetchone()[0]


def store_cache(conn: sqlite3.Connection, doc_id: str, entries: Sequence[CachedTopic]) -> None:
    """Upsert derived entries of a document's topics (not their vectors)."""
    conn.executemany(
        "INSERT OR REPLACE INTO cascade_topic_cache (topic_id, doc_id, content_sha256, embedder, facts_source,"
        " facts, vectors, created_at) VALUES (?, ?, ?, ?, ?, ?, x'', ?)",
        [(c.topic_id, doc_id, c.content_sha256, c.embedder, c.facts_source, json.dumps(list(c.facts), ensure_ascii=False),
          c.created_at) for c in entries],
    )


def prune_cache(conn: sqlite3.Connection, doc_id: str, live_topic_ids: Iterable[str]) -> None:
    """Drop the cached entries of a document's topics that are not in ``live_topic_ids``."""
    live = set(live_topic_ids)
    stale = [row[0] for row in conn.execute("SELECT topic_id FROM cascade_topic_cache WHERE doc_id = ?", (doc_id,))
             if row[0] not in live]
    conn.executemany("DELETE FROM cascade_topic_cache WHERE topic_id = ?", [(topic_id,) for topic_id in stale])


def mark_failed(conn: sqlite3.Connection, doc_dir: str, error: str, *, terminal: bool, now: float) -> None:
    """The attempt failed with ``error``: ``failed`` when the row gave up (dead or not
    retryable), else still ``pending`` (it will be tried again). The error is kept cut as the
    queue row's ``last_error`` is, since /health and every document answer may show it."""
    conn.execute(
        "UPDATE cascade_index_state SET status = ?, last_error = ?, updated_at = ? WHERE doc_dir = ?",
        ("failed" if terminal else "pending", error_text(error), now, doc_dir))


def forget_dir(conn: sqlite3.Connection, doc_dir: str) -> None:
    """Drop the state of one directory (it is gone, and its document lives elsewhere or nowhere)."""
    conn.execute("DELETE FROM cascade_index_state WHERE doc_dir = ?", (doc_dir,))


def forget_document(conn: sqlite3.Connection, doc_id: str) -> None:
    """Drop every state and cache row of a document."""
    conn.execute("DELETE FROM cascade_index_state WHERE doc_id = ?", (doc_id,))
    conn.execute("DELETE FROM cascade_topic_cache WHERE doc_id = ?", (doc_id,))


def fingerprints(conn: sqlite3.Connection) -> dict[str, str | None]:
    """``{doc_dir: fingerprint}`` of every directory the cascade knows."""
    return {row[0]: row[1] for row in conn.execute("SELECT doc_dir, fingerprint FROM cascade_index_state")}


def index_states(conn: sqlite3.Connection, doc_ids: Sequence[str]) -> dict[str, IndexState]:
    """``{doc_id: IndexState}`` for the given documents that the cascade knows (a document it
    does not know yet is ``pending``). When a moved document has two directories, the most
    recently updated state wins. The error is the last one of a ``failed`` document, and for an
    ``indexed`` document searchable by keyword only, ``vectors pending: <why>``; a pending or fully
    indexed one has no error to show, whatever an earlier attempt left."""
    found: dict[str, IndexState] = {}
    for start in range(0, len(doc_ids), 500):  # stay under SQLite's bound-parameter limit
        chunk = list(doc_ids[start:start + 500])
        marks = ", ".join("?" * len(chunk))
        for doc_id, status, error, vectors in conn.execute(
            f"SELECT doc_id, status, last_error, vectors_pending FROM cascade_index_state WHERE doc_id IN ({marks})"
            " ORDER BY updated_at", chunk
        ):
            found[doc_id] = IndexState(status, _shown_error(status, error, vectors))
    return found


def _shown_error(status: str, error: str | None, vectors_pending: str | None) -> str | None:
    if status == "failed":
        return error
    if status == "indexed" and vectors_pending is not None:
        return f"vectors pending: {vectors_pending}"
    return None


def index_statuses(conn: sqlite3.Connection, doc_ids: Sequence[str]) -> dict[str, str]:
    """``{doc_id: index_status}``: :func:`index_states` without the errors."""
    return {doc_id: found.status for doc_id, found in index_states(conn, doc_ids).items()}


def recent_failures(conn: sqlite3.Connection, limit: int) -> list[dict[str, object]]:
    """The ``limit`` directories that failed most recently, newest first, each as ``{doc_id,
    doc_dir, error, at}`` (``at``: seconds since the epoch when the failure was recorded)."""
    return [{"doc_id": doc_id, "doc_dir": doc_dir, "error": error, "at": at} for doc_id, doc_dir, error, at in
            conn.execute("SELECT doc_id, doc_dir, last_error, updated_at FROM cascade_index_state"
                         " WHERE status = 'failed' ORDER BY updated_at DESC, doc_dir LIMIT ?", (limit,))]


def state_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Directories per index status (every status present, zero included)."""
    counts = dict.fromkeys(INDEX_STATUSES, 0)
    for status, count in conn.execute("SELECT status, count(*) FROM cascade_index_state GROUP BY status"):
        counts[status] = count
    return counts


def indexed_doc_ids(conn: sqlite3.Connection) -> list[str]:
    """Every doc id the cascade has state for."""
    return [row[0] for row in conn.execute("SELECT DISTINCT doc_id FROM cascade_index_state ORDER BY doc_id")]


def clear_all(conn: sqlite3.Connection) -> None:
    """Forget every state and cache row (rebuild)."""
    conn.execute("DELETE FROM cascade_index_state")
    conn.execute("DELETE FROM cascade_topic_cache")


def load_cache(conn: sqlite3.Connection, doc_id: str) -> dict[str, CachedTopic]:
    """The cached topics of a document, by topic id, without vectors (the index has them)."""
    cached = {}
    for row in conn.execute("SELECT topic_id, content_sha256, embedder, facts_source, facts, created_at"
                            " FROM cascade_topic_cache WHERE doc_id = ?", (doc_id,)):
        facts = tuple(json.loads(row["facts"]))
        cached[row["topic_id"]] = CachedTopic(
            topic_id=row["topic_id"], content_sha256=row["content_sha256"], embedder=row["embedder"],
            facts_source=row["facts_source"], facts=facts, vector=(), fact_vectors=tuple(() for _ in facts),
            created_at=row["created_at"])
    return cached
