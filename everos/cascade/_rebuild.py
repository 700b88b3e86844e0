"""``everos cascade rebuild``: drop the derived state and index every document directory again.

A rebuild is the bulk path of the cascade, not a loop over it: the documents are queued in one
pass and drained by ``[cascade] rebuild_workers`` attempts at once, so the index writer finds many
documents waiting each time it commits and merges them into one commit per table (a commit costs
about as much for one document as for ten, and more as the tables grow). Measured on 2,000
documents of 4 KB (20,000 topics, hashing embedder, 2 cores): 545 s with a delete and a replace
commit per document and two attempts at once; 175 s with 32 attempts at once (about 8 documents
a commit).

When the caller emptied the index (the CLI opens it with ``reset_index=True``), nothing is deleted
from it document by document and no attempt asks it for a document's topic hashes, which would
all be empty: :class:`EmptiedIndex` answers them. Otherwise every document the cascade or SQLite
knows is deleted from it first, many deletes in flight, which the writer merges the same way.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import trio

from everos.cascade import _state as state
from everos.cascade._indexer import DocumentIndexer, IndexerParts
from everos.cascade._ledger import IndexLedger
from everos.cascade._rows import locate_document
from everos.cascade._snapshot import walk_document_dirs
from everos.cascade._worker import AttemptResult, IndexWorkers
from everos.config import CascadeSettings
from everos.ingest import _repository as repo
from everos.store._index_rows import FactRow, IndexedVectors, IndexSink, TopicRow

__all__ = ["PROGRESS_INTERVAL_S", "EmptiedIndex", "Progress", "rebuild"]

PROGRESS_INTERVAL_S = 0.5
"""How often a rebuild tells its ``on_progress`` how far it is while the queue drains."""

Progress = Callable[[int, int, int], object]
"""``on_progress(done, failed, total)``: ``done`` of ``total`` document directories had their
attempt, ``failed`` of those failed."""


class EmptiedIndex:
    """The :class:`~everos.store._index_rows.IndexSink` of a rebuild into an index its caller
    just emptied: writes go to ``sink``; :meth:`topic_hashes` and :meth:`indexed_vectors` answer
    ``{}`` without asking it, which is what an empty index holds (a rebuild writes each document
    once)."""

    def __init__(self, sink: IndexSink) -> None:
        self._sink = sink

    async def replace_document(self, doc_id: str, topics: list[TopicRow], facts: list[FactRow]) -> None:
        await self._sink.replace_document(doc_id, topics, facts)

    async def delete_document(self, doc_id: str) -> int:
        return await self._sink.delete_document(doc_id)

    async def topic_hashes(self, doc_id: str) -> dict[str, str]:
        await trio.lowlevel.checkpoint()
        return {}

    async def indexed_vectors(self, doc_id: str) -> dict[str, IndexedVectors]:
        await trio.lowlevel.checkpoint()
        return {}


async def rebuild(
    *, ledger: IndexLedger, parts: IndexerParts, settings: CascadeSettings, index_emptied: bool,
    on_progress: Progress | None = None,
) -> tuple[int, list[str], list[AttemptResult]]:
    """Rebuild the index of ``parts.root`` from its markdown: returns how many documents were
    dropped (known to the cascade or SQLite before), the directories queued (sorted) and how
    each attempt ended.

    SQLite rows of documents no longer on disk are deleted, the cascade's state and topic cache
    cleared, every document directory queued, then the queue drained with
    ``settings.rebuild_workers`` attempts at once. ``index_emptied``: the caller dropped the index
    tables (see the module docstring). ``on_progress`` is called every
    :data:`PROGRESS_INTERVAL_S` while the queue drains and once at the end. A checkpoint.

    Raises:
        StoreBusy: SQLite or the index did not answer in time (run it again: every step is
            idempotent, G8).
    """
    root, db = parts.root, parts.db
    disk = await trio.to_thread.run_sync(walk_document_dirs, root, limiter=parts.files_limiter)
    doc_dirs = sorted(doc_dir for doc_dir, stat in disk.items() if stat is not None)
    on_disk = {locate_document(doc_dir).doc_id for doc_dir in doc_dirs}
    known = set(await db.read(state.indexed_doc_ids)) | set(await db.read(_knowledge_doc_ids))
    if not index_emptied:
        await _delete_all(parts.sink, sorted(known), settings.rebuild_workers)

    def reset(conn) -> None:
        state.clear_all(conn)
        for doc_id in known - on_disk:
            repo.delete_document(conn, doc_id)

    await db.write(reset)
    await ledger.enqueue_many(doc_dirs, "rebuild")
    workers = IndexWorkers(ledger, DocumentIndexer(dataclasses.replace(parts, sink=EmptiedIndex(parts.sink))),
                           settings, clock=parts.clock)
    results: list[AttemptResult] = []
    async with trio.open_nursery() as nursery:
        if on_progress is not None:
            nursery.start_soon(_report_progress, workers, len(doc_dirs), on_progress)

        async def drain() -> None:
            results.extend(await workers.drain(f"cascade-rebuild-{os.getpid()}",
                                               concurrency=settings.rebuild_workers))
            nursery.cancel_scope.cancel()

        nursery.start_soon(drain)
    if on_progress is not None:
        _tell(workers, len(doc_dirs), on_progress)
    return len(known), doc_dirs, results


async def _delete_all(sink: IndexSink, doc_ids: list[str], in_flight: int) -> None:
    """Delete ``doc_ids`` from the index, ``in_flight`` at once: the writer merges deletes
    queued together into one commit."""
    pending = iter(doc_ids)

    async def deleter() -> None:
        for doc_id in pending:
            await sink.delete_document(doc_id)

    async with trio.open_nursery() as nursery:
        for _ in range(max(1, in_flight)):
            nursery.start_soon(deleter)


async def _report_progress(workers: IndexWorkers, total: int, on_progress: Progress) -> None:
    while True:
        _tell(workers, total, on_progress)
        await trio.sleep(PROGRESS_INTERVAL_S)


def _tell(workers: IndexWorkers, total: int, on_progress: Progress) -> None:
    # Attempts, not documents: capped at the total, in case a row ran twice (a change meanwhile).
    on_progress(min(workers.attempts_finished, total), min(workers.attempts_failed, total), total)


def _knowledge_doc_ids(conn) -> list[str]:
    return [row[0] for row in conn.execute("SELECT doc_id FROM knowledge_documents")]
