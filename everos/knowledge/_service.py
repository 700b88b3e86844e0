"""Durable ingest and the document operations behind the EverOS knowledge API.

Data flow of one upload (design, "Data flow of one upload")::

    accept()   validate, decode-check, dedupe, write the bytes to <root>/.index/inbox/<job>.bin
               (fsync), enqueue the ingest job            <- the acceptance point (G6)
    wait()     the request waits for the job up to sync_wait_seconds (201) or answers 202
    worker     leases the job (renewed while working), extracts in a thread, writes every markdown
               file into a staging directory and renames it into place, copies the original to
               _original/, upserts the document and topic rows, completes the job (G7, G8)
    reaper     returns expired leases to the queue; after max_attempts a job is dead

A job is keyed by its ``doc_id``: a replace enqueued while the document's job runs marks it for a
rerun instead of racing it. Publishing, PATCH and DELETE of one document take that document's lock,
so they never interleave.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import trio

from everos.config import Config
from everos.errors import (
    Conflict,
    EverosError,
    ExtractionEmpty,
    InvalidInput,
    NotFound,
    PathTraversal,
    QueueSaturated,
    StoreBusy,
    UnsupportedFormat,
)
from everos.knowledge import _repository as repo
from everos.knowledge._decode import decode_upload
from everos.knowledge._edit import (
    discard_staging,
    publish_rewrite,
    restore_rows,
    row_snapshot,
    save_rewritten,
    stage_rewrite,
)
from everos.knowledge._extractor import BuiltinExtractor, Extractor, SourceDocument
from everos.knowledge._layout import (
    INDEX_FILENAME,
    document_dir,
    knowledge_dir,
    original_path,
    taxonomy_path,
    topic_filename,
)
from everos.knowledge._markdown import render_document_files
from everos.knowledge._models import document_record, flatten, new_doc_id
from everos.knowledge._taxonomy import DEFAULT_CATEGORIES, Category, parse_taxonomy_md, render_taxonomy_md
from everos.store import (
    Database,
    Job,
    JobStatus,
    LeasedQueue,
    QueueStats,
    atomic_write_bytes_sync,
    atomic_write_text_sync,
    clean_staging_sync,
    publish_directory_sync,
    remove_tree_sync,
    staging_dir_sync,
)
from everos.store._attempt import run_leased_attempt

__all__ = ["KnowledgeService", "Upload", "job_id_for"]

log = logging.getLogger("everos.ingest")

INGEST_TABLE = "ingest_jobs"
TERMINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.DEAD)
# Errors that will not go away by trying again: the job fails at once.
PERMANENT_ERRORS = (ExtractionEmpty, UnsupportedFormat, InvalidInput, PathTraversal)
LOCK_TIMEOUT_S = 30.0
STATUS_REFRESH_S = 1.0


def job_id_for(doc_id: str) -> str:
    """The task id of a document's ingest job: one row per document, ``t_`` + its hex."""
    return "t_" + doc_id[2:]


@dataclasses.dataclass(frozen=True)
class Upload:
    """One validated upload, as the routes hand it over."""

    data: bytes
    title: str
    filename: str
    app_id: str
    project_id: str
    source_type: str | None = None
    category_id: str | None = None

    def request_hash(self, op: str, doc_id: str | None = None) -> str:
        digest = hashlib.sha256()
        for part in (op, doc_id or "", self.title, self.filename, self.app_id, self.project_id,
                     self.source_type or "", self.category_id or ""):
            digest.update(part.encode() + b"\0")
        digest.update(hashlib.sha256(self.data).digest())
        return digest.hexdigest()


class KnowledgeService:
    """The knowledge part of the server: its SQLite tables, its ingest queue and its workers."""

    def __init__(self, extractor_factory: Callable[[Any], Extractor] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._extractor_factory = extractor_factory
        self._clock = clock
        self._events: dict[str, trio.Event] = {}
        self._doc_locks: dict[str, trio.Lock] = {}
        self._stats: QueueStats | None = None
        self.db: Database | None = None
        # Set by the composition root (everos.services) when a cascade runs: told of every
        # document directory that changed, and asked for each document's index status and error.
        self.index_notifier: Callable[[Path], Any] | None = None
        self.index_state_lookup: Callable[[list[str]], Any] | None = None

    # -- lifecycle (the Service protocol) ---------------------------------------------------------

    async def open(self, runtime: Any) -> None:
        """Open the database, clean staging, and return jobs of a previous process to the queue."""
        self.runtime = runtime
        self.config: Config = runtime.config
        self.root: Path = runtime.loaded.root
        self.limiters = runtime.limiters
        self.inbox = self.root / ".index" / "inbox"
        self.db = await Database.open(
            self.root / ".index" / "sqlite" / "everos.db", self.config.sqlite, self.limiters.sqlite,
            migrations=[repo.MIGRATIONS, LeasedQueue.migration(INGEST_TABLE)],
        )
        self.queue = LeasedQueue(self.db, INGEST_TABLE, max_attempts=self.config.ingest.max_attempts,
                                 clock=self._clock)
        self.extractor = (self._extractor_factory(runtime) if self._extractor_factory
                          else BuiltinExtractor(self.limiters.cpu))
        await self._files(clean_staging_sync, self.root)
        await self._files(lambda: self.inbox.mkdir(parents=True, exist_ok=True))
        recovered = await self.queue.recover()
        if recovered:
            log.warning("returned %d ingest jobs of a previous process to the queue", recovered)
        self._stats = await self.queue.stats()
        runtime.board.blocks["ingest"] = self.status_block

    def start_workers(self, supervisor: Any) -> None:
        owner = f"{os.getpid()}-{os.urandom(3).hex()}"
        for index in range(self.config.ingest.workers):
            supervisor.start(f"ingest-{index}", lambda index=index: self._work(f"{owner}-{index}"))
        supervisor.start("ingest-reaper", self._reap)
        supervisor.start("ingest-monitor", self._monitor)

    async def aclose(self) -> None:
        if self.db is not None:
            await self.db.aclose()
        close_extractor = getattr(getattr(self, "extractor", None), "aclose", None)
        if close_extractor is not None:
            await close_extractor()

    def status_block(self) -> dict[str, Any]:
        stats = self._stats
        if stats is None:
            return {"healthy": True, "pending": 0}
        return {
            "healthy": True,
            "pending": stats.pending,
            "counts": {str(status): count for status, count in stats.counts.items()},
            "oldest_lease_age_s": stats.oldest_lease_age_seconds,
            "oldest_queued_age_s": stats.oldest_queued_age_seconds,
            "last_progress_at": stats.last_progress_at,
        }

    # -- helpers ----------------------------------------------------------------------------------

    async def _files(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(fn, *args, limiter=self.limiters.files)

    async def _cpu(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(fn, *args, limiter=self.limiters.cpu)

    def _doc_lock(self, doc_id: str) -> trio.Lock:
        return self._doc_locks.setdefault(doc_id, trio.Lock())

    async def _locked(self, doc_id: str):
        lock = self._doc_lock(doc_id)
        try:
            with trio.fail_after(LOCK_TIMEOUT_S):
                await lock.acquire()
        except trio.TooSlowError:
            raise StoreBusy(f"document {doc_id} is busy; try again", retry_after_s=5) from None
        return lock

    @contextlib.asynccontextmanager
    async def document_locked(self, doc_id: str) -> AsyncIterator[None]:
        """Hold ``doc_id``'s lock: the cascade takes it to write rows read from a document's files,
        so they never cross an ingest, PATCH or DELETE of the same document.

        Raises:
            StoreBusy: the lock was not free within ``LOCK_TIMEOUT_S``.
        """
        lock = await self._locked(doc_id)
        try:
            yield
        finally:
            lock.release()

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    # -- categories -------------------------------------------------------------------------------

    async def categories(self, app_id: str, project_id: str) -> tuple[Category, ...]:
        """The scope's taxonomy, written with EverOS's 20 defaults on first use."""
        path = taxonomy_path(self.root, app_id, project_id)

        def read_or_create() -> tuple[Category, ...]:
            if path.exists():
                parsed = parse_taxonomy_md(path.read_text(encoding="utf-8"))
                if parsed:
                    return parsed
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text_sync(path, render_taxonomy_md(DEFAULT_CATEGORIES))
            return DEFAULT_CATEGORIES

        return await self._files(read_or_create)

    async def category_listing(self, app_id: str, project_id: str) -> list[dict[str, Any]]:
        categories = await self.categories(app_id, project_id)
        counts = await self.db.read(repo.category_counts, app_id, project_id)
        return [{"category_id": c.id, "description": c.description, "document_count": counts.get(c.id, 0)}
                for c in categories]

    async def check_category(self, category_id: str | None, app_id: str, project_id: str) -> str | None:
        if category_id is None:
            return None
        known = {c.id for c in await self.categories(app_id, project_id)}
        if category_id not in known:
            raise InvalidInput(f"unknown category_id {category_id!r}; known: {', '.join(sorted(known))}",
                               field="category_id")
        return category_id

    # -- accepting uploads ------------------------------------------------------------------------

    async def accept(self, upload: Upload, *, replace_doc_id: str | None = None) -> tuple[Job | None, repo.DocumentRow | None]:
        """Make the upload durable and queue its extraction. Returns ``(job, None)``, or
        ``(None, existing)`` when content dedupe found the same bytes in the same scope.

        Raises:
            UnsupportedFormat, ExtractionEmpty, InvalidInput: bad input; nothing was written.
            QueueSaturated: the ingest queue is full (G9); nothing was written.
            NotFound: ``replace_doc_id`` is not a document.
        """
        text = await self._cpu(decode_upload, upload.data, upload.filename, None)
        if not text.strip():
            raise ExtractionEmpty("the document holds no text")
        await self.check_category(upload.category_id, upload.app_id, upload.project_id)
        sha256 = await self._cpu(lambda: hashlib.sha256(upload.data).hexdigest())
        if replace_doc_id is None:
            if self.config.knowledge.dedupe == "content":
                existing = await self.db.read(repo.find_by_content, upload.app_id, upload.project_id, sha256)
                if existing is not None:
                    return None, existing
            doc_id = new_doc_id()
        else:
            doc_id = replace_doc_id
            if await self.db.read(repo.get_document, doc_id) is None:
                raise NotFound(f"document {doc_id} not found")
        job_id = job_id_for(doc_id)
        inbox_name = f"{job_id}-{sha256[:16]}.bin"
        await self._files(atomic_write_bytes_sync, self.inbox / inbox_name, upload.data)
        payload = {
            "op": "replace" if replace_doc_id else "create", "doc_id": doc_id, "title": upload.title,
            "filename": upload.filename, "source_type": upload.source_type, "category_id": upload.category_id,
            "app_id": upload.app_id, "project_id": upload.project_id, "inbox": inbox_name, "sha256": sha256,
        }
        try:
            job = await self.queue.enqueue("ingest", payload, key=doc_id, job_id=job_id,
                                           max_pending=self.config.ingest.max_pending)
        except QueueSaturated as exc:
            await self._files(lambda: (self.inbox / inbox_name).unlink(missing_ok=True))
            exc.retry_after_s = self.config.ingest.reaper_interval_seconds
            raise
        except BaseException:
            # Not acknowledged: leave no orphan bytes behind (a crash here leaves them to startup).
            with trio.CancelScope(shield=True):
                await self._files(lambda: (self.inbox / inbox_name).unlink(missing_ok=True))
            raise
        return job, None

    async def wait(self, job_id: str, timeout_s: float) -> Job:
        """Wait up to ``timeout_s`` for the job to finish; return it as it is then. A checkpoint.

        Cancelling the wait (a client disconnect) leaves the job running: it is durable.
        """
        with trio.move_on_after(timeout_s):
            while True:
                job = await self.queue.get(job_id)
                if job is None or job.status in TERMINAL:
                    break
                event = self._events.setdefault(job_id, trio.Event())
                with trio.move_on_after(STATUS_REFRESH_S):
                    await event.wait()
        job = await self.queue.get(job_id)
        if job is None:
            raise NotFound(f"task {job_id} not found (its document was deleted)")
        return job

    def _notify(self, job_id: str) -> None:
        event = self._events.pop(job_id, None)
        if event is not None:
            event.set()

    # -- the workers ------------------------------------------------------------------------------

    async def _work(self, owner: str) -> None:
        settings = self.config.ingest
        while True:
            jobs = await self.queue.lease(owner, 1, settings.lease_seconds)
            if not jobs:
                await self.queue.wait_for_work(settings.reaper_interval_seconds)
                continue
            await self._run_job(jobs[0], owner)

    async def _run_job(self, job: Job, owner: str) -> None:
        """One attempt: the job's steps under its deadline and lease, then settle it."""
        settings = self.config.ingest
        outcome = await run_leased_attempt(
            self.queue, job, owner, lambda: self._process(job), lease_seconds=settings.lease_seconds,
            timeout_seconds=settings.job_timeout_seconds,
            timeout_error=lambda: StoreBusy(f"extraction did not finish within {settings.job_timeout_seconds:g} s"))
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

    async def _process(self, job: Job) -> dict[str, Any]:
        """One attempt at one job. Every step can run twice without harm (G8)."""
        p = job.payload
        data = await self._files((self.inbox / p["inbox"]).read_bytes)
        text = await self._cpu(decode_upload, data, p["filename"], None)
        categories = await self.categories(p["app_id"], p["project_id"])
        source = SourceDocument(doc_id=p["doc_id"], title=p["title"], text=text, filename=p["filename"],
                                source_type=p["source_type"], category_id=p["category_id"])
        extracted = await self.extractor.extract(source, categories)
        lock = await self._locked(p["doc_id"])
        try:
            if await self.queue.get(job.id) is None:
                raise NotFound("the document was deleted while it was being extracted")
            return await self._publish(p, data, extracted)
        finally:
            lock.release()

    async def _publish(self, p: dict[str, Any], data: bytes, extracted: Any) -> dict[str, Any]:
        doc_id, title = p["doc_id"], p["title"]
        previous = await self.db.read(repo.get_document, doc_id)
        final = document_dir(self.root, p["app_id"], p["project_id"], extracted.category_id, title, doc_id)
        # Rendering and flattening walk the whole text: CPU work, off the event loop (G5).
        files, topics = await self._cpu(lambda: (
            render_document_files(doc_id, title, extracted, source_name=p["filename"], source_type=p["source_type"]),
            flatten(doc_id, title, extracted)))
        original = original_path(final, p["filename"])

        def write_and_publish() -> None:
            staging = staging_dir_sync(self.root)
            for name, content in files.items():
                atomic_write_text_sync(staging / name, content)
            (staging / original.parent.name).mkdir(exist_ok=True)
            atomic_write_bytes_sync(staging / original.parent.name / original.name, data)
            final.parent.mkdir(parents=True, exist_ok=True)
            publish_directory_sync(staging, final)
            if previous is not None:
                old = (self.root / previous.md_path).parent
                if old != final and old.exists():
                    remove_tree_sync(old, root=knowledge_dir(self.root, previous.app_id, previous.project_id))

        await self._files(write_and_publish)
        moved_from = None if previous is None else (self.root / previous.md_path).parent
        doc = document_record(doc_id, title, extracted, source_name=p["filename"], source_type=p["source_type"])
        topic_paths = {t.topic_index: self._relative(final / topic_filename(t.topic_index, t.topic_name))
                       for t in topics if t.topic_index}
        def save(conn) -> None:
            repo.save_document(
                conn, doc=doc, topics=topics, topic_paths=topic_paths, app_id=p["app_id"],
                project_id=p["project_id"], md_path=self._relative(final / INDEX_FILENAME),
                original_path=self._relative(original), content_sha256=p["sha256"], now=self._clock())
            repo.set_extractor(conn, doc_id, extracted.extractor)

        await self.db.write(save)
        await self._changed(final, moved_from)
        return {
            "doc_id": doc_id,
            "category_id": doc.category_id,
            "topic_count": sum(1 for t in topics if t.topic_index),
            "source_name": p["filename"],
            "md_path": str(final),
            "original_file_path": str(original),
            "extractor": extracted.extractor,
        }

    async def _reap(self) -> None:
        while True:
            await trio.sleep(self.config.ingest.reaper_interval_seconds)
            reaped = await self.queue.reap_expired()
            if reaped:
                log.warning("returned %d ingest jobs with expired leases to the queue", reaped)

    async def _monitor(self) -> None:
        while True:
            self._stats = await self.queue.stats()
            await trio.sleep(STATUS_REFRESH_S)

    async def _changed(self, *doc_dirs: Path | None) -> None:
        """Tell the cascade which document directories changed (each once, moves included)."""
        if self.index_notifier is None:
            return
        for doc_dir in dict.fromkeys(d for d in doc_dirs if d is not None):
            await self.index_notifier(doc_dir)

    async def index_states(self, doc_ids: list[str]) -> dict[str, dict[str, str | None]]:
        """``{doc_id: {"index_status": pending | indexed | failed, "index_error": str | None}}``
        for every given id; both None when no cascade runs.

        Raises:
            StoreBusy: SQLite did not answer in time.
        """
        if self.index_state_lookup is None or not doc_ids:
            return {doc_id: {"index_status": None, "index_error": None} for doc_id in doc_ids}
        return await self.index_state_lookup(doc_ids)

    async def document_briefs(self, doc_ids) -> dict[str, dict[str, Any]]:
        """``{doc_id: {title, summary}}`` for search hits; unknown ids are left out."""
        rows = await self.db.read(lambda conn: [repo.get_document(conn, d) for d in dict.fromkeys(doc_ids)])
        return {row.doc_id: {"doc_id": row.doc_id, "title": row.title, "summary": row.summary}
                for row in rows if row is not None}

    async def topic_contents(self, topic_ids) -> dict[str, str]:
        """``{topic_id: content}`` for search hits with ``include_content`` and for rerank."""
        rows = await self.db.read(lambda conn: [repo.get_topic(conn, t) for t in dict.fromkeys(topic_ids)])
        return {row["node_id"]: row["content"] for row in rows if row is not None}

    # -- reading ----------------------------------------------------------------------------------

    async def get_document(self, doc_id: str) -> tuple[repo.DocumentRow, list]:
        doc = await self.db.read(repo.get_document, doc_id)
        if doc is None:
            job = await self.queue.get(job_id_for(doc_id))
            if job is not None and job.status not in TERMINAL:
                raise NotFound(f"document {doc_id} is still being processed; poll task {job.id}")
            raise NotFound(f"document {doc_id} not found")
        return doc, await self.db.read(repo.list_topics, doc_id)

    async def get_topic(self, topic_id: str):
        row = await self.db.read(repo.get_topic, topic_id)
        if row is None:
            raise NotFound(f"topic {topic_id} not found")
        return row

    async def list_documents(self, **query: Any) -> tuple[list[repo.DocumentRow], int]:
        return await self.db.read(lambda conn: repo.list_documents(conn, **query))

    async def get_task(self, task_id: str) -> Job:
        job = await self.queue.get(task_id)
        if job is None:
            raise NotFound(f"task {task_id} not found")
        return job

    async def list_tasks(self, status: str | None, limit: int, offset: int) -> list[Job]:
        return await self.queue.list(status, limit=limit, offset=offset)

    async def retry_task(self, task_id: str) -> Job:
        """Queue a dead or failed ingest job again, with fresh attempts and its error cleared
        (``everos tasks retry``); return it as queued. Its upload is still in the inbox: only a
        success removes it.

        Raises:
            NotFound: no such task.
            Conflict: the task is not dead or failed, or its upload is gone from the inbox.
            QueueSaturated: the ingest queue is full (G9).
            Nothing is written when it raises.
        """
        job = await self.get_task(task_id)
        if job.status not in (JobStatus.DEAD, JobStatus.FAILED):
            raise Conflict(f"task {task_id} is {job.status}; only a dead or failed task can be retried")
        if not await self._files((self.inbox / job.payload["inbox"]).is_file):
            raise Conflict(f"the upload of task {task_id} is gone from the inbox; upload the document again")
        if (await self.queue.stats()).pending >= self.config.ingest.max_pending:
            raise QueueSaturated("the ingest queue is full; try again later",
                                 retry_after_s=self.config.ingest.reaper_interval_seconds)
        await self.queue.requeue([task_id])
        return await self.get_task(task_id)

    # -- changing ---------------------------------------------------------------------------------

    async def update(self, doc_id: str, *, title: str | None, category_id: str | None) -> dict[str, Any]:
        """PATCH: new title and/or category; a category or title change moves the directory.

        The files are rewritten into a staging copy and renamed into place, so a reader sees the
        old or the new document, never a mix.
        """
        lock = await self._locked(doc_id)
        try:
            doc = await self.db.read(repo.get_document, doc_id)
            if doc is None:
                raise NotFound(f"document {doc_id} not found")
            await self.check_category(category_id, doc.app_id, doc.project_id)
            new_title = title if title is not None else doc.title
            new_category = category_id if category_id is not None else doc.category_id
            updated = [name for name, new, old in (("title", new_title, doc.title),
                                                   ("category_id", new_category, doc.category_id)) if new != old]
            if not updated:
                return {"doc_id": doc_id, "updated_fields": [], "updated_at": doc.updated_at}
            old_dir = (self.root / doc.md_path).parent
            new_dir = document_dir(self.root, doc.app_id, doc.project_id, new_category, new_title, doc_id)
            now = self._clock()
            staging, rows = await self._files(stage_rewrite, self.root, old_dir, new_title, new_category)
            try:
                before = await self.db.read(row_snapshot, doc_id)
                await self.db.write(lambda conn: save_rewritten(conn, self.root, doc, rows, new_dir, new_title,
                                                                new_category, now))
                try:
                    await self._files(publish_rewrite, self.root, staging, old_dir, new_dir)
                except BaseException:
                    with trio.CancelScope(shield=True):  # bounded by the store's own call deadline
                        await self.db.write(restore_rows, before)
                    raise
            finally:
                with trio.CancelScope(shield=True):
                    await self._files(discard_staging, staging)
            await self._changed(new_dir, old_dir)
            return {"doc_id": doc_id, "updated_fields": updated, "updated_at": now}
        finally:
            lock.release()

    async def delete(self, doc_id: str) -> int | None:
        """Delete the document's directory, rows and queued job. Returns the deleted topic count,
        or None when there was nothing to delete."""
        lock = await self._locked(doc_id)
        try:
            doc = await self.db.read(repo.get_document, doc_id)
            job_deleted = await self.queue.delete(job_id_for(doc_id))
            self._notify(job_id_for(doc_id))
            if doc is None:
                return 0 if job_deleted else None
            doc_dir = (self.root / doc.md_path).parent
            await self._files(lambda: remove_tree_sync(doc_dir, root=self.root))
            deleted = await self.db.write(repo.delete_document, doc_id)
            await self._changed(doc_dir)
            return deleted
        finally:
            lock.release()

    # -- re-extraction ----------------------------------------------------------------------------

    async def reextract(self, doc_id: str) -> Job:
        """Queue the document's extraction again from its stored original (``_original/``), same
        ``doc_id``, as a replace does: for documents whose model extraction fell back to the
        built-in extractor, once the model answers again. The category is chosen again too (the
        model classifies it). Returns the queued job.

        Raises:
            NotFound: no such document, or its original file is gone.
            InvalidInput: the document has no original file (it was not uploaded: a hand-made
                directory).
            QueueSaturated: the ingest queue is full (G9); nothing was written.
        """
        doc = await self.db.read(repo.get_document, doc_id)
        if doc is None:
            raise NotFound(f"document {doc_id} not found")
        if doc.original_path is None:
            raise InvalidInput(f"document {doc_id} has no original file to extract again", field="doc_id")
        original = self.root / doc.original_path
        try:
            data = await self._files(original.read_bytes)
        except FileNotFoundError:
            raise NotFound(f"the original file of document {doc_id} is gone ({doc.original_path})") from None
        upload = Upload(data=data, title=doc.title, filename=doc.source_name or original.name, app_id=doc.app_id,
                        project_id=doc.project_id, source_type=doc.source_type)
        job, _ = await self.accept(upload, replace_doc_id=doc_id)
        assert job is not None  # a replace is never a content duplicate
        return job

    async def reextract_fallbacks(self) -> list[Job]:
        """:meth:`reextract` every document whose model extraction fell back to the built-in
        extractor, in every scope, oldest first. Returns the queued jobs.

        Raises:
            QueueSaturated: the ingest queue filled up; the documents before it are queued (a
                second call queues them all again, harmlessly: a job is keyed by its doc_id).
        """
        return [await self.reextract(doc.doc_id) for doc in await self.db.read(repo.fallback_documents)]

    # -- idempotency ------------------------------------------------------------------------------

    async def idempotent_answer(self, scope: str, key: str, request_hash: str) -> tuple[int, dict] | None:
        """A stored answer for ``key``; raises ``Conflict`` when the key was used for another request."""
        not_before = self._clock() - self.config.knowledge.idempotency_ttl_seconds
        row = await self.db.read(repo.get_idempotent, scope, key, not_before)
        if row is None:
            return None
        if row["request_hash"] != request_hash:
            raise Conflict("this Idempotency-Key was already used for a different request")
        return row["status"], json.loads(row["body"])

    async def remember_answer(self, scope: str, key: str, request_hash: str, status: int, body: dict) -> None:
        now = self._clock()
        not_before = now - self.config.knowledge.idempotency_ttl_seconds
        await self.db.write(repo.put_idempotent, scope, key, request_hash, status,
                            json.dumps(body, ensure_ascii=False), now, not_before)
