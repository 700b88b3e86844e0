"""Index workers: lease a document directory from ``md_change_state``, index it, settle the row.

Each attempt runs in its own cancel scope with ``row_timeout_seconds`` (G3); its lease is renewed
every third of ``lease_seconds`` while it runs, and if the lease is lost (reaped, or the row was
deleted) the attempt stops at once (G7). A failed attempt goes back to the queue after
``retry_backoff_seconds`` and the row is ``dead`` after ``max_attempts``, with its last error
kept; an attempt that cannot succeed by trying again (a malformed file) fails the row at once.
Every row is settled through the :class:`~everos.cascade._ledger.IndexLedger`, which moves the
row and its document's index status together. Nothing is held while waiting: a row is leased only when a worker is free to run it, one at a
time per worker, unlike EverOS 1.1, which claimed 50 and waited on the slowest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio
from trio_util import periodic

from everos.cascade._indexer import DEFERRED, DocumentIndexer, IndexOutcome
from everos.cascade._ledger import QUEUE_KIND, QUEUE_TABLE, VECTORS_KIND, IndexLedger
from everos.config import CascadeSettings
from everos.errors import EverosError, InvalidInput, PathTraversal, StoreBusy
from everos.knowledge._fingerprint import WrittenFiles
from everos.logs import carrying_request_id
from everos.providers import EmbeddingDimensionError
from everos.store import Job, JobError
from everos.store._attempt import run_leased_attempt

__all__ = ["PERMANENT_ERRORS", "QUEUE_KIND", "QUEUE_TABLE", "AttemptResult", "IndexWorkers", "embed_phase_seconds",
           "vector_pass_seconds"]

log = logging.getLogger("everos.cascade")

# Errors that trying again cannot fix: the row fails at once (a fixed file queues it again).
PERMANENT_ERRORS = (InvalidInput, PathTraversal, EmbeddingDimensionError)
# How long an idle worker sleeps before looking again for rows whose backoff ended.
IDLE_POLL_MAX_S = 5.0


# The embedding phase gets at most this share of a row's deadline: facts take up to half, and
# the write must still fit, so a stalled embedder never costs the row its keyword index.
EMBED_PHASE_SHARE = 0.4


def embed_phase_seconds(settings: CascadeSettings) -> float:
    """The deadline of one attempt's embedding phase: ``embed_timeout_seconds``, at most
    :data:`EMBED_PHASE_SHARE` of ``row_timeout_seconds``."""
    return min(settings.embed_timeout_seconds, EMBED_PHASE_SHARE * settings.row_timeout_seconds)


# A pass that only makes vectors (its document searchable by keyword already) may embed for this
# share of the row's deadline: the rest is for reading the document and writing the rows.
VECTOR_PASS_SHARE = 0.75


def vector_pass_seconds(settings: CascadeSettings) -> float:
    """The deadline of the embedding phase of a pass that only makes vectors: at least
    :func:`embed_phase_seconds`, else :data:`VECTOR_PASS_SHARE` of ``row_timeout_seconds``."""
    return max(embed_phase_seconds(settings), VECTOR_PASS_SHARE * settings.row_timeout_seconds)


@dataclass(frozen=True)
class AttemptResult:
    """How one attempt ended: ``outcome`` when it succeeded, ``error`` when it failed, neither
    when its lease was lost (another worker owns the row now)."""

    job_id: str
    doc_dir: str
    outcome: IndexOutcome | None = None
    error: str | None = None


class IndexWorkers:
    """The index workers of one root; see the module docstring.

    ``ledger`` holds the queue rows (``md_change_state``, keyed by document directory) and the
    index states, and settles every attempt; ``indexer`` runs one; ``settings`` are the
    cascade's; ``clock`` gives seconds since the epoch (progress)."""

    def __init__(self, ledger: IndexLedger, indexer: DocumentIndexer, settings: CascadeSettings,
                 *, clock: Callable[[], float] = time.time) -> None:
        self.ledger = ledger
        self.queue = ledger.queue
        self.indexer = indexer
        self.settings = settings
        self._clock = clock
        self.last_progress_at: float | None = None
        self.attempts_finished = 0
        # Attempts of all workers that are deriving rows or waiting for their commit (the hand-off).
        self._in_flight = trio.Semaphore(settings.attempts_in_flight)
        # Workers deriving a deferred vector pass at once: all but one, so a slow embedder never
        # holds every worker while uploads wait for their keyword index.
        self._vector_passes = trio.Semaphore(max(1, settings.workers - 1))
        self.attempts_failed = 0  # of attempts_finished

    # -- the long-lived workers -----------------------------------------------------------------

    async def work(self, owner: str) -> None:
        """Lease and run rows, forever. ``owner`` must be unique per worker and process.

        A worker derives one document's rows at a time; once it has handed them to the index
        writer it leases the next row, while the attempt waits for its commit and settles its row
        in a task of its own. So the writer finds many documents queued and commits them together
        (one commit per table costs about the same for one document as for fifty). At most
        ``attempts_in_flight`` attempts of all workers run at once. Cancelled at shutdown: rows in
        hand are released without spending an attempt."""
        idle_poll_s = min(IDLE_POLL_MAX_S, max(0.5, self.settings.retry_backoff_seconds))
        async with trio.open_nursery() as nursery:
            while True:
                try:
                    job = await self._lease_in_flight(owner)
                except StoreBusy as exc:
                    # SQLite is overloaded: wait rather than crash (a crash loop would stop the server).
                    log.warning("index worker %s could not lease: %s", owner, exc.message)
                    await trio.sleep(idle_poll_s)
                    continue
                if job is None:
                    await self.queue.wait_for_work(idle_poll_s)
                    continue
                await self._start_attempt(nursery, job, owner)

    async def _lease_in_flight(self, owner: str) -> Job | None:
        """One row leased under a slot of ``attempts_in_flight`` (None, the slot given back, when
        no row is available). Keyword work first: a vector pass waits while anything else is
        available, and is leased only under a free vector-pass slot, which the worker holds until
        the pass has handed its rows off (:meth:`_start_attempt` gives it back)."""
        await self._in_flight.acquire()
        may_embed = True
        try:
            self._vector_passes.acquire_nowait()
        except trio.WouldBlock:
            may_embed = False
        jobs: list[Job] = []
        try:
            jobs = await self.queue.lease(owner, 1, self.settings.lease_seconds, later_kinds=(VECTORS_KIND,),
                                          skip_later=not may_embed)
        finally:  # the slots a leased row does not hold go back, also when the lease failed
            if may_embed and not (jobs and jobs[0].kind == VECTORS_KIND):
                self._vector_passes.release()
            if not jobs:
                self._in_flight.release()
        return jobs[0] if jobs else None

    async def _start_attempt(self, nursery: trio.Nursery, job: Job, owner: str,
                             results: list[AttemptResult] | None = None) -> None:
        """Run the attempt at ``job`` in ``nursery``; return once it has handed its rows to the
        index writer or ended. It gives its ``attempts_in_flight`` slot back when it ends, and
        adds how it ended to ``results``; a vector pass's slot is given back once it returns."""
        handed_off = trio.Event()

        async def run() -> None:
            try:
                result = await self.attempt(job, owner, handed_off=handed_off.set)
                if results is not None:
                    results.append(result)
            finally:
                handed_off.set()
                self._in_flight.release()

        try:
            nursery.start_soon(run)
            await handed_off.wait()
        finally:
            if job.kind == VECTORS_KIND:
                self._vector_passes.release()

    async def reap_forever(self) -> None:
        """Every few seconds (from the start: ``periodic``), return rows with expired leases to
        the queue (or make them dead)."""
        async for _ in periodic(min(IDLE_POLL_MAX_S, self.settings.lease_seconds / 4)):
            try:
                await self.reap()
            except StoreBusy as exc:
                log.warning("cascade reaper skipped a round: %s", exc.message)

    async def reap(self) -> int:
        """Settle expired leases once; rows that died this way show ``failed`` in list/get."""
        reaped = await self.ledger.reap()
        if reaped:
            log.warning("returned %d index rows with expired leases to the queue", reaped)
        return reaped

    # -- one attempt ----------------------------------------------------------------------------

    async def attempt(self, job: Job, owner: str, *, handed_off: Callable[[], object] = lambda: None) -> AttemptResult:
        """Run one leased row under ``row_timeout_seconds``, renewing its lease, then settle it.

        Returns how it ended; never raises for a failure of the row itself. ``handed_off`` is
        the indexer's (:meth:`DocumentIndexer.index`).

        Cancellation handling: the lease is given back (shielded, bounded) without counting the
        attempt, and ``Cancelled`` propagates. The request that queued the row (an upload, a PATCH)
        is current meanwhile, so the attempt's log lines and model calls carry its id.
        """
        with carrying_request_id((job.payload or {}).get("request_id")):
            return await self._attempt(job, owner, handed_off)

    async def _attempt(self, job: Job, owner: str, handed_off: Callable[[], object]) -> AttemptResult:
        settings = self.settings
        doc_dir = job.key or (job.payload or {}).get("doc_dir", "")
        written = WrittenFiles.from_payload((job.payload or {}).get("written"))
        attempt = await run_leased_attempt(
            self.queue, job, owner, lambda: self.indexer.index(doc_dir, written, handed_off=handed_off),
            lease_seconds=settings.lease_seconds,
            timeout_seconds=settings.row_timeout_seconds,
            timeout_error=lambda: StoreBusy(
                f"indexing {doc_dir} did not finish within {settings.row_timeout_seconds:g} s"))
        outcome: dict[str, Any] = {}
        if attempt.succeeded:
            outcome["result"] = attempt.result
        elif attempt.error is not None:
            outcome["error"] = attempt.error
        with trio.CancelScope(shield=True), trio.move_on_after(self._settle_timeout_s()):
            try:
                return await self._settle(job, owner, doc_dir, outcome)
            except StoreBusy as exc:
                log.warning("could not settle index row %s: %s", doc_dir, exc.message)
        # The row keeps its lease until it expires; then the reaper settles it (G7).
        return AttemptResult(job.id, doc_dir, error="the row could not be settled in time")

    def _settle_timeout_s(self) -> float:
        # Four SQLite calls at most (fail, read back, state; or complete and queue the vectors),
        # each bounded by its own deadline.
        return 4 * self.ledger.db.settings.call_timeout_seconds

    async def _settle(self, job: Job, owner: str, doc_dir: str, outcome: dict[str, Any]) -> AttemptResult:
        if "result" in outcome:
            result: IndexOutcome = outcome["result"]
            if await self.ledger.complete(job, owner, result.as_result()):
                self._progress()
            if result.action in ("indexed", "deleted"):
                log.info("cascade %s %s (%d topics, %d facts, %d embedded)", result.action, doc_dir,
                         result.topics, result.facts, result.embedded)
            if result.vectors_pending == DEFERRED:
                try:  # behind what waits for its keyword index; else the re-embed pass queues it
                    await self.ledger.enqueue_for_vectors([doc_dir])
                except StoreBusy as exc:
                    log.warning("%s left for the re-embed pass: %s", doc_dir, exc.message)
            elif result.vectors_pending:
                log.warning("cascade indexed %s for keyword search only; vectors pending: %s", doc_dir,
                            result.vectors_pending)
                if result.embedded and job.kind == VECTORS_KIND:
                    # A slow embedder that works (e5 on a long document): the next pass keeps this
                    # one's turn, so documents get their vectors one after another, not all late.
                    try:
                        await self.ledger.enqueue_for_vectors([doc_dir], available_at=job.available_at)
                    except StoreBusy as exc:
                        log.warning("%s left for the re-embed pass: %s", doc_dir, exc.message)
            return AttemptResult(job.id, doc_dir, outcome=result)
        if "error" not in outcome:
            return AttemptResult(job.id, doc_dir)  # the lease was lost; its new owner settles it
        exc = outcome["error"]
        # Stored as code + message (``Type: text`` without a code for a non-everos error); the
        # state row keeps the shown form, the text /health and the document answers display.
        error = JobError.of(exc)
        message = str(error)
        retryable = not isinstance(exc, PERMANENT_ERRORS)
        if not isinstance(exc, EverosError):
            log.error("index row %s failed", doc_dir, exc_info=exc)
        else:
            log.warning("index row %s failed (attempt %d of %d): %s", doc_dir, job.attempts, job.max_attempts, message)
        if await self.ledger.fail(job, owner, error, retry_after_seconds=self.settings.retry_backoff_seconds,
                                  retryable=retryable):
            self._progress(failed=True)
        return AttemptResult(job.id, doc_dir, error=message)

    def _progress(self, *, failed: bool = False) -> None:
        self.last_progress_at = self._clock()
        self.attempts_finished += 1
        self.attempts_failed += failed

    # -- draining (CLI) -------------------------------------------------------------------------

    async def drain(self, owner: str, *, concurrency: int = 1) -> list[AttemptResult]:
        """Run every row available now, with ``concurrency`` workers, until none is left; rows
        in backoff are not waited for. Returns how each attempt ended, in order of completion."""
        results: list[AttemptResult] = []

        async def one(index: int, nursery: trio.Nursery) -> None:
            worker = f"{owner}-{index}"
            while job := await self._lease_in_flight(worker):
                await self._start_attempt(nursery, job, worker, results)

        while True:  # an attempt that ends can queue more (its vector pass, a change meanwhile)
            finished = len(results)
            async with trio.open_nursery() as nursery:
                for index in range(max(1, concurrency)):
                    nursery.start_soon(one, index, nursery)
            if len(results) == finished:
                return results
