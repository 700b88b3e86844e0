"""The cascade as a server part, and the operations behind ``everos cascade ...``.

::

    ingest, PATCH (enqueue_document, with the receipt of the files they wrote) ─┐
    watcher (edits, debounced; not what a writer just queued)                   ├─> IndexLedger:
    scanner (fingerprints)                                                    ──┘   md_change_state
                                                                                    + index_status
                                index workers (lease, index, settle) ── reaper (expired leases)
                                          │
                      SQLite rows (list/get/topic) + IndexSink (search)

The cascade opens its own :class:`~everos.store.Database` on ``<root>/.index/sqlite/everos.db``,
the file the knowledge service uses: each opens the migration sets it needs and each set runs
once per file, so the two pools share the tables (and the ``sqlite`` thread limiter).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import trio
from trio_util import periodic

from everos.cascade import _state as state
from everos.cascade._facts import FactExtractor, SplitFacts
from everos.cascade._health import cascade_health, stall_after_seconds
from everos.cascade._indexer import (
    KEYWORD_ONLY,
    DocumentIndexer,
    DocumentLock,
    IndexerParts,
    SearchTokens,
    embedder_identity,
    no_document_lock,
)
from everos.cascade._ledger import QUEUE_TABLE, IndexLedger
from everos.cascade._rows import GONE, locate_document
from everos.cascade._rebuild import rebuild
from everos.cascade._scanner import Scanner
from everos.cascade._snapshot import stat_document_dir
from everos.cascade._watcher import Watcher
from everos.cascade._worker import AttemptResult, IndexWorkers, embed_phase_seconds, vector_pass_seconds
from everos.errors import InvalidInput, StoreBusy
from everos.ingest import _repository as repo
from everos.knowledge._fingerprint import WrittenFiles
from everos.providers import CircuitState, circuit_state
from everos.runtime import Runtime
from everos.store import Database, JobStatus, LeasedQueue, MigrationSet
from everos.store._index_rows import IndexSink
from everos.supervisor import Supervisor

__all__ = ["CascadeService", "cascade_migrations", "document_dir_of"]

log = logging.getLogger("everos.cascade")

MONITOR_INTERVAL_S = 1.0
# Documents with pending vectors queued again per re-embed round (the rest wait for the next).
REEMBED_BATCH = 100
# How many of the newest failed documents the status shows with their errors.
RECENT_FAILURES = 5
DATABASE_RELPATH = Path(".index") / "sqlite" / "everos.db"


def cascade_migrations() -> list[MigrationSet]:
    """Every migration set the cascade's tables need (the knowledge tables, the queue, its own)."""
    return [repo.MIGRATIONS, LeasedQueue.migration(QUEUE_TABLE), state.MIGRATIONS]


def document_dir_of(root: Path, path: str | os.PathLike[str]) -> str:
    """The document directory (relative to ``root``) that ``path`` is, or lies in.

    ``path`` is absolute (under ``root``) or relative to ``root``: a document directory, its
    ``index.md``, a topic file or anything below it. Pure (no disk access).

    Raises:
        InvalidInput: the path is outside the root or not inside a knowledge document directory.
    """
    candidate = Path(path)
    if candidate.is_absolute():
        try:
            candidate = candidate.relative_to(root)
        except ValueError:
            raise InvalidInput(f"{path} is not under the root {root}", field="path") from None
    parts = PurePosixPath(candidate.as_posix()).parts
    if len(parts) < 5:
        raise InvalidInput(f"{path} is not inside a knowledge document directory", field="path")
    doc_dir = "/".join(parts[:5])
    locate_document(doc_dir)
    return doc_dir


class CascadeService:
    """The cascade: index queue, workers, reaper, scanner, watcher and their status.

    Collaborators are given open, by the services opened before it (``everos.services``):
    ``sink`` is the :class:`~everos.store._index_rows.IndexSink`; ``embedder`` an embedder (``dim``
    and ``await embed(texts, budget=...)``); ``chat`` a :class:`~everos.providers.ChatClient` or
    None (no provider: no LLM facts), asked for facts unless ``[cascade] llm_facts = "off"``. The
    cascade closes none of them: their owners do.
    ``search_tokens(text)`` and ``split_facts(text, max_facts)`` are blocking callables run in
    cpu threads; with ``cpu_workers`` (:class:`~everos.workers.CpuWorkers`, the server's conversion
    pool) a document's tokenization runs in a worker process instead, under the conversion
    deadline and memory limit (``search_tokens`` must then pickle: a module-level function).
    ``clock`` (seconds since the epoch) times queue rows and state.
    """

    def __init__(
        self,
        *,
        sink: IndexSink,
        embedder: Any,
        search_tokens: SearchTokens,
        split_facts: SplitFacts,
        chat: Any | None = None,
        clock: Callable[[], float] = time.time,
        document_lock: DocumentLock = no_document_lock,
        cpu_workers: Any = None,
    ) -> None:
        self._document_lock = document_lock
        self._cpu_workers = cpu_workers
        self.sink = sink
        self.embedder = embedder
        self._chat = chat
        self._search_tokens = search_tokens
        self._split_facts = split_facts
        self._clock = clock
        self._snapshot: dict[str, Any] = {"healthy": True, "reasons": [], "pending": 0}
        self.db: Database | None = None

    # -- lifecycle (the Service protocol) -------------------------------------------------------

    async def open(self, runtime: Runtime, *, recover: bool = True) -> None:
        """Open the database, build the workers, return rows of a previous process to the queue
        (G7, skipped with ``recover=False``: ``cascade status`` next to a running server must not
        take its rows) and refresh the status (:meth:`status_block`, which the wiring publishes in
        /health). Raises what :meth:`Database.open` raises."""
        self.root: Path = runtime.loaded.root
        self.settings = runtime.config.cascade
        limiters = self.limiters = runtime.limiters
        self.db = await Database.open(self.root / DATABASE_RELPATH, runtime.config.sqlite, limiters.sqlite,
                                      migrations=cascade_migrations())
        self.queue = LeasedQueue(self.db, QUEUE_TABLE, max_attempts=self.settings.max_attempts, clock=self._clock)
        self.ledger = IndexLedger(self.db, self.queue, clock=self._clock)
        facts = FactExtractor(self._split_facts, limiters.cpu,
                              chat=None if self.settings.llm_facts == "off" else self._chat,
                              max_facts=self.settings.facts_per_topic,
                              context_tokens=runtime.config.llm.context_tokens,
                              llm_time_budget_seconds=self.settings.row_timeout_seconds / 2)
        self._indexer_parts = IndexerParts(
            root=self.root, db=self.db, sink=self.sink, embedder=self.embedder, facts=facts,
            search_tokens=self._search_tokens, files_limiter=limiters.files, cpu_limiter=limiters.cpu,
            clock=self._clock, document_lock=self._document_lock,
            embed_timeout_seconds=embed_phase_seconds(self.settings),
            vector_pass_seconds=vector_pass_seconds(self.settings), cpu_workers=self._cpu_workers,
            cpu_deadline_seconds=runtime.config.ingest.conversion_timeout_seconds,
            cpu_memory_mb=runtime.config.ingest.conversion_memory_mb)
        self.workers = IndexWorkers(self.ledger, DocumentIndexer(self._indexer_parts), self.settings, clock=self._clock)
        self.scanner = Scanner(root=self.root, ledger=self.ledger, enqueue=self.enqueue_document,
                               files_limiter=limiters.files, interval_seconds=self.settings.scan_interval_seconds,
                               full_scan_interval_seconds=self.settings.full_scan_interval_seconds,
                               clock=self._clock)
        self.watcher = Watcher(root=self.root, enqueue=self.enqueue_if_changed, on_tree_change=self.scanner.request_scan,
                               on_watching=self.scanner.watch_started, debounce_ms=self.settings.watch_debounce_ms)
        recovered = await self.ledger.recover() if recover else 0
        if recovered:
            log.warning("returned %d index rows of a previous process to the queue", recovered)
        if recover:
            identity = embedder_identity(self.embedder)
            changed = await self.db.write(state.mark_other_embedder, identity, KEYWORD_ONLY)
            if changed:
                log.warning("%d documents have vectors of another embedder than %s: they are embedded again in "
                            "the background (keyword search finds them meanwhile)", changed, identity)
        await self.refresh_status()

    def start_workers(self, supervisor: Supervisor) -> None:
        """Start the index workers, the reaper, the scanner, the watcher (when ``watch``), the
        status monitor and the re-embed pass under supervision. Not a checkpoint."""
        owner = f"cascade-{os.getpid()}-{os.urandom(3).hex()}"
        for index in range(self.settings.workers):
            supervisor.start(f"cascade-index-{index}", lambda index=index: self.workers.work(f"{owner}-{index}"))
        supervisor.start("cascade-reaper", self.workers.reap_forever)
        supervisor.start("cascade-scanner", self.scanner.run)
        if self.settings.watch:
            supervisor.start("cascade-watcher", self.watcher.run)
        supervisor.start("cascade-monitor", self._monitor)
        supervisor.start("cascade-reembed", self._reembed_forever)

    async def aclose(self) -> None:
        """Close the database. Idempotent."""
        if self.db is not None:
            await self.db.aclose()

    # -- producers ------------------------------------------------------------------------------

    async def enqueue_document(self, doc_dir: str | os.PathLike[str], reason: str = "ingest", *,
                               written: WrittenFiles | None = None) -> str:
        """Queue a document directory (absolute, or relative to the root) for indexing; its
        ``index_status`` becomes ``pending``. Returns the relative directory. For the ingest path
        after it publishes, PATCH after a move (both directories) and DELETE. ``written`` is the
        receipt of the files a writer just published there, its rows saved: while the files
        carry it, the attempt indexes those rows without reading the files back, and the
        watcher does not queue the directory again.

        A row already queued takes the new reason; one running is marked to run again.

        Raises:
            InvalidInput: ``doc_dir`` is not a knowledge document directory under the root.
            StoreBusy: SQLite did not answer in time.
        """
        relative = document_dir_of(self.root, doc_dir)
        await self.ledger.enqueue(relative, locate_document(relative).doc_id, reason, written=written)
        return relative

    async def enqueue_if_changed(self, doc_dir: str, reason: str) -> str | None:
        """The watcher's :meth:`enqueue_document`: nothing (None) when the directory's files are
        the ones a writer queued with their receipt and the row is queued, running or done, so
        an upload is indexed once, not once for ingest and again for its own file events.

        Raises:
            StoreBusy: SQLite did not answer in time.
        """
        stat = await trio.to_thread.run_sync(stat_document_dir, self.root, doc_dir, limiter=self.limiters.files)
        if await self.ledger.handled(doc_dir, GONE if stat is None else stat.fingerprint):
            return None
        return await self.enqueue_document(doc_dir, reason)

    # -- reading --------------------------------------------------------------------------------

    async def index_statuses(self, doc_ids: Iterable[str]) -> dict[str, str]:
        """``{doc_id: "pending" | "indexed" | "failed"}`` for every given id (unknown: pending)."""
        return {doc_id: found["index_status"] for doc_id, found in (await self.index_states(doc_ids)).items()}

    async def index_states(self, doc_ids: Iterable[str]) -> dict[str, dict[str, str | None]]:
        """``{doc_id: {"index_status", "index_error"}}`` for every given id (unknown: pending):
        the error is the last one of a ``failed`` document, ``vectors pending: <why>`` for an
        ``indexed`` one searchable by keyword only, None otherwise. One SQLite read.

        Raises:
            StoreBusy: SQLite did not answer in time.
        """
        ids = list(doc_ids)
        found = await self.ledger.index_states(ids)
        return {doc_id: found.get(doc_id, state.IndexState("pending")).fields() for doc_id in ids}

    async def documents_ahead(self, doc_ids: Iterable[str]) -> dict[str, int]:
        """See :meth:`IndexLedger.documents_ahead`: for each given document waiting for its
        index, the rows the index workers take before its own.

        Raises:
            StoreBusy: SQLite did not answer in time.
        """
        return await self.ledger.documents_ahead(list(doc_ids))

    def status_block(self) -> dict[str, Any]:
        """The /health block, from the last refresh (about once a second). Not a checkpoint."""
        return self._snapshot

    def index_lag(self) -> dict[str, int] | None:
        """While the index lags (``[cascade] lag_documents``, see :func:`cascade_health`):
        ``{"documents": waiting, "bound": lag_documents}`` from the last refresh; None otherwise.
        Not a checkpoint: an upload's answer reads it."""
        if not self._snapshot.get("lagging"):
            return None
        return {"documents": self._snapshot["waiting_documents"], "bound": self._snapshot["lag_documents"]}

    async def status(self) -> dict[str, Any]:
        """A fresh status (see :func:`cascade_health`) with the newest failures and their errors,
        plus worker progress of this process. Only reads.

        Raises:
            StoreBusy: SQLite did not answer in time.
        """
        stats, counts, failures, vectors_pending = await self.ledger.status_facts(RECENT_FAILURES)
        report = cascade_health(stats, counts, now=self._clock(), stall_after_s=stall_after_seconds(
            self.settings.row_timeout_seconds, self.settings.lease_seconds), recent_failures=failures,
            vectors_pending=vectors_pending, lag_documents=self.settings.lag_documents)
        report["attempts_finished"] = self.workers.attempts_finished
        report["last_scan_at"] = self.scanner.last_scan_at
        return report

    async def refresh_status(self) -> None:
        """Refresh what :meth:`status_block` and :meth:`index_lag` answer from (the monitor does,
        once a second).

        Raises:
            StoreBusy: SQLite did not answer in time.
        """
        self._snapshot = await self.status()

    async def _monitor(self) -> None:
        async for _ in periodic(MONITOR_INTERVAL_S):
            try:
                await self.refresh_status()
            except StoreBusy as exc:
                log.warning("cascade status not refreshed: %s", exc.message)

    async def _reembed_forever(self) -> None:
        interval_s = self.settings.reembed_interval_seconds
        await trio.sleep(interval_s)  # the first round one interval after the start
        async for _ in periodic(interval_s):
            try:
                await self.reembed()
            except StoreBusy as exc:
                log.warning("re-embed pass skipped a round: %s", exc.message)

    async def reembed(self) -> int:
        """Queue again the documents whose vectors are pending, when the embedder may answer: up
        to :data:`REEMBED_BATCH` while its circuit is closed, one (the probe) while it is
        half-open, none while it is open. They stay ``indexed`` meanwhile; an attempt embeds only
        what the topic cache lacks. Returns how many rows were queued.

        Raises:
            StoreBusy: SQLite did not answer in time.
        """
        circuit = circuit_state(self.embedder)
        if circuit is CircuitState.OPEN:
            return 0
        limit = 1 if circuit is CircuitState.HALF_OPEN else REEMBED_BATCH
        doc_dirs = await self.db.read(state.vectors_pending_dirs, limit)
        await self.ledger.enqueue_for_vectors(doc_dirs)
        if doc_dirs:
            log.info("queued %d documents again to embed their pending vectors", len(doc_dirs))
        return len(doc_dirs)

    # -- operations (the CLI, and the server's admin routes) ---------------------------------------

    async def sync(self, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """Queue ``path``'s document directory (or, without a path, whatever a scan finds
        changed), then run every row available until none is left. Returns a summary."""
        if path is not None:
            queued = [(await self.enqueue_document(path, "sync"), "sync")]
        else:
            queued = await self.scanner.scan_once()
        results = await self.drain()
        return {"queued": [doc_dir for doc_dir, _ in queued], **summarize(results)}

    async def drain(self) -> list[AttemptResult]:
        """Run every available row with ``workers`` concurrent attempts until none is left."""
        return await self.workers.drain(f"cascade-cli-{os.getpid()}", concurrency=self.settings.workers)

    async def fix(self, apply: bool = False, *, drain: bool = True) -> dict[str, Any]:
        """The dead and failed rows (``doc_dir``, ``status``, ``attempts``, ``last_error``);
        with ``apply``, queue them again with fresh attempts (``requeued``) and, with ``drain``,
        run them here (``outcomes``, ``failures``). Without ``apply`` it only reads.

        A running server passes ``drain=False``: its own index workers run the rows, and the
        request answers at once (G1).

        Raises:
            StoreBusy: SQLite did not answer in time.
        """
        rows = [job for status in (JobStatus.DEAD, JobStatus.FAILED) for job in await self.queue.list(status, limit=10_000)]
        report: dict[str, Any] = {"rows": [
            {"doc_dir": job.key, "status": str(job.status), "attempts": job.attempts, "last_error": job.last_error}
            for job in rows]}
        if apply:
            report["requeued"] = await self.ledger.requeue(rows) if rows else 0
            if drain:
                report.update(summarize(await self.drain() if rows else []))
        return report

    async def rebuild(self, *, index_emptied: bool = False,
                      on_progress: Callable[[int, int, int], object] | None = None) -> dict[str, Any]:
        """Drop the derived state and index every document directory under the root again
        (:func:`everos.cascade._rebuild.rebuild`: many attempts at once, so the index writer
        merges their commits). ``index_emptied``: the caller dropped the index tables; else every
        document the cascade or SQLite knows is deleted from the index first. ``on_progress(done,
        failed, total)`` is called about twice a second while it runs. Works on a root written by
        EverOS (same layout and frontmatter). Run it with no server on the root.

        Raises:
            StoreBusy: SQLite or the index did not answer in time.
        """
        dropped, queued, results = await rebuild(ledger=self.ledger, parts=self._indexer_parts, settings=self.settings,
                                                 index_emptied=index_emptied, on_progress=on_progress)
        return {"dropped": dropped, "queued": queued, **summarize(results)}


def summarize(results: list[AttemptResult]) -> dict[str, Any]:
    """Counts per outcome of a drain, and the failures with their errors."""
    actions: dict[str, int] = {}
    for result in results:
        if result.outcome is not None:
            actions[result.outcome.action] = actions.get(result.outcome.action, 0) + 1
    return {"outcomes": actions, "failures": [{"doc_dir": r.doc_dir, "error": r.error} for r in results if r.error]}
