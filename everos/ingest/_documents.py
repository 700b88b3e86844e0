"""The stored documents and their tasks: read, PATCH, DELETE, re-extraction, retry, and lookups.

PATCH and DELETE hold the document's lock (as publishing does), so they never interleave with an
extraction being published or the cascade writing the document's rows; each tells the cascade
which directories changed. The lookups answer other services: the cascade's index states for the
routes, and document briefs and topic contents for search hits.
"""

from __future__ import annotations

from typing import Any

import trio

from everos.errors import Conflict, InvalidInput, NotFound, QueueSaturated
from everos.ingest import _repository as repo
from everos.ingest._accept import Intake, Upload
from everos.ingest._categories import Categories
from everos.ingest._context import TERMINAL, IngestContext, job_id_for
from everos.ingest._edit import (
    discard_staging,
    publish_rewrite,
    restore_rows,
    row_snapshot,
    save_rewritten,
    stage_rewrite,
)
from everos.ingest._locks import DocumentLocks
from everos.knowledge._layout import document_dir
from everos.store import Job, JobStatus, remove_tree_sync

__all__ = ["Documents"]


class Documents:
    """The document and task operations behind the knowledge routes and the MCP tools."""

    def __init__(self, ctx: IngestContext, categories: Categories, intake: Intake, locks: DocumentLocks) -> None:
        self._ctx = ctx
        self._categories = categories
        self._intake = intake
        self._locks = locks

    # -- reading ----------------------------------------------------------------------------------

    async def get_document(self, doc_id: str) -> tuple[repo.DocumentRow, list]:
        ctx = self._ctx
        doc = await ctx.db.read(repo.get_document, doc_id)
        if doc is None:
            job = await ctx.queue.get(job_id_for(doc_id))
            if job is not None and job.status not in TERMINAL:
                raise NotFound(f"document {doc_id} is still being processed; poll task {job.id}")
            raise NotFound(f"document {doc_id} not found")
        return doc, await ctx.db.read(repo.list_topics, doc_id)

    async def get_topic(self, topic_id: str):
        row = await self._ctx.db.read(repo.get_topic, topic_id)
        if row is None:
            raise NotFound(f"topic {topic_id} not found")
        return row

    async def list_documents(self, **query: Any) -> tuple[list[repo.DocumentRow], int]:
        return await self._ctx.db.read(lambda conn: repo.list_documents(conn, **query))

    async def get_task(self, task_id: str) -> Job:
        job = await self._ctx.queue.get(task_id)
        if job is None:
            raise NotFound(f"task {task_id} not found")
        return job

    async def list_tasks(self, status: str | None, limit: int, offset: int) -> list[Job]:
        return await self._ctx.queue.list(status, limit=limit, offset=offset)

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
        ctx = self._ctx
        job = await self.get_task(task_id)
        if job.status not in (JobStatus.DEAD, JobStatus.FAILED):
            raise Conflict(f"task {task_id} is {job.status}; only a dead or failed task can be retried")
        if not await ctx.files((ctx.inbox / job.payload["inbox"]).is_file):
            raise Conflict(f"the upload of task {task_id} is gone from the inbox; upload the document again")
        if (await ctx.queue.stats()).pending >= ctx.config.ingest.max_pending:
            raise QueueSaturated("the ingest queue is full; try again later",
                                 retry_after_s=ctx.config.ingest.reaper_interval_seconds)
        await ctx.queue.requeue([task_id])
        return await self.get_task(task_id)

    # -- changing ---------------------------------------------------------------------------------

    async def update(self, doc_id: str, *, title: str | None, category_id: str | None) -> dict[str, Any]:
        """PATCH: new title and/or category; a category or title change moves the directory.

        The files are rewritten into a staging copy and renamed into place, so a reader sees the
        old or the new document, never a mix.
        """
        ctx, root = self._ctx, self._ctx.root
        async with self._locks.hold(doc_id):
            doc = await ctx.db.read(repo.get_document, doc_id)
            if doc is None:
                raise NotFound(f"document {doc_id} not found")
            await self._categories.check(category_id, doc.app_id, doc.project_id)
            new_title = title if title is not None else doc.title
            new_category = category_id if category_id is not None else doc.category_id
            updated = [name for name, new, old in (("title", new_title, doc.title),
                                                   ("category_id", new_category, doc.category_id)) if new != old]
            if not updated:
                return {"doc_id": doc_id, "updated_fields": [], "updated_at": doc.updated_at}
            old_dir = (root / doc.md_path).parent
            new_dir = document_dir(root, doc.app_id, doc.project_id, new_category, new_title, doc_id)
            now = ctx.clock()
            staging, rows = await ctx.files(stage_rewrite, root, old_dir, new_title, new_category, new_dir)
            try:
                before = await ctx.db.read(row_snapshot, doc_id)
                await ctx.db.write(lambda conn: save_rewritten(conn, root, doc, rows, new_dir, new_title,
                                                               new_category, now))
                try:
                    await ctx.files(publish_rewrite, root, staging, old_dir, new_dir)
                except BaseException:
                    with trio.CancelScope(shield=True):  # bounded by the store's own call deadline
                        await ctx.db.write(restore_rows, before)
                    raise
            finally:
                with trio.CancelScope(shield=True):
                    await ctx.files(discard_staging, staging)
            await ctx.changed(new_dir, old_dir, written=rows.written)
            return {"doc_id": doc_id, "updated_fields": updated, "updated_at": now}

    async def delete(self, doc_id: str) -> int | None:
        """Delete the document's directory, rows and queued job. Returns the deleted topic count,
        or None when there was nothing to delete."""
        ctx = self._ctx
        async with self._locks.hold(doc_id):
            doc = await ctx.db.read(repo.get_document, doc_id)
            job_deleted = await ctx.queue.delete(job_id_for(doc_id))
            ctx.jobs.settled(job_id_for(doc_id))
            if doc is None:
                return 0 if job_deleted else None
            doc_dir = (ctx.root / doc.md_path).parent
            await ctx.files(lambda: remove_tree_sync(doc_dir, root=ctx.root))
            deleted = await ctx.db.write(repo.delete_document, doc_id)
            await ctx.changed(doc_dir)
            return deleted

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
        ctx = self._ctx
        doc = await ctx.db.read(repo.get_document, doc_id)
        if doc is None:
            raise NotFound(f"document {doc_id} not found")
        if doc.original_path is None:
            raise InvalidInput(f"document {doc_id} has no original file to extract again", field="doc_id")
        original = ctx.root / doc.original_path
        try:
            data = await ctx.files(original.read_bytes)
        except FileNotFoundError:
            raise NotFound(f"the original file of document {doc_id} is gone ({doc.original_path})") from None
        upload = Upload(data=data, title=doc.title, filename=doc.source_name or original.name, app_id=doc.app_id,
                        project_id=doc.project_id, source_type=doc.source_type)
        job, _ = await self._intake.accept(upload, replace_doc_id=doc_id)
        assert job is not None  # a replace is never a content duplicate
        return job

    async def reextract_fallbacks(self) -> list[Job]:
        """:meth:`reextract` every document whose model extraction fell back to the built-in
        extractor, in every scope, oldest first. Returns the queued jobs.

        Raises:
            QueueSaturated: the ingest queue filled up; the documents before it are queued (a
                second call queues them all again, harmlessly: a job is keyed by its doc_id).
        """
        return [await self.reextract(doc.doc_id) for doc in await self._ctx.db.read(repo.fallback_documents)]

    # -- lookups for the routes and for search -----------------------------------------------------

    async def index_states(self, doc_ids: list[str]) -> dict[str, dict[str, str | None]]:
        """``{doc_id: {"index_status": pending | indexed | failed, "index_error": str | None}}``
        for every given id; both None when no cascade runs.

        Raises:
            StoreBusy: SQLite did not answer in time.
        """
        if self._ctx.index is None or not doc_ids:
            return {doc_id: {"index_status": None, "index_error": None} for doc_id in doc_ids}
        return await self._ctx.index.index_states(doc_ids)

    async def hit_details(self, topic_ids, with_content: bool = False) -> dict[str, dict[str, Any]]:
        """``{topic_id: details}`` for search hits (:func:`repo.hit_details`): one read for the
        topics and their documents; topics or documents that are gone are left out."""
        return await self._ctx.db.read(repo.hit_details, list(dict.fromkeys(topic_ids)), with_content)
