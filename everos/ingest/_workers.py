"""The ingest workers: lease a job, extract, publish, settle; the reaper and the queue monitor.

One attempt at a job (:meth:`IngestWorkers._run_job`, under ``run_leased_attempt``: its deadline
``job_timeout_seconds`` and a lease renewed every third of ``lease_seconds``)::

    read the inbox file; PDF, Office, HTML, EPUB: convert to markdown in a worker process (its
    deadline conversion_timeout_seconds kills it, G13), else decode; read the scope's taxonomy,
    extract (the extractor: built-in in a thread, or the model)  <- no lock held, may take minutes
    hold the document's lock: render index.md and the topic files into <root>/.tmp/stage-*, add
    _original/<file>, publish the directory with one atomic exchange (removing the old one if the
    category or title moved it), upsert the document and topic rows, tell the cascade
    settle: complete (the inbox file is deleted), fail at once (a permanent error), or retry after
    retry_backoff_seconds until max_attempts, then dead           (G7; every step idempotent, G8)

The reaper returns expired leases to the queue every ``reaper_interval_seconds``; the monitor
refreshes the queue's stats for ``/health`` ("ingest") every ``STATUS_REFRESH_S``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from typing import Any

import trio
from trio_util import periodic

from everos.errors import (
    ConversionFailed,
    EverosError,
    ExtractionEmpty,
    InvalidInput,
    NotFound,
    PathTraversal,
    StoreBusy,
    UnsupportedFormat,
    WorkerFailed,
)
from everos.ingest import _repository as repo
from everos.ingest._accept import STATUS_REFRESH_S, check_convertible
from everos.ingest._categories import Categories
from everos.ingest._context import IngestContext
from everos.ingest._locks import DocumentLocks
from everos.knowledge._convert import CONVERTED_FORMATS, convert_to_markdown, detect_format
from everos.knowledge._decode import decode_upload
from everos.knowledge._extractor import Extractor, SourceDocument
from everos.knowledge._fingerprint import WrittenFiles, written_files
from everos.knowledge._layout import document_dir, knowledge_dir, original_path
from everos.knowledge._markdown import render_document_files
from everos.knowledge._models import topic_facts
from everos.knowledge._projection import content_from_extraction, project
from everos.logs import carrying_request_id
from everos.providers import ModelUsage, counting_usage
from everos.store import (
    Job,
    QueueStats,
    publish_directory_sync,
    remove_tree_sync,
    staging_dir_sync,
    write_staged_files_sync,
)
from everos.store._attempt import run_leased_attempt
from everos.supervisor import Supervisor

__all__ = ["PERMANENT_ERRORS", "IngestWorkers", "JobProgress"]

log = logging.getLogger("everos.ingest")

# Errors that will not go away by trying again: the job fails at once. A conversion past its
# deadline or memory limit (WorkerFailed) fails the same way on the same bytes.
PERMANENT_ERRORS = (ExtractionEmpty, UnsupportedFormat, InvalidInput, PathTraversal, ConversionFailed, WorkerFailed)


@dataclasses.dataclass
class JobProgress:
    """Where a running job is: ``phase`` (``reading``, ``converting``, ``extracting``,
    ``publishing``) and the model answers of its extraction so far."""

    phase: str
    usage: ModelUsage = dataclasses.field(default_factory=ModelUsage)


class IngestWorkers:
    """The long-lived tasks of ingest, over the shared :class:`IngestContext`.

    ``stats`` is the queue's state when the service opened (``/health`` reads it before the
    monitor's first refresh).
    """

    def __init__(self, ctx: IngestContext, categories: Categories, extractor: Extractor, locks: DocumentLocks,
                 stats: QueueStats) -> None:
        self.extractor = extractor
        self._categories = categories
        self._locks = locks
        self._stats = stats
        # The names the steps below have used since they were methods of the service itself.
        self.config = ctx.config
        self.root = ctx.root
        self.inbox = ctx.inbox
        self.db = ctx.db
        self.queue = ctx.queue
        self._clock = ctx.clock
        self._files = ctx.files
        self._cpu = ctx.cpu
        self._ctx = ctx
        self._relative = ctx.relative
        self._changed = ctx.changed
        self._notify = ctx.jobs.settled
        self._progress: dict[str, JobProgress] = {}

    def start(self, supervisor: Supervisor) -> None:
        """Start ``[ingest] workers`` workers, the reaper and the monitor. Not a checkpoint."""
        owner = f"{os.getpid()}-{os.urandom(3).hex()}"
        for index in range(self.config.ingest.workers):
            supervisor.start(f"ingest-{index}", lambda index=index: self._work(f"{owner}-{index}"))
        supervisor.start("ingest-reaper", self._reap)
        supervisor.start("ingest-monitor", self._monitor)

    def status_block(self) -> dict[str, Any]:
        """The /health block, from the monitor's last refresh. Not a checkpoint."""
        stats = self._stats
        return {
            "healthy": True,
            "pending": stats.pending,
            "counts": {str(status): count for status, count in stats.counts.items()},
            "oldest_lease_age_s": stats.oldest_lease_age_seconds,
            "oldest_queued_age_s": stats.oldest_queued_age_seconds,
            "last_progress_at": stats.last_progress_at,
            # The conversion worker processes (G13): alive, busy, killed at a deadline, ...
            "conversion_workers": None if self._ctx.cpu_workers is None else
            dataclasses.asdict(self._ctx.cpu_workers.snapshot()),
        }

    async def _work(self, owner: str) -> None:
        settings = self.config.ingest
        while True:
            jobs = await self.queue.lease(owner, 1, settings.lease_seconds)
            if not jobs:
                await self.queue.wait_for_work(settings.reaper_interval_seconds)
                continue
            await self._run_job(jobs[0], owner)

    async def _run_job(self, job: Job, owner: str) -> None:
        """One attempt: the job's steps under its deadline and lease, then settle it. Its
        :meth:`progress_of` holds from the lease until it is settled, so a task read while the
        job is ``running`` always finds it. The request that queued the job is current meanwhile:
        the attempt's log lines and model calls carry its id."""
        settings = self.config.ingest
        progress = self._progress[job.id] = JobProgress("reading")
        try:
            with carrying_request_id((job.payload or {}).get("request_id")):
                outcome = await run_leased_attempt(
                    self.queue, job, owner, lambda: self._process(job, progress),
                    lease_seconds=settings.lease_seconds, timeout_seconds=settings.job_timeout_seconds,
                    timeout_error=lambda: StoreBusy(
                        f"extraction did not finish within {settings.job_timeout_seconds:g} s"))
                await self._settle(job, owner, outcome)
        finally:
            self._progress.pop(job.id, None)

    async def _settle(self, job: Job, owner: str, outcome: Any) -> None:
        settings = self.config.ingest
        with trio.CancelScope(shield=True):
            if outcome.succeeded:
                await self.queue.complete(job.id, owner, outcome.result)
                await self._files(lambda: (self.inbox / job.payload["inbox"]).unlink(missing_ok=True))
            elif outcome.error is not None:
                exc = outcome.error
                if not isinstance(exc, EverosError):
                    log.error("ingest job %s failed", job.id, exc_info=exc)
                    exc = EverosError(f"{exc.__class__.__name__}: {exc}")  # a bug: stored as INTERNAL_ERROR
                await self.queue.fail(job.id, owner, exc, settings.retry_backoff_seconds,
                                      retryable=not isinstance(exc, PERMANENT_ERRORS))
            # else: the lease was lost and another worker owns the job now.
            self._notify(job.id)

    def progress_of(self, job_id: str) -> JobProgress | None:
        """The phase and model usage of a job this process is running now, else None. Not a checkpoint."""
        return self._progress.get(job_id)

    async def _process(self, job: Job, progress: JobProgress) -> dict[str, Any]:
        """One attempt at one job. Every step can run twice without harm (G8). Its phase and the
        model answers of its extraction go to ``progress`` meanwhile, and the usage into the
        result (``model``)."""
        p = job.payload
        data = await self._files((self.inbox / p["inbox"]).read_bytes)
        text, kind = await self._text_of(data, p["filename"], progress)
        categories = await self._categories.read(p["app_id"], p["project_id"])
        if p.get("source_type") is None and kind in CONVERTED_FORMATS:
            p = {**p, "source_type": kind}  # a job queued before accept recorded the format
        source = SourceDocument(doc_id=p["doc_id"], title=p["title"], text=text, filename=p["filename"],
                                source_type=p["source_type"], category_id=p["category_id"])
        progress.phase = "extracting"
        with counting_usage(progress.usage):
            extracted = await self.extractor.extract(source, categories)
        progress.phase = "publishing"
        async with self._locks.hold(p["doc_id"]):
            if await self.queue.get(job.id) is None:
                raise NotFound("the document was deleted while it was being extracted")
            return {**await self._publish(p, data, extracted), "model": progress.usage.as_dict()}

    async def _text_of(self, data: bytes, filename: str, progress: JobProgress) -> tuple[str, str]:
        """The upload as the extractor's text, and its detected format: converted formats become
        markdown in a worker process under the conversion deadline and memory limit (G13), the
        rest is decoded as at accept.

        Raises:
            ConversionFailed, ExtractionEmpty, UnsupportedFormat: the bytes cannot be converted.
            WorkerTimeout, WorkerOutOfMemory, WorkerCrashed: the conversion cost its worker.
        """
        kind = await self._cpu(detect_format, data, filename)
        if kind not in CONVERTED_FORMATS:
            return await self._cpu(decode_upload, data, filename, None), kind
        check_convertible(self._ctx, kind, filename)
        assert self._ctx.cpu_workers is not None
        progress.phase = "converting"
        settings = self.config.ingest
        converted = await self._ctx.cpu_workers.run_cpu(
            convert_to_markdown, data, filename, deadline_s=settings.conversion_timeout_seconds,
            memory_mb=settings.conversion_memory_mb, task=f"converting {filename!r}")
        return converted.markdown, kind

    async def _publish(self, p: dict[str, Any], data: bytes, extracted: Any) -> dict[str, Any]:
        doc_id, title = p["doc_id"], p["title"]
        previous = await self.db.read(repo.get_document, doc_id)
        final = document_dir(self.root, p["app_id"], p["project_id"], extracted.category_id, title, doc_id)
        original = original_path(final, p["filename"])
        # Rendering and projecting walk the whole text: CPU work, off the event loop (G5).
        sources = {"source_name": p["filename"], "source_type": p["source_type"]}
        files, rows = await self._cpu(lambda: (
            render_document_files(doc_id, title, extracted, **sources),
            project(content_from_extraction(doc_id, title, extracted, **sources), doc_dir=self._relative(final),
                    app_id=p["app_id"], project_id=p["project_id"], original_path=self._relative(original),
                    content_sha256=p["sha256"], extractor=extracted.extractor)))

        def write_and_publish() -> WrittenFiles | None:
            staging = staging_dir_sync(self.root)
            # One fsync a file and one a directory: the publishing rename is the atomic step (G6).
            write_staged_files_sync(staging, {**files, f"{original.parent.name}/{original.name}": data})
            # Stat'ed before the rename that publishes them (which keeps their times): the
            # receipt names these files, not a hand edit made after.
            written = written_files(staging, rows.doc_dir, rows.content, files,
                                    facts=topic_facts(doc_id, extracted))
            publish_directory_sync(staging, final)  # creates (and fsyncs) the category directory
            if previous is not None:
                old = (self.root / previous.md_path).parent
                if old != final and old.exists():
                    remove_tree_sync(old, root=knowledge_dir(self.root, previous.app_id, previous.project_id))
            return written

        written = await self._files(write_and_publish)
        moved_from = None if previous is None else (self.root / previous.md_path).parent
        await self.db.write(repo.save_rows, rows, self._clock())
        await self._changed(final, moved_from, written=written)
        return {
            "doc_id": doc_id,
            "category_id": rows.document.category_id,
            "topic_count": rows.content.topic_count,
            "source_name": p["filename"],
            "md_path": str(final),
            "original_file_path": str(original),
            "extractor": extracted.extractor,
        }

    async def _reap(self) -> None:
        async with contextlib.aclosing(periodic(self.config.ingest.reaper_interval_seconds)) as ticks:
            async for _, since_last in ticks:
                if since_last is None:
                    continue  # the first tick comes at once; the first reap one interval after start
                reaped = await self.queue.reap_expired()
                if reaped:
                    log.warning("returned %d ingest jobs with expired leases to the queue", reaped)

    async def _monitor(self) -> None:
        async with contextlib.aclosing(periodic(STATUS_REFRESH_S)) as ticks:
            async for _ in ticks:
                self._stats = await self.queue.stats()
