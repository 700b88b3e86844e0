"""Durable ingest and the document operations behind the EverOS knowledge API.

Data flow of one upload (design, "Data flow of one upload")::

    accept()   validate, decode-check, dedupe, write the bytes to <root>/.index/inbox/<job>.bin
               (fsync), enqueue the ingest job            <- the acceptance point (G6)   _accept.py
    wait()     the request waits for the job up to sync_wait_seconds (201) or answers 202
    worker     leases the job (renewed while working), extracts, writes every markdown file into a
               staging directory and renames it into place, copies the original to _original/,
               upserts the document and topic rows, completes the job (G7, G8)        _workers.py
    cascade    told of the published directory; it indexes it for search (everos.cascade)
    reaper     returns expired leases to the queue; after max_attempts a job is dead

A job is keyed by its ``doc_id``: a replace enqueued while the document's job runs marks it for a
rerun instead of racing it. Publishing, PATCH and DELETE of one document hold that document's lock
(:class:`DocumentLocks`, shared with the cascade), so they never interleave.

:class:`IngestService` composes the parts (intake, workers, documents, categories, idempotency)
over one :class:`IngestContext`; it is created open by :meth:`IngestService.open`, so none of its
attributes is ever missing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import trio

from everos.ingest import _repository as repo
from everos.ingest._accept import Intake, Upload
from everos.ingest._categories import Categories
from everos.ingest._context import INGEST_TABLE, IndexFeed, IngestContext, JobWatch
from everos.ingest._documents import Documents
from everos.ingest._idempotency import Idempotency
from everos.ingest._locks import DocumentLocks
from everos.ingest._workers import IngestWorkers
from everos.knowledge._extractor import BuiltinExtractor, Extractor
from everos.knowledge._taxonomy import Category
from everos.runtime import Runtime
from everos.store import Database, Job, JobStatus, LeasedQueue, QueueStats, clean_staging_sync
from everos.supervisor import Supervisor
from everos.workers import CpuWorkers

__all__ = ["DATABASE_RELPATH", "IngestService"]

log = logging.getLogger("everos.ingest")

DATABASE_RELPATH = (".index", "sqlite", "everos.db")


class IngestService:
    """The knowledge part of the server: its SQLite tables, its ingest queue and its workers.

    Construct it with :meth:`open`. ``extractor`` makes topic trees (the built-in one, or the
    model's); the service closes it when it closes. ``locks`` are the document locks it shares with
    the cascade. ``index`` is the cascade (told of changed directories, asked for index states),
    None when ingest runs alone. ``cpu_workers`` are the conversion worker processes.
    """

    def __init__(self, ctx: IngestContext, *, extractor: Extractor, locks: DocumentLocks, stats: QueueStats) -> None:
        self.config = ctx.config
        self.root = ctx.root
        self.limiters = ctx.limiters
        self.db = ctx.db
        self.queue = ctx.queue
        self.extractor = extractor
        self._index = ctx.index
        self._categories = Categories(ctx)
        self._idempotency = Idempotency(ctx)
        self._intake = Intake(ctx, self._categories)
        self._workers = IngestWorkers(ctx, self._categories, extractor, locks, stats)
        self._documents = Documents(ctx, self._categories, self._intake, locks)

    @classmethod
    async def open(cls, runtime: Runtime, *, extractor: Extractor | None = None, locks: DocumentLocks | None = None,
                   index: IndexFeed | None = None, cpu_workers: CpuWorkers | None = None,
                   clock: Callable[[], float] = time.time) -> IngestService:
        """The service, open: the database opened (and migrated), staging cleaned, jobs of a
        previous process returned to the queue (G7). Close it with :meth:`aclose`.

        Without ``extractor`` it is the built-in one (in ``cpu_workers`` when given); without
        ``locks``, locks of its own.
        ``cpu_workers`` convert PDF, Office, HTML and EPUB uploads (the caller opens and closes
        them); without them those formats are refused (415).

        Raises:
            What :meth:`Database.open` raises; then nothing is left open (the extractor is closed).
        """
        extractor = extractor if extractor is not None else builtin_extractor(runtime, cpu_workers)
        db: Database | None = None
        try:
            db = await Database.open(
                runtime.root.joinpath(*DATABASE_RELPATH), runtime.config.sqlite, runtime.limiters.sqlite,
                migrations=[repo.MIGRATIONS, LeasedQueue.migration(INGEST_TABLE)],
            )
            queue = LeasedQueue(db, INGEST_TABLE, max_attempts=runtime.config.ingest.max_attempts, clock=clock)
            ctx = IngestContext(config=runtime.config, root=runtime.root, limiters=runtime.limiters, db=db,
                                queue=queue, jobs=JobWatch(), clock=clock, index=index,
                                cpu_workers=cpu_workers)
            await ctx.files(clean_staging_sync, ctx.root)
            await ctx.files(lambda: ctx.inbox.mkdir(parents=True, exist_ok=True))
            recovered = await queue.recover()
            if recovered:
                log.warning("returned %d ingest jobs of a previous process to the queue", recovered)
            service = cls(ctx, extractor=extractor, locks=locks or DocumentLocks(), stats=await queue.stats())
        except BaseException:
            with trio.CancelScope(shield=True):
                if db is not None:
                    await db.aclose()
                await _close_extractor(extractor)
            raise
        return service

    async def aclose(self) -> None:
        """Close the database and the extractor. Idempotent."""
        await self.db.aclose()
        await _close_extractor(self.extractor)

    # -- the Service protocol ---------------------------------------------------------------------

    def start_workers(self, supervisor: Supervisor) -> None:
        """The ingest workers, the reaper and the monitor (see ``_workers.py``). Not a checkpoint."""
        self._workers.start(supervisor)

    def status_block(self) -> dict[str, Any]:
        """The /health block "ingest" (the wiring publishes it). Not a checkpoint."""
        return self._workers.status_block()

    def index_lag(self) -> dict[str, int] | None:
        """While the cascade's index lags (``[cascade] lag_documents``): ``{"documents": waiting,
        "bound": lag_documents}``, which the upload answers carry; None otherwise and without a
        cascade. Uploads are accepted all the same (G1). Not a checkpoint."""
        return None if self._index is None else self._index.index_lag()

    # -- accepting (_accept.py) -------------------------------------------------------------------

    async def accept(self, upload: Upload, *, replace_doc_id: str | None = None) -> tuple[Job | None, repo.DocumentRow | None]:
        """See :meth:`Intake.accept`: ``(job, None)``, or ``(None, existing)`` for a content duplicate."""
        return await self._intake.accept(upload, replace_doc_id=replace_doc_id)

    async def wait(self, job_id: str, timeout_s: float) -> Job:
        """See :meth:`Intake.wait`: the job once it finished, or as it is after ``timeout_s``."""
        return await self._intake.wait(job_id, timeout_s)

    # -- categories (_categories.py) --------------------------------------------------------------

    async def categories(self, app_id: str, project_id: str) -> tuple[Category, ...]:
        return await self._categories.read(app_id, project_id)

    async def category_listing(self, app_id: str, project_id: str) -> list[dict[str, Any]]:
        return await self._categories.listing(app_id, project_id)

    async def check_category(self, category_id: str | None, app_id: str, project_id: str) -> str | None:
        return await self._categories.check(category_id, app_id, project_id)

    # -- documents and tasks (_documents.py) ------------------------------------------------------

    async def get_document(self, doc_id: str) -> tuple[repo.DocumentRow, list]:
        return await self._documents.get_document(doc_id)

    async def get_topic(self, topic_id: str):
        return await self._documents.get_topic(topic_id)

    async def list_documents(self, **query: Any) -> tuple[list[repo.DocumentRow], int]:
        return await self._documents.list_documents(**query)

    async def get_task(self, task_id: str) -> Job:
        return await self._documents.get_task(task_id)

    async def task_progress(self, jobs: list[Job]) -> dict[str, dict[str, Any]]:
        """``{job_id: {"phase", "index_status", "documents_ahead", "model"}}`` for the task answers
        of ``jobs``: a running job's phase and model usage as its worker has them now; a finished
        one's document ``indexing`` until its index holds it (``done``), ``failed`` when that
        failed, and while ``indexing`` the index rows taken before its own (``documents_ahead``).
        Two SQLite reads for the finished ones.

        Raises:
            StoreBusy: SQLite did not answer in time.
        """
        finished = {job.id: job.payload["doc_id"] for job in jobs
                    if job.status is JobStatus.SUCCEEDED and (job.payload or {}).get("doc_id")}
        states = await self.index_states(list(finished.values())) if finished else {}
        progress: dict[str, dict[str, Any]] = {}
        for job in jobs:
            if job.status is JobStatus.RUNNING and (live := self._workers.progress_of(job.id)) is not None:
                progress[job.id] = {"phase": live.phase, "model": live.usage.as_dict()}
            elif job.id in finished:
                index_status = states.get(finished[job.id], {}).get("index_status", "pending")
                phase = {"indexed": "done", "failed": "failed"}.get(index_status, "indexing")
                progress[job.id] = {"phase": phase, "index_status": index_status}
        indexing = {job_id: finished[job_id] for job_id, shown in progress.items() if shown["phase"] == "indexing"}
        if indexing and self._index is not None:
            ahead = await self._index.documents_ahead(indexing.values())
            for job_id, doc_id in indexing.items():
                progress[job_id]["documents_ahead"] = ahead.get(doc_id)
        return progress

    async def list_tasks(self, status: str | None, limit: int, offset: int) -> list[Job]:
        return await self._documents.list_tasks(status, limit, offset)

    async def retry_task(self, task_id: str) -> Job:
        return await self._documents.retry_task(task_id)

    async def update(self, doc_id: str, *, title: str | None, category_id: str | None) -> dict[str, Any]:
        return await self._documents.update(doc_id, title=title, category_id=category_id)

    async def delete(self, doc_id: str) -> int | None:
        return await self._documents.delete(doc_id)

    async def reextract(self, doc_id: str) -> Job:
        return await self._documents.reextract(doc_id)

    async def reextract_fallbacks(self) -> list[Job]:
        return await self._documents.reextract_fallbacks()

    async def index_states(self, doc_ids: list[str]) -> dict[str, dict[str, str | None]]:
        return await self._documents.index_states(doc_ids)

    async def hit_details(self, topic_ids, with_content: bool = False) -> dict[str, dict[str, Any]]:
        return await self._documents.hit_details(topic_ids, with_content)

    # -- idempotency (_idempotency.py) ------------------------------------------------------------

    async def idempotent_answer(self, scope: str, key: str, request_hash: str) -> tuple[int, dict] | None:
        return await self._idempotency.answer(scope, key, request_hash)

    async def remember_answer(self, scope: str, key: str, request_hash: str, status: int, body: dict) -> None:
        await self._idempotency.remember(scope, key, request_hash, status, body)


async def _close_extractor(extractor: Extractor) -> None:
    close = getattr(extractor, "aclose", None)  # the model's extractor holds a client; the built-in one nothing
    if close is not None:
        await close()


def builtin_extractor(runtime: Runtime, cpu_workers: CpuWorkers | None) -> BuiltinExtractor:
    """The built-in extractor: in the CPU worker processes when there are some (under the
    conversion deadline and memory limit), else in threads under the cpu limiter."""
    settings = runtime.config.ingest
    return BuiltinExtractor(runtime.limiters.cpu, workers=cpu_workers, deadline_s=settings.conversion_timeout_seconds,
                            memory_mb=settings.conversion_memory_mb)
