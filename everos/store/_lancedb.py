"""The LanceDB index: topic and fact tables, the one task that writes them, and the reads search needs.

:class:`IndexStore` owns ``<root>/.index/lancedb`` and its two tables, ``knowledge_topic`` (EverOS's
columns, everos's vector width) and ``knowledge_fact``: native full-text indexes over the topics'
pre-segmented token columns, scalar indexes on the keys writes and reads filter on, a vector index
past ``vector_index_min_rows`` (columns, indexes and the policy: :mod:`everos.store._lancedb_schema`).
Every LanceDB call runs through the sync API in a worker thread under the ``lancedb`` limiter and a
``call_timeout_seconds`` deadline (G3, G5; the async API does not run under Trio). Reads abandon
their thread on cancel (a stale result is harmless); writes never do, so their outcome is known
when they return (G5a).

Writes go through :class:`everos.store._index_writer.IndexWriter`, the only writer.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import lancedb
import numpy as np
import pyarrow as pa
import trio
from lancedb.index import IvfFlat

from everos.config import LanceDBSettings
from everos.errors import ConfigError, StoreBusy
from everos.store._index_rows import IndexedVectors
from everos.store._lancedb_schema import (
    FACT_FIELDS, FACT_TABLE, FTS_COLUMNS, FTS_CONFIG, MAX_FACTS_SCANNED, MAX_ROWS_PER_DOCUMENT, RECALL_COLUMNS,
    SCALAR_INDEXES, TOPIC_FIELDS, TOPIC_RESULT_COLUMNS, TOPIC_TABLE, WriteOp, arrow_rows, chunked, fact_schema,
    in_list, quote, scope_filter, stale_ids, topic_schema, vector_index_name, vector_index_partitions,
    vector_nprobes, wanted_vector_partitions,
)

__all__ = ["FACT_TABLE", "TOPIC_TABLE", "IndexStore", "fact_schema", "topic_schema"]  # the schema's, re-exported

log = logging.getLogger("everos.index")
T = TypeVar("T")


class IndexStore:
    """The two LanceDB tables of one root, opened once; table handles are reused by every call.

    Open with :meth:`open`. Every method is a checkpoint that runs LanceDB in a thread under the
    limiter and raises :class:`~everos.errors.StoreBusy` when ``call_timeout_seconds`` passes first
    (for reads, the thread is abandoned and finishes on its own, bounded by the same timeout inside
    LanceDB). Writes go through :class:`IndexWriter`; :meth:`optimize` is safe to call directly
    when no writer runs (CLI).
    """

    def __init__(self, path: Path, dim: int, settings: LanceDBSettings, limiter: trio.CapacityLimiter) -> None:
        self.path = path
        self.dim = dim
        self.settings = settings
        self._limiter = limiter
        self._tables: dict[str, Any] = {}
        self.rows: dict[str, int] = {TOPIC_TABLE: 0, FACT_TABLE: 0}
        self.versions: dict[str, int] = {TOPIC_TABLE: 0, FACT_TABLE: 0}
        self.vector_partitions: int | None = None  # of the topics' vector index; None: a flat scan

    @classmethod
    async def open(
        cls, path: Path, *, dim: int, settings: LanceDBSettings, limiter: trio.CapacityLimiter, reset: bool = False
    ) -> IndexStore:
        """Open (creating if missing) both tables and their full-text indexes under ``path``.

        ``reset`` drops both tables first (``cascade rebuild``). Not bounded by
        ``call_timeout_seconds``: the caller bounds it with its startup deadline; if cancelled, the
        thread finishes opening and the store is dropped.

        Raises:
            ConfigError: an existing table stores vectors of another width than ``dim``, or has
                other columns than this everos writes (rebuild the index to fix either).
        """
        store = cls(path, dim, settings, limiter)
        await trio.to_thread.run_sync(store._open_sync, reset, limiter=limiter)
        return store

    def _open_sync(self, reset: bool) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        db = self._connect_sync()
        existing = set(db.list_tables().tables)
        for name, schema in ((TOPIC_TABLE, topic_schema(self.dim)), (FACT_TABLE, fact_schema(self.dim))):
            if reset and name in existing:
                db.drop_table(name)
                existing.discard(name)
            if name in existing:
                table = db.open_table(name)
                self._check_schema(name, table.schema, schema)
            else:
                table = db.create_table(name, schema=schema)
            self._ensure_indexes_sync(name, table)
            if name == TOPIC_TABLE:
                self.vector_partitions = vector_index_partitions(i.name for i in table.list_indices())
            self._tables[name] = table
            self.rows[name] = table.count_rows()
            self.versions[name] = table.version

    @staticmethod
    def _ensure_indexes_sync(name: str, table: Any) -> None:
        """Create the indexes :data:`FTS_COLUMNS` and :data:`SCALAR_INDEXES` name that ``table``
        lacks, and drop a full-text index no query uses (the one earlier everos made on the facts)."""
        indexes = {tuple(index.columns): index for index in table.list_indices()}
        for columns, index in indexes.items():
            if index.index_type == "FTS" and columns[0] not in FTS_COLUMNS[name]:
                table.drop_index(index.name)
        for column in FTS_COLUMNS[name]:
            if (column,) not in indexes:
                table.create_index(column, config=FTS_CONFIG, replace=True)
        for column, kind in SCALAR_INDEXES[name]:
            if (column,) not in indexes:
                table.create_index(column, config=kind(), replace=True)

    def _connect_sync(self) -> Any:
        session = lancedb.Session(index_cache_size_bytes=self.settings.index_cache_size_bytes)
        return lancedb.connect(
            self.path, session=session,
            read_consistency_interval=timedelta(seconds=self.settings.read_consistency_seconds),
        )

    def _reopen_sync(self) -> None:
        """Swap in fresh handles on a fresh session. The index cache keeps every index file it
        read open, including files of index versions optimize replaced and deleted; dropping the
        session is what gives those descriptors back (G5b). Searches in flight keep the old
        handles until they finish."""
        if not self._tables:
            return  # closed meanwhile
        db = self._connect_sync()
        self._tables.update({name: db.open_table(name) for name in (TOPIC_TABLE, FACT_TABLE)})

    def _check_schema(self, name: str, found: pa.Schema, expected: pa.Schema) -> None:
        vector = found.field("vector").type if "vector" in found.names else None
        width = getattr(vector, "list_size", None)
        if width is not None and width != self.dim:
            raise ConfigError(
                f"the index table {name} at {self.path} stores {width}-wide vectors but [embedding] dim is "
                f"{self.dim}; set dim back to {width} or run `everos cascade rebuild` to re-index"
            )
        if not found.remove_metadata().equals(expected):
            raise ConfigError(
                f"the index table {name} at {self.path} was written with other columns than this everos "
                "uses; run `everos cascade rebuild` to re-index"
            )

    async def aclose(self) -> None:
        """Drop the table handles (LanceDB closes its files when they are collected). Idempotent."""
        self._tables.clear()
        await trio.lowlevel.checkpoint()

    def _table(self, name: str) -> Any:
        try:
            return self._tables[name]
        except KeyError:
            raise trio.ClosedResourceError("the index store is closed") from None

    # -- calls ---------------------------------------------------------------------------------------

    @property
    def limiter(self) -> trio.CapacityLimiter:
        """The ``lancedb`` thread budget every call of this store runs under (G5)."""
        return self._limiter

    async def _call(self, fn: Callable[..., T], *args: Any, write: bool) -> T:
        timeout = self.settings.call_timeout_seconds
        try:
            with trio.fail_after(timeout):
                return await trio.to_thread.run_sync(
                    functools.partial(fn, *args), limiter=self._limiter, abandon_on_cancel=not write
                )
        except trio.TooSlowError:
            raise StoreBusy(f"a LanceDB call did not finish within {timeout} s", retry_after_s=1.0) from None

    def _query_timeout(self) -> timedelta:
        return timedelta(seconds=self.settings.call_timeout_seconds)

    # -- writes (the writer's thread calls) ----------------------------------------------------------

    async def _commit(self, ops: list[WriteOp]) -> None:
        await self._call(self._commit_sync, ops, write=True)

    def _commit_sync(self, ops: list[WriteOp]) -> None:
        """Apply ``ops`` in order, last operation per document wins: per table, one delete of the
        rows that go (deleted documents, topics and facts no longer given; none for a new
        document) and one upsert keyed on ``id``, both through the tables' scalar indexes.

        A ``merge_insert`` that deletes "not matched by source" scans the whole table (linear in
        its size: 170 ms at 100k rows, whatever the batch); the indexed delete and upsert cost
        10-30 ms there. Facts go first and topics last, so a crash in between leaves the old topic
        hashes and the cascade redoes the document (G8).
        """
        final: dict[str, WriteOp] = {op.doc_id: op for op in ops}
        topic_ids = self._ids_by_document_sync(TOPIC_TABLE, list(final))
        counts = Counter({doc_id: len(ids) for doc_id, ids in topic_ids.items()})
        for op in ops:
            if op.topics is None:
                op.removed_topics = counts[op.doc_id]
                counts[op.doc_id] = 0
            else:
                counts[op.doc_id] = len(op.topics)
        kept = [op for op in final.values() if op.topics is not None]
        gone = [doc_id for doc_id, op in final.items() if op.topics is None]
        facts = [fact for op in kept for fact in op.facts]
        topics = [topic for op in kept for topic in op.topics or ()]
        fact_ids = self._ids_by_document_sync(FACT_TABLE, [op.doc_id for op in kept])
        self._replace_sync(FACT_TABLE, arrow_rows(facts, FACT_FIELDS, fact_schema(self.dim)), gone,
                           stale_ids(fact_ids, facts))
        self._replace_sync(TOPIC_TABLE, arrow_rows(topics, TOPIC_FIELDS, topic_schema(self.dim)), gone,
                           stale_ids({d: ids for d, ids in topic_ids.items() if d not in gone}, topics))

    def _ids_by_document_sync(self, name: str, doc_ids: Sequence[str]) -> dict[str, set[str]]:
        """``{doc_id: row ids}`` of ``name`` for ``doc_ids`` (an indexed lookup)."""
        found: dict[str, set[str]] = {}
        for chunk in chunked(doc_ids):
            rows = (
                self._table(name).search().where(in_list("doc_id", chunk)).select(["id", "doc_id"])
                .limit(MAX_ROWS_PER_DOCUMENT * len(chunk)).to_arrow(timeout=self._query_timeout())
            )
            for row_id, doc_id in zip(rows.column("id").to_pylist(), rows.column("doc_id").to_pylist()):
                found.setdefault(doc_id, set()).add(row_id)
        return found

    def _replace_sync(self, name: str, rows: pa.Table, gone_docs: Sequence[str], stale: Sequence[str]) -> None:
        table = self._table(name)
        # The timeout bounds each write inside its thread (G5a). A commit is atomic (stack notes
        # §4), so a write stopped by it raises having changed nothing.
        for chunk in chunked(gone_docs):
            table.delete(in_list("doc_id", chunk))
        for chunk in chunked(stale):
            table.delete(in_list("id", chunk))
        if rows.num_rows:
            result = (
                table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
                # "null" lets keyword-only rows (no vector) in; widths were checked before queueing.
                .execute(rows, on_bad_vectors="null", timeout=self._query_timeout())
            )
            self.versions[name] = result.version
        else:
            self.versions[name] = table.version
        self.rows[name] = table.count_rows()

    async def optimize(self, cleanup_older_than_seconds: float) -> None:
        """Compact both tables, fold new rows into their indexes and remove versions older than
        ``cleanup_older_than_seconds``. Only one writer may run it at a time. A short window can
        fail a search still reading a removed version; the default (300 s) cannot."""
        # LanceDB warns on exactly 0 ("every version but the latest"); 1 ms means the same here.
        older_than = timedelta(seconds=max(cleanup_older_than_seconds, 0.001))
        for name in (FACT_TABLE, TOPIC_TABLE):
            await self._call(self._optimize_sync, name, older_than, write=True)
        await self._call(self._train_vector_index_sync, write=True)
        await self._call(self._reopen_sync, write=True)

    def _optimize_sync(self, name: str, older_than: timedelta) -> None:
        table = self._table(name)
        table.optimize(cleanup_older_than=older_than)
        self.versions[name] = table.version
        self.rows[name] = table.count_rows()

    def _train_vector_index_sync(self) -> None:
        """Train the topics' vector index (:func:`wanted_vector_partitions`) when the table passed
        ``vector_index_min_rows`` or doubled since; optimize folds later rows into it."""
        table = self._table(TOPIC_TABLE)
        rows = self.rows[TOPIC_TABLE]  # counted by the optimize that runs just before
        partitions = wanted_vector_partitions(rows, self.settings.vector_index_min_rows, self.vector_partitions)
        if partitions is None:
            return
        old = self.vector_partitions
        table.create_index("vector", config=IvfFlat(distance_type="cosine", num_partitions=partitions),
                           name=vector_index_name(partitions), replace=True)
        if old is not None:
            table.drop_index(vector_index_name(old))
        self.vector_partitions = partitions
        self.versions[TOPIC_TABLE] = table.version
        log.info("trained the topics' vector index: %d partitions over %d rows", partitions, rows)

    # -- reads ---------------------------------------------------------------------------------------

    async def topic_hashes(self, doc_id: str) -> dict[str, str]:
        """``{topic_id: content_sha256}`` of the topics indexed for ``doc_id`` (empty if none)."""
        return await self._call(self._topic_hashes_sync, doc_id, write=False)

    def _topic_hashes_sync(self, doc_id: str) -> dict[str, str]:
        found = (
            self._table(TOPIC_TABLE).search().where(f"doc_id = {quote(doc_id)}")
            .select(["id", "content_sha256"]).limit(MAX_ROWS_PER_DOCUMENT).to_arrow(timeout=self._query_timeout())
        )
        return dict(zip(found.column("id").to_pylist(), found.column("content_sha256").to_pylist()))

    async def indexed_vectors(self, doc_id: str) -> dict[str, IndexedVectors]:
        """``{topic_id: IndexedVectors}`` of the topics indexed for ``doc_id`` (two indexed reads)."""
        return await self._call(self._indexed_vectors_sync, doc_id, write=False)

    def _indexed_vectors_sync(self, doc_id: str) -> dict[str, IndexedVectors]:
        where, timeout = f"doc_id = {quote(doc_id)}", self._query_timeout()
        topics = (self._table(TOPIC_TABLE).search().where(where).select(["id", "content_sha256", "vector"])
                  .limit(MAX_ROWS_PER_DOCUMENT).to_arrow(timeout=timeout))
        facts = (self._table(FACT_TABLE).search().where(where).select(["topic_id", "fact_index", "vector"])
                 .limit(MAX_ROWS_PER_DOCUMENT).to_arrow(timeout=timeout))
        fact_vectors: dict[str, dict[int, tuple[float, ...]]] = {}
        columns = (facts.column(name).to_pylist() for name in ("topic_id", "fact_index", "vector"))
        for topic_id, index, vector in zip(*columns):
            fact_vectors.setdefault(topic_id, {})[index] = tuple(vector or ())
        found = {}
        columns = (topics.column(name).to_pylist() for name in ("id", "content_sha256", "vector"))
        for topic_id, digest, vector in zip(*columns):
            by_index = fact_vectors.get(topic_id, {})
            if sorted(by_index) == list(range(len(by_index))):  # else a fact is missing: reuse nothing
                facts_in_order = tuple(by_index[i] for i in sorted(by_index))
                found[topic_id] = IndexedVectors(digest, tuple(vector or ()), facts_in_order)
        return found

    async def keyword_topics(
        self, query_tokens: Sequence[str], app_id: str, project_id: str, limit: int
    ) -> list[tuple[dict[str, Any], float]]:
        """BM25 over ``summary_tokens`` and ``content_tokens`` in the scope, a topic scored by the
        better of its two columns (as EverOS does, with a query per column): one full-text query
        over both, which gives those scores. Best first, at most ``limit``; a hit is ``{id,
        doc_id}`` (:meth:`topic_rows` has the rest). No tokens, no hits."""
        if not query_tokens:
            await trio.lowlevel.checkpoint()
            return []
        return await self._call(self._keyword_sync, " ".join(query_tokens), scope_filter(app_id, project_id), limit,
                                write=False)

    def _keyword_sync(self, text: str, scope: str, limit: int) -> list[tuple[dict[str, Any], float]]:
        found = (
            self._table(TOPIC_TABLE).search(text, query_type="fts", fts_columns=list(FTS_COLUMNS[TOPIC_TABLE]))
            .where(scope, prefilter=True).select([*RECALL_COLUMNS, "_score"]).limit(limit)
            .to_arrow(timeout=self._query_timeout())
        )
        return _recalled(found, [float(score) for score in found.column("_score").to_pylist()])

    async def vector_topics(
        self, vector: Sequence[float], app_id: str, project_id: str, limit: int
    ) -> list[tuple[dict[str, Any], float]]:
        """Nearest topics by cosine in the scope; score = 1 - cosine distance (the similarity),
        best first, at most ``limit``; a hit is ``{id, doc_id}``. Rows without a vector are never
        returned."""
        return await self._call(self._vector_sync, list(vector), scope_filter(app_id, project_id), limit, write=False)

    def _vector_sync(self, vector: list[float], scope: str, limit: int) -> list[tuple[dict[str, Any], float]]:
        found = (
            self._vector_query(vector).where(scope, prefilter=True)
            .select([*RECALL_COLUMNS, "_distance"]).limit(limit).to_arrow(timeout=self._query_timeout())
        )
        hits = _recalled(found, [1.0 - float(distance) for distance in found.column("_distance").to_pylist()])
        return [(row, score) for row, score in hits if not math.isnan(score)]

    async def topic_rows(self, topic_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """``{topic_id: row}`` of the given topics that are indexed, with the columns a search hit
        shows (:data:`TOPIC_RESULT_COLUMNS`). Search reads these from SQLite when it can (one query
        with the documents); this is the index's own copy."""
        if not topic_ids:
            await trio.lowlevel.checkpoint()
            return {}
        return await self._call(self._topic_rows_sync, list(dict.fromkeys(topic_ids)), write=False)

    def _topic_rows_sync(self, topic_ids: list[str]) -> dict[str, dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        for chunk in chunked(topic_ids):
            found = (self._table(TOPIC_TABLE).search().where(in_list("id", chunk)).select(TOPIC_RESULT_COLUMNS)
                     .limit(len(chunk)).to_arrow(timeout=self._query_timeout()))
            rows.update((row["id"], row) for row in found.to_pylist())
        return rows

    def _vector_query(self, vector: list[float]) -> Any:
        query = self._table(TOPIC_TABLE).search(vector, vector_column_name="vector").distance_type("cosine")
        partitions = self.vector_partitions
        return query if partitions is None else query.nprobes(vector_nprobes(partitions))

    async def facts_for_topics(
        self,
        topic_ids: Sequence[str],
        vector: Sequence[float] | None,
        query_tokens: Sequence[str],
        limit_per_topic: int,
    ) -> dict[str, list[tuple[dict[str, Any], float]]]:
        """The best facts of each topic, ``{topic_id: [(fact, score), ...]}`` best first.

        A fact scores its cosine similarity to ``vector`` when both have one, else the share of
        ``query_tokens`` it contains; facts scoring 0 or less are left out. A fact is a dict with
        ``id``, ``topic_id``, ``fact_index`` and ``text``.
        """
        if not topic_ids or limit_per_topic <= 0:
            await trio.lowlevel.checkpoint()
            return {}
        query = None if vector is None else list(vector)
        return await self._call(self._facts_sync, list(topic_ids), query, list(query_tokens), limit_per_topic,
                                write=False)

    def _facts_sync(
        self, topic_ids: list[str], vector: list[float] | None, query_tokens: list[str], limit: int
    ) -> dict[str, list[tuple[dict[str, Any], float]]]:
        found = (
            self._table(FACT_TABLE).search().where(in_list("topic_id", topic_ids))
            .select(["id", "topic_id", "fact_index", "text", "text_tokens", "vector"])
            .limit(MAX_FACTS_SCANNED).to_arrow(timeout=self._query_timeout())
        )
        wanted = set(query_tokens)
        query = None if vector is None else np.asarray(vector, dtype=np.float32)
        query_norm = 0.0 if query is None else float(np.linalg.norm(query))
        scored: dict[str, list[tuple[dict[str, Any], float]]] = {}
        for row in found.to_pylist():
            fact_vector = row.pop("vector")
            tokens = set(row.pop("text_tokens").split())
            if query is not None and query_norm > 0 and fact_vector is not None:
                v = np.asarray(fact_vector, dtype=np.float32)
                norm = float(np.linalg.norm(v))
                score = float(v @ query) / (norm * query_norm) if norm > 0 else 0.0
            else:
                score = len(wanted & tokens) / len(wanted) if wanted else 0.0
            if score > 0:
                scored.setdefault(row["topic_id"], []).append((row, score))
        for facts in scored.values():
            facts.sort(key=lambda pair: (-pair[1], pair[0]["fact_index"]))
            del facts[limit:]
        return scored

    async def count_rows(self) -> dict[str, int]:
        """``{table name: rows}`` as committed now."""
        return await self._call(
            lambda: {name: self._table(name).count_rows() for name in (TOPIC_TABLE, FACT_TABLE)}, write=False
        )

    async def file_count(self) -> int:
        """How many files lie under the LanceDB directory (data, deletions, manifests, indexes)."""
        return await self._call(lambda: sum(len(files) for _, _, files in os.walk(self.path)), write=False)


def _recalled(found: pa.Table, scores: list[float]) -> list[tuple[dict[str, Any], float]]:
    """A recall query's ``{id, doc_id}`` rows with their scores, in the query's order."""
    return [({"id": topic_id, "doc_id": doc_id}, score) for topic_id, doc_id, score in
            zip(found.column("id").to_pylist(), found.column("doc_id").to_pylist(), scores)]
