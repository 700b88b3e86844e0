"""Accepting an upload (the acceptance point, G6) and waiting for its job.

::

    accept()   format check (detect_format: unknown binaries 415, damaged or password-protected
               archives 422, in a thread); text and markdown: decode check and empty check; PDF,
               Office, HTML, EPUB are converted by the job, not here; category check, content dedupe per scope,
               the bytes to <root>/.index/inbox/<job>-<sha>.bin (temp, fsync, rename), then the job
               row (keyed by doc_id; 429 when the queue is full, G9)     <- the acceptance point
    wait()     the request waits for the job up to its sync wait: woken when a worker of this
               process settles it (JobWatch), re-reading the job every STATUS_REFRESH_S meanwhile
               (a job settled by another process, a retry from the CLI)
"""

from __future__ import annotations

import dataclasses
import hashlib

import trio

from everos.errors import ExtractionEmpty, NotFound, QueueSaturated, UnsupportedFormat
from everos.ingest import _repository as repo
from everos.ingest._categories import Categories
from everos.ingest._context import TERMINAL, IngestContext, job_id_for
from everos.knowledge._convert import CONVERTED_FORMATS, detect_format
from everos.knowledge._decode import decode_upload
from everos.knowledge._models import new_doc_id
from everos.logs import current_request_id
from everos.store import Job, atomic_write_bytes_sync

__all__ = ["STATUS_REFRESH_S", "Intake", "Upload", "check_convertible"]

STATUS_REFRESH_S = 1.0


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


def check_convertible(ctx: IngestContext, kind: str, filename: str) -> None:
    """Refuse a converted format when this service has no conversion workers. Not a checkpoint.

    Raises:
        UnsupportedFormat: ``kind`` is converted and ``ctx`` has no worker processes.
    """
    if kind in CONVERTED_FORMATS and ctx.cpu_workers is None:
        raise UnsupportedFormat(f"{filename!r} is {kind.upper()}; this everos runs without conversion workers, "
                                "so it takes text and markdown only")


class Intake:
    """Makes uploads durable and queues their extraction; lets a request wait for the outcome."""

    def __init__(self, ctx: IngestContext, categories: Categories) -> None:
        self._ctx = ctx
        self._categories = categories

    async def accept(self, upload: Upload, *, replace_doc_id: str | None = None) -> tuple[Job | None, repo.DocumentRow | None]:
        """Make the upload durable and queue its extraction. Returns ``(job, None)``, or
        ``(None, existing)`` when content dedupe found the same bytes in the same scope.

        Raises:
            UnsupportedFormat, ExtractionEmpty, InvalidInput, ConversionFailed: bad input; nothing
                was written.
            QueueSaturated: the ingest queue is full (G9); nothing was written.
            NotFound: ``replace_doc_id`` is not a document.
        """
        ctx = self._ctx
        kind = await ctx.cpu(detect_format, upload.data, upload.filename)
        check_convertible(ctx, kind, upload.filename)
        if kind not in CONVERTED_FORMATS:
            # Converted formats are decoded by their conversion, in the job's worker process.
            text = await ctx.cpu(decode_upload, upload.data, upload.filename, None)
            if not text.strip():
                raise ExtractionEmpty("the document holds no text")
        await self._categories.check(upload.category_id, upload.app_id, upload.project_id)
        sha256 = await ctx.cpu(lambda: hashlib.sha256(upload.data).hexdigest())
        if replace_doc_id is None:
            if ctx.config.knowledge.dedupe == "content":
                existing = await ctx.db.read(repo.find_by_content, upload.app_id, upload.project_id, sha256)
                if existing is not None:
                    return None, existing
            doc_id = new_doc_id()
        else:
            doc_id = replace_doc_id
            if await ctx.db.read(repo.get_document, doc_id) is None:
                raise NotFound(f"document {doc_id} not found")
        job_id = job_id_for(doc_id)
        inbox_name = f"{job_id}-{sha256[:16]}.bin"
        await ctx.files(atomic_write_bytes_sync, ctx.inbox / inbox_name, upload.data)
        payload = {
            "op": "replace" if replace_doc_id else "create", "doc_id": doc_id, "title": upload.title,
            "filename": upload.filename, "category_id": upload.category_id,
            # No source_type given: a converted upload records its detected format ("pdf", "docx").
            "source_type": upload.source_type or (kind if kind in CONVERTED_FORMATS else None), "format": kind,
            "app_id": upload.app_id, "project_id": upload.project_id, "inbox": inbox_name, "sha256": sha256,
            # The request that queued the job: its attempts log it and send it with their model calls.
            "request_id": current_request_id(),
        }
        try:
            # durable: with [sqlite] synchronous = NORMAL a WAL commit would survive a crash of
            # the process but not a power loss until the next checkpoint (G6 promises both).
            job = await ctx.queue.enqueue("ingest", payload, key=doc_id, job_id=job_id,
                                          max_pending=ctx.config.ingest.max_pending, durable=True)
        except QueueSaturated as exc:
            await ctx.files(lambda: (ctx.inbox / inbox_name).unlink(missing_ok=True))
            exc.retry_after_s = ctx.config.ingest.reaper_interval_seconds
            raise
        except BaseException:
            # Not acknowledged: leave no orphan bytes behind (a crash here leaves them to startup).
            with trio.CancelScope(shield=True):
                await ctx.files(lambda: (ctx.inbox / inbox_name).unlink(missing_ok=True))
            raise
        return job, None

    async def wait(self, job_id: str, timeout_s: float) -> Job:
        """Wait up to ``timeout_s`` for the job to finish; return it as it is then. A checkpoint.

        Cancelling the wait (a client disconnect) leaves the job running: it is durable.

        Raises:
            NotFound: the job is gone (its document was deleted).
        """
        queue = self._ctx.queue
        with self._ctx.jobs.watch(job_id) as watch, trio.move_on_after(timeout_s):
            while True:
                job = await queue.get(job_id)
                if job is None or job.status in TERMINAL:
                    break
                await watch.next(STATUS_REFRESH_S)
        job = await queue.get(job_id)
        if job is None:
            raise NotFound(f"task {job_id} not found (its document was deleted)")
        return job
