"""The one task that writes the LanceDB index.

:class:`IndexWriter` is the only writer (G9): one task draining a bounded channel of document
operations, coalescing what is queued into one indexed delete and one upsert per table (G8: running an
operation twice is harmless). It optimizes (compacts, folds new rows into the indexes, prunes old
versions) on thresholds: ``optimize_after_commits`` commits (each adds fragments, and a search
opens every fragment's files: G5b, EverOS 1.1 ran out of file descriptors here) or
``optimize_after_rows`` rows written (rows not yet in an index are searched by a scan), and every
``optimize_interval_seconds`` while old versions may remain. Once it has been idle for
``release_memory_after_seconds`` after a write or an optimize, it gives the memory they freed back
to the system (:func:`everos.allocator.release_free_memory`, in a thread; issue #17 item 5: after
10,000 topics glibc held 250 MiB free in its arenas).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import trio

from everos.allocator import release_free_memory
from everos.config import CascadeSettings
from everos.errors import ServiceUnavailable, StoreBusy
from everos.metrics import INDEX_COMMIT_OPERATIONS, INDEX_COMMIT_SECONDS
from everos.store._index_rows import FactRow, IndexedVectors, TopicRow
from everos.store._lancedb import IndexStore
from everos.store._lancedb_schema import WriteOp

__all__ = ["IndexWriter"]

log = logging.getLogger("everos.index")


class IndexWriter:
    """The one task that writes the index; implements :class:`~everos.store.IndexSink`.

    Start :meth:`run` in the root nursery (``await nursery.start(writer.run)``). Callers of
    :meth:`replace_document` and :meth:`delete_document` put an operation on a channel of
    ``writer_queue_batches`` slots and wait for its commit; when the channel is full they wait too
    (backpressure, G9). The writer takes what is queued, up to ``writer_batch_rows`` rows, and
    commits it in one delete and one upsert per table; on the thresholds of the module docstring
    it optimizes both tables.

    Cancellation: an operation that was handed to the writer lands whole even if its caller is
    cancelled, and a batch in progress is finished (shielded) when the writer itself is cancelled.
    """

    def __init__(self, store: IndexStore, settings: CascadeSettings) -> None:
        self._store = store
        self._settings = settings
        self._send, self._receive = trio.open_memory_channel[WriteOp](settings.writer_queue_batches)
        self._carry: WriteOp | None = None
        self._writes_since_optimize = 0
        self._rows_since_optimize = 0
        self._last_write_at: float | None = None  # trio clock
        self._last_optimize_at: float | None = None  # trio clock
        self._busy_until: float | None = None  # trio clock: the end of the last write or optimize
        self._released = True  # nothing freed since memory was last given back
        self._stats: dict[str, Any] = {
            "writes": 0, "operations": 0, "optimizations": 0, "last_optimize_at": None,
            "last_optimize_seconds": None, "last_error": None, "last_error_at": None,
            "memory_releases": 0, "last_memory_release_mib": None,
        }

    # -- the sink ------------------------------------------------------------------------------------

    async def replace_document(self, doc_id: str, topics: list[TopicRow], facts: list[FactRow]) -> None:
        """Make the index hold exactly ``topics`` and ``facts`` for ``doc_id``; return once committed.

        Raises:
            ValueError: a row belongs to another document, an id repeats, or a vector is neither
                empty nor ``dim`` wide (nothing is queued).
            StoreBusy: the queue stayed full, or the commit did not come, within
                ``call_timeout_seconds`` each (in the second case it may still land: retry).
            ServiceUnavailable: the writer stopped before committing it.
        """
        dim = self._store.dim
        for rows in (topics, facts):
            if len({row.id for row in rows}) != len(rows):
                raise ValueError(f"row ids repeat in the rows of {doc_id}")
            for row in rows:
                if row.doc_id != doc_id:
                    raise ValueError(f"row {row.id} belongs to {row.doc_id}, not {doc_id}")
                if row.vector and len(row.vector) != dim:
                    raise ValueError(f"row {row.id} has a {len(row.vector)}-wide vector; the index holds {dim}")
        await self._submit(WriteOp(doc_id, tuple(topics), tuple(facts)))

    async def delete_document(self, doc_id: str) -> int:
        """Remove every topic and fact of ``doc_id``; return how many topic rows were removed.
        Raises as :meth:`replace_document`."""
        op = WriteOp(doc_id, None, ())
        await self._submit(op)
        return op.removed_topics

    async def topic_hashes(self, doc_id: str) -> dict[str, str]:
        """``{topic_id: content_sha256}`` for ``doc_id``: a read, it does not wait for the writer."""
        return await self._store.topic_hashes(doc_id)

    async def indexed_vectors(self, doc_id: str) -> dict[str, IndexedVectors]:
        """The vectors indexed for ``doc_id``'s topics: a read, it does not wait for the writer."""
        return await self._store.indexed_vectors(doc_id)

    async def _submit(self, op: WriteOp) -> None:
        timeout = self._store.settings.call_timeout_seconds
        with trio.move_on_after(timeout) as sending:
            await self._send.send(op)
        if sending.cancelled_caught:
            raise StoreBusy(f"the index writer's queue stayed full for {timeout} s", retry_after_s=5.0)
        with trio.move_on_after(timeout) as waiting:
            await op.done.wait()
        if waiting.cancelled_caught:
            raise StoreBusy(f"the index write of {op.doc_id} was not committed within {timeout} s; "
                            "it may still land", retry_after_s=5.0)
        if op.error is not None:
            raise op.error

    # -- the task ------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Drain the channel forever. Returns only by cancellation; operations still queued then
        fail with :class:`~everos.errors.ServiceUnavailable` (their callers retry)."""
        task_status.started()
        try:
            while True:
                batch = await self._next_batch()
                if batch:
                    await self._write(batch)
                if self._optimize_due():
                    await self._optimize()
                if self._release_due():
                    await self._release_memory()
        finally:
            self._fail_queued()

    async def _next_batch(self) -> list[WriteOp]:
        first, self._carry = self._carry, None
        if first is None:
            with trio.move_on_at(min(self._next_periodic_optimize_at(), self._release_at())):
                first = await self._receive.receive()
            if first is None:
                return []
        batch, rows = [first], first.rows
        while rows < self._settings.writer_batch_rows:
            try:
                op = self._receive.receive_nowait()
            except trio.WouldBlock:
                break
            if rows + op.rows > self._settings.writer_batch_rows:
                self._carry = op  # first of the next batch: one batch never exceeds the row budget
                break
            batch.append(op)
            rows += op.rows
        return batch

    async def _write(self, batch: list[WriteOp]) -> None:
        with trio.CancelScope(shield=True):  # bounded: one batch, its limiter wait under a deadline
            started = time.perf_counter()
            try:
                await self._store._commit(batch)
            except Exception as exc:
                self._record_error(exc)
                for op in batch:
                    op.error = exc
                if len(batch) > 1 and not isinstance(exc, StoreBusy):
                    await self._write_one_by_one(batch)  # one bad operation must not fail the others
            finally:
                self._writes_since_optimize += 1
                self._rows_since_optimize += sum(op.rows for op in batch)
                self._last_write_at = self._busy_until = trio.current_time()
                self._released = False
                self._stats["writes"] += 1
                self._stats["operations"] += len(batch)
                INDEX_COMMIT_SECONDS.observe(time.perf_counter() - started)
                INDEX_COMMIT_OPERATIONS.observe(len(batch))
                for op in batch:
                    op.done.set()

    async def _write_one_by_one(self, batch: list[WriteOp]) -> None:
        for op in batch:
            try:
                await self._store._commit([op])
                op.error = None
            except Exception as exc:
                op.error = exc

    def _optimize_due(self) -> bool:
        if (self._writes_since_optimize >= self._settings.optimize_after_commits
                or self._rows_since_optimize >= self._settings.optimize_after_rows):
            return True
        return trio.current_time() >= self._next_periodic_optimize_at()

    def _next_periodic_optimize_at(self) -> float:
        """When the periodic optimize is due: only while writes happened since the last one, or
        recently enough before it that the versions they left are not yet removed."""
        if self._last_write_at is None:
            return math.inf
        last = self._last_optimize_at
        if last is not None and self._last_write_at < last - self._settings.cleanup_older_than_seconds:
            return math.inf
        start = last if last is not None else self._last_write_at
        return start + self._settings.optimize_interval_seconds

    def _release_at(self) -> float:
        """When the memory freed by the last writes and optimize is given back: once the writer has
        been idle ``release_memory_after_seconds`` (never when that is 0 or nothing was freed)."""
        after = self._settings.release_memory_after_seconds
        if self._released or after <= 0 or self._busy_until is None:
            return math.inf
        return self._busy_until + after

    def _release_due(self) -> bool:
        idle = self._carry is None and not self._send.statistics().current_buffer_used
        return idle and trio.current_time() >= self._release_at()

    async def _release_memory(self) -> None:
        self._released = True
        # Under the lancedb budget (G5): it walks the arenas LanceDB's threads allocate from.
        freed, took_ms = await trio.to_thread.run_sync(_timed_release, limiter=self._store.limiter)
        self._stats["memory_releases"] += 1
        if freed is not None:
            self._stats["last_memory_release_mib"] = round(freed / 2**20, 1)
            log.info("gave %.1f MiB of freed memory back to the system in %.1f ms", freed / 2**20, took_ms)

    async def _optimize(self) -> None:
        started, started_wall = trio.current_time(), time.time()
        self._writes_since_optimize = self._rows_since_optimize = 0
        self._last_optimize_at = started
        try:
            await self._store.optimize(self._settings.cleanup_older_than_seconds)
        except Exception as exc:
            self._record_error(exc)
            log.warning("index optimize failed: %s", exc)
            return
        self._stats["optimizations"] += 1
        self._stats["last_optimize_at"] = started_wall
        self._stats["last_optimize_seconds"] = round(trio.current_time() - started, 3)
        self._busy_until = trio.current_time()
        self._released = False

    def _record_error(self, exc: BaseException) -> None:
        self._stats["last_error"] = f"{type(exc).__name__}: {exc}"[:500]
        self._stats["last_error_at"] = time.time()

    def _fail_queued(self) -> None:
        pending = [self._carry] if self._carry is not None else []
        self._carry = None
        while True:
            try:
                pending.append(self._receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
        for op in pending:
            op.error = ServiceUnavailable("the index writer stopped before this write", retry_after_s=5.0)
            op.done.set()

    def statistics(self) -> dict[str, Any]:
        """Plain data for /health: rows and version per table, pending operations, commits,
        optimizations and the last error. Not a checkpoint; no I/O."""
        return {
            **self._stats,
            "pending_operations": self._send.statistics().current_buffer_used + (self._carry is not None),
            "queue_capacity": self._settings.writer_queue_batches,
            "rows": dict(self._store.rows),
            "versions": dict(self._store.versions),
        }


def _timed_release() -> tuple[int | None, float]:
    """:func:`release_free_memory` and how long it took (ms), not counting the wait for a thread."""
    started = time.perf_counter()
    freed = release_free_memory()
    return freed, (time.perf_counter() - started) * 1000
