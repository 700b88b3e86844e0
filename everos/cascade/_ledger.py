"""The cascade's document status in one place: the queue row and the index state of a document
directory change together here, and nowhere else.

A directory's status lives in two tables: its queue row in ``md_change_state`` (queued, running,
succeeded, failed, dead; lease, attempts, last error) and its index state in
``cascade_index_state`` (``pending``, ``indexed``, ``failed``, which list/get, ``/health`` and
``everos cascade status|fix`` answer). Every transition that moves both is a method of
:class:`IndexLedger`, so they cannot drift::

    transition                 queue row                         index state
    queue (ingest, watch ...)  enqueue, merged by key            pending (written first)
    queue many (rebuild)       enqueue_many, merged by key       pending, all in one write first
    queue for vectors          enqueue, the receipt kept         unchanged: stays indexed
    requeue (cascade fix)      requeue, fresh attempts           pending (written first)
    an attempt failed          fail: backoff, dead or failed     failed once the row gave up
    an attempt succeeded       complete                          (the indexer wrote indexed)
    leases lost (reap, start)  back to the queue, or dead        failed for the rows that died

The index state is written before the queue row, so a document never shows ``indexed`` while a
row that would change it waits. What an attempt sees and does (the fingerprint it read, indexed
with its signature, a directory gone) is the indexer's, in :mod:`everos.cascade._state`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from everos.cascade import _state as state
from everos.cascade._rows import locate_document
from everos.knowledge._fingerprint import WrittenFiles
from everos.logs import current_request_id
from everos.store import Database, Job, JobError, JobStatus, LeasedQueue, QueueStats
from everos.store._lease import COLUMNS, job_from_row

__all__ = ["QUEUE_KIND", "QUEUE_TABLE", "VECTORS_KIND", "IndexLedger"]

QUEUE_TABLE = "md_change_state"
QUEUE_KIND = "knowledge_document"
# A row queued only for its deferred vectors (enqueue_for_vectors): leased after every other row,
# so a slow embedder's passes never hold up the keyword index of what was uploaded since.
VECTORS_KIND = "knowledge_document_vectors"
# The queue rows whose last enqueue the cascade has run, or will: files still carrying that
# enqueue's receipt need no new row.
_HANDLED = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED)


def _for_request(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with the current request id, when there is one: the row's attempt runs for it."""
    request_id = current_request_id()
    return payload if request_id is None else {**payload, "request_id": request_id}


class IndexLedger:
    """The queue rows (``queue``, a :class:`~everos.store.LeasedQueue` over ``md_change_state``,
    keyed by document directory) and the index states (in ``db``) of one root; see the module
    docstring. Leasing, renewing and releasing a row change no index state: workers use
    ``queue`` for those. ``clock`` gives seconds since the epoch."""

    def __init__(self, db: Database, queue: LeasedQueue, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.queue = queue
        self._clock = clock

    # -- transitions ----------------------------------------------------------------------------

    async def enqueue(self, doc_dir: str, doc_id: str, reason: str, *, written: WrittenFiles | None = None) -> None:
        """Queue ``doc_dir`` (relative to the root): ``pending`` first, then the row. ``written`` is
        the receipt of files a writer just published there with their rows; the attempt trusts
        those rows while the files still carry it. The current request id (the upload's, the
        PATCH's), if any, goes with the row.

        Raises:
            StoreBusy: SQLite did not answer in time.
        """
        payload: dict[str, Any] = _for_request({"doc_dir": doc_dir, "reason": reason})
        if written is not None:
            payload["written"] = written.as_payload()
        await self.db.write(state.mark_pending, doc_dir, doc_id, self._clock())
        await self.queue.enqueue(QUEUE_KIND, payload, key=doc_dir)

    async def enqueue_many(self, doc_dirs: Sequence[str], reason: str) -> None:
        """Queue many directories at once (a rebuild): every one ``pending`` in one write, then
        their rows, hundreds a transaction, as :meth:`enqueue` without a receipt.

        Raises:
            StoreBusy: SQLite did not answer in time.
        """
        now = self._clock()

        def mark(conn) -> None:
            for doc_dir in doc_dirs:
                state.mark_pending(conn, doc_dir, locate_document(doc_dir).doc_id, now)

        await self.db.write(mark)
        await self.queue.enqueue_many(
            QUEUE_KIND, [(doc_dir, _for_request({"doc_dir": doc_dir, "reason": reason})) for doc_dir in doc_dirs])

    async def enqueue_for_vectors(self, doc_dirs: Iterable[str], *, available_at: float | None = None) -> None:
        """Queue indexed directories again to embed their pending vectors; they stay ``indexed``
        (searchable by keyword) meanwhile. The rows are of ``VECTORS_KIND``: workers lease them
        after the rest. A row already queued for another change takes this kind too; the attempt
        indexes whatever changed all the same, only later.

        A row keeps the writer's receipt its last enqueue carried: while the files carry it the
        vector pass indexes the writer's rows (no read back, no parse, no row write), and the
        watcher's event for those files, which comes after the keyword pass when that pass is
        quick, finds them handled (:meth:`handled`) instead of queueing the upload once more.
        ``available_at``: the rows' turn (see :meth:`LeasedQueue.enqueue`), else now."""
        for doc_dir in doc_dirs:
            payload = _for_request({"doc_dir": doc_dir, "reason": "re-embed"})
            written = await self._receipt(doc_dir)
            if written is not None:
                payload["written"] = written.as_payload()
            await self.queue.enqueue(VECTORS_KIND, payload, key=doc_dir, available_at=available_at)

    async def requeue(self, jobs: Sequence[Job]) -> int:
        """Queue rows again with fresh attempts (``cascade fix --apply``), their documents
        ``pending`` first; returns how many rows changed."""
        now = self._clock()

        def mark(conn) -> None:
            for job in jobs:
                state.mark_pending(conn, job.key, locate_document(job.key).doc_id, now)

        await self.db.write(mark)
        return await self.queue.requeue(job.id for job in jobs)

    async def complete(self, job: Job, owner: str, result: Any) -> bool:
        """End ``owner``'s attempt as a success (the indexer recorded ``indexed``); True if it
        took effect."""
        return await self.queue.complete(job.id, owner, result)

    async def fail(self, job: Job, owner: str, error: JobError, *, retry_after_seconds: float,
                   retryable: bool) -> bool:
        """End ``owner``'s attempt as a failure with ``error`` (stored as code + message; the state
        row keeps its shown ``CODE: message`` text): the row is retried after the backoff, or gives
        up (``dead`` after its attempts, ``failed`` when not retryable), and the document shows
        ``failed`` once it gave up (``pending`` before). True if it took effect (False: the lease
        was lost, and the row's new owner settles it)."""
        if not await self.queue.fail(job.id, owner, error, retry_after_seconds, retryable=retryable):
            return False
        message = str(error)
        settled = await self.queue.get(job.id)
        terminal = settled is not None and settled.status in (JobStatus.DEAD, JobStatus.FAILED)
        now = self._clock()
        await self.db.write(lambda conn: state.mark_failed(conn, job.key, message, terminal=terminal, now=now))
        return True

    async def reap(self) -> int:
        """Settle expired leases (back to the queue, or dead); rows that died this way show
        ``failed``. Returns how many were settled."""
        reaped = await self.queue.reap_expired()
        if reaped:
            await self._mark_given_up()
        return reaped

    async def recover(self) -> int:
        """At startup: settle the rows a previous process left running, as :meth:`reap` does."""
        recovered = await self.queue.recover()
        if recovered:
            await self._mark_given_up()
        return recovered

    async def _mark_given_up(self) -> None:
        """Mark ``failed`` the state of every dead or failed row still ``pending`` (they died
        without their worker writing it: a reaped lease, a crash)."""
        dead = await self.given_up()
        now = self._clock()

        def mark(conn) -> None:
            for job in dead:
                row = state.get_state(conn, job.key)
                if row is not None and row["status"] == "pending":
                    state.mark_failed(conn, job.key, job.last_error or "failed", terminal=True, now=now)

        if dead:
            await self.db.write(mark)

    # -- reading --------------------------------------------------------------------------------

    async def given_up(self) -> list[Job]:
        """Every dead row, then every failed one."""
        jobs: list[Job] = []
        for status in (JobStatus.DEAD, JobStatus.FAILED):
            found: list[Job] = []
            while batch := await self.queue.list(status, limit=500, offset=len(found)):
                found.extend(batch)
            jobs.extend(found)
        return jobs

    async def scan_view(self) -> tuple[dict[str, str | None], dict[str, Job]]:
        """What the scanner compares the disk with: ``{doc_dir: fingerprint}`` the last attempts
        saw, and the queued, running, dead and failed rows by directory."""
        seen = await self.db.read(state.fingerprints)
        rows: dict[str, Job] = {}
        for status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.DEAD, JobStatus.FAILED):
            offset = 0
            while batch := await self.queue.list(status, limit=500, offset=offset):
                offset += len(batch)
                rows.update((job.key, job) for job in batch if job.key is not None)
        return seen, rows

    async def handled(self, doc_dir: str, fingerprint: str) -> bool:
        """True when the row of ``doc_dir`` was last queued with a receipt of files with this
        ``fingerprint`` and is queued, running or done: the cascade runs (or ran) those files,
        and a change event that found them needs no new row. One SQLite read.

        Raises:
            StoreBusy: SQLite did not answer in time.
        """
        job = await self._row(doc_dir)
        if job is None:
            return False
        written = WrittenFiles.from_payload((job.payload or {}).get("written"))
        return job.status in _HANDLED and written is not None and written.fingerprint == fingerprint

    async def _receipt(self, doc_dir: str) -> WrittenFiles | None:
        """The writer's receipt the row of ``doc_dir`` was last queued with, if any."""
        job = await self._row(doc_dir)
        return None if job is None else WrittenFiles.from_payload((job.payload or {}).get("written"))

    async def _row(self, doc_dir: str) -> Job | None:
        row = await self.db.fetchone(f"SELECT {COLUMNS} FROM {QUEUE_TABLE} WHERE key = ?", (doc_dir,))
        return None if row is None else job_from_row(row)

    async def index_states(self, doc_ids: Sequence[str]) -> dict[str, state.IndexState]:
        """``{doc_id: IndexState}`` of the given documents the cascade knows."""
        return await self.db.read(state.index_states, list(doc_ids))

    async def documents_ahead(self, doc_ids: Sequence[str]) -> dict[str, int]:
        """``{doc_id: rows}`` for those of the given documents that wait for their index
        (``pending``, their row queued or running): how many queued rows the index workers lease
        before theirs (oldest first, deferred vector passes last, as :meth:`LeasedQueue.lease`
        orders them); 0 once their row runs. One SQLite read.

        Raises:
            StoreBusy: SQLite did not answer in time.
        """
        return await self.db.read(_documents_ahead, list(doc_ids))

    async def status_facts(self, recent: int) -> tuple[QueueStats, dict[str, int], list[dict[str, object]], int]:
        """What the status block is made of: queue stats, documents per index status, the
        ``recent`` newest failures, and how many documents wait for vectors."""
        stats = await self.queue.stats()
        counts, failures, vectors_pending = await self.db.read(lambda conn: (
            state.state_counts(conn), state.recent_failures(conn, recent), state.vectors_pending_count(conn)))
        return stats, counts, failures, vectors_pending


# A document's pending directories with their row (queued or running): its place in the lease order.
_OWN_ROWS = ("SELECT q.status, q.kind = ?, q.available_at, q.rowid FROM cascade_index_state s"
             f" JOIN {QUEUE_TABLE} q ON q.key = s.doc_dir"
             " WHERE s.doc_id = ? AND s.status = 'pending' AND q.status IN ('queued', 'running')")
# The queued rows before a place (later, available_at, rowid): ``kind = ?`` is 0 for a row of any
# other kind and 1 for a vector pass, so it sorts them last, as LeasedQueue.lease does.
_ROWS_BEFORE = (f"SELECT count(*) FROM {QUEUE_TABLE} WHERE status = 'queued'"
                " AND ((kind = ?) < ? OR ((kind = ?) = ? AND (available_at < ? OR (available_at = ? AND rowid < ?))))")


def _documents_ahead(conn, doc_ids: list[str]) -> dict[str, int]:
    ahead: dict[str, int] = {}
    for doc_id in doc_ids:
        counts = []
        for status, later, available_at, rowid in conn.execute(_OWN_ROWS, (VECTORS_KIND, doc_id)).fetchall():
            if status == "running":
                counts.append(0)
            else:
                place = (VECTORS_KIND, later, VECTORS_KIND, later, available_at, available_at, rowid)
                counts.append(conn.execute(_ROWS_BEFORE, place).fetchone()[0])
        if counts:  # a moved document has two directories: the one nearer its turn
            ahead[doc_id] = min(counts)
    return ahead
