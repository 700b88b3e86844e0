"""The knowledge tools answered in this process, over an :class:`~everos.ingest.IngestService`.

Every call runs under ``[api] request_timeout_seconds`` (guarantee G1): past it the answer is a
``REQUEST_TIMEOUT`` tool error and the call's subtree is cancelled (an upload already accepted
stays durable, G6). ``knowledge_add_document`` waits for its extraction at most
``min([knowledge] sync_wait_seconds, time left - a margin)``, so during an LLM stall it answers in
time with the task to poll. Arguments are validated with the request models of the HTTP routes
(``everos.api``; after the catalog's input schema, made from the same models: defence in depth,
and the checks a schema cannot say), and answers have the HTTP bodies' shapes (``everos.api``'s
answer bodies, described by the catalog's output schemas); an ``EverosError`` becomes a tool
error with its EverOS code and message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from mcp.types import CallToolResult

from everos.api import (
    AddDocument,
    DocumentRef,
    ListDocuments,
    SearchRequest,
    TaskRef,
    TopicRef,
    created_body,
    document_body,
    document_list_item,
    job_failure,
    task_body,
    topic_body,
    upload_body,
)
from everos.errors import EverosError, InvalidInput, NotFound, PayloadTooLarge, ServiceUnavailable
from everos.ingest import TERMINAL, IngestService, Upload
from everos.logs import carrying_request_id
from everos.mcp import _render as render  # the submodule, not the package namespace
from everos.runtime import Runtime
from everos.store import JobStatus
from everos.web._envelope import mint_request_id

__all__ = ["KnowledgeTools", "SearchFn"]

log = logging.getLogger("everos.mcp")

SearchFn = Callable[..., Awaitable[dict[str, Any]]]
"""``async search(query, method, top_k, score_threshold, include_content, app_id, project_id)``
answering EverOS's ``{hits, total, took_ms}``."""

TASK_PREFIX = "/api/v1/knowledge"
# Kept free after an upload's wait to read the job and answer before the tool deadline.
ANSWER_MARGIN_S = 1.0
ANSWER_MARGIN_FRACTION = 0.25


class ToolFailure(Exception):
    """An EverOS error answered with more than its code and message: an ingest job's error,
    rebuilt from the job's stored code, with the ``task_id`` it belongs to."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.extra = code, message, extra


class KnowledgeTools:
    """The catalog's tools answered locally; :meth:`dispatch` is the ``Dispatch`` of ``build_server``.

    ``search`` is injected (None until a search service exists: ``knowledge_search`` then answers
    ``SERVICE_UNAVAILABLE``, and every other tool works).
    """

    def __init__(self, knowledge: IngestService, runtime: Runtime, search: SearchFn | None = None) -> None:
        self.knowledge = knowledge
        self.runtime = runtime
        self.search = search
        self._handlers: dict[str, Callable[[dict[str, Any]], Awaitable[tuple[dict[str, Any], str]]]] = {
            "knowledge_search": self._search,
            "knowledge_add_document": self._add_document,
            "knowledge_get_document": self._get_document,
            "knowledge_get_topic": self._get_topic,
            "knowledge_list_documents": self._list_documents,
            "knowledge_delete_document": self._delete_document,
            "knowledge_task_status": self._task_status,
            "knowledge_status": self._status,
        }

    @property
    def config(self):
        return self.runtime.config

    @property
    def timezone(self) -> str:
        return self.config.memory.timezone

    async def dispatch(self, name: str, arguments: dict[str, Any]) -> CallToolResult:
        """Answer one tool call within ``request_timeout_seconds``. A checkpoint; never raises for
        a tool's failure (it is the answer). Cancelled from outside, the call is cancelled with it.
        Each call gets a request id of its own, as an HTTP request does: its log lines, the jobs it
        queues and their model calls carry it."""
        deadline_s = self.config.api.request_timeout_seconds
        started = time.perf_counter()
        result = render.error_result("REQUEST_TIMEOUT", f"{name} did not finish within its deadline of "
                                                        f"{deadline_s:g} s")
        with carrying_request_id(mint_request_id()):
            with trio.move_on_after(deadline_s):
                result = await self._answer(name, arguments)
            outcome = result.structured_content["error"]["code"] if result.is_error else "ok"
            log.info("tool", extra={"fields": {"tool": name, "outcome": outcome,
                                               "duration_ms": round((time.perf_counter() - started) * 1000, 1)}})
        return result

    async def _answer(self, name: str, arguments: dict[str, Any]) -> CallToolResult:
        try:
            structured, text = await self._handlers[name](arguments)
        except EverosError as exc:
            return render.error_result(exc.code, exc.message, field=getattr(exc, "field", None),
                                       retry_after_s=exc.retry_after_s)
        except ToolFailure as exc:
            return render.error_result(exc.code, exc.message, **exc.extra)
        except Exception as exc:  # a bug: the caller gets a clear answer, the log gets the details
            log.error("tool %s failed", name, exc_info=exc)
            return render.internal_error(name)
        return render.ok_result(structured, text)

    # -- the tools --------------------------------------------------------------------------------

    async def _search(self, arguments: dict[str, Any]) -> tuple[dict[str, Any], str]:
        checked = SearchRequest.parse(arguments, top_k_cap=self.config.knowledge_search.top_k_cap)
        if self.search is None:
            raise ServiceUnavailable("search is not available yet on this server; documents can still be "
                                     "listed and read with knowledge_list_documents and knowledge_get_document")
        body = await self.search(**checked.model_dump())
        return body, render.render_search(body)

    async def _add_document(self, arguments: dict[str, Any]) -> tuple[dict[str, Any], str]:
        request = AddDocument.parse(arguments)
        data = await self._encode_within_limit(request.content)
        upload = Upload(data=data, title=request.title, filename=request.filename, app_id=request.app_id,
                        project_id=request.project_id, category_id=request.category_id)
        job, existing = await self.knowledge.accept(upload)
        if existing is not None:
            document = created_body(existing, self.knowledge.root)
            return {"done": True, "duplicate": True, "document": document}, render.render_created(document, True)
        time_left_s = trio.current_effective_deadline() - trio.current_time()
        wait_s = min(self.config.knowledge.sync_wait_seconds,
                     time_left_s - min(ANSWER_MARGIN_S, time_left_s * ANSWER_MARGIN_FRACTION))
        if wait_s > 0:
            job = await self.knowledge.wait(job.id, wait_s)
        if job.status is JobStatus.SUCCEEDED:
            document = upload_body(job.result)
            return ({"done": True, "duplicate": False, "document": document},
                    render.render_created(document, False))
        if job.status in TERMINAL:
            error = job_failure(job)
            raise ToolFailure(error.code, error.message, task_id=job.id)
        task = task_body(job, self.timezone, TASK_PREFIX, (await self.knowledge.task_progress([job])).get(job.id))
        return {"done": False, "task": task}, render.render_pending(task)

    async def _encode_within_limit(self, content: str) -> bytes:
        limit = self.config.knowledge.max_upload_bytes
        if len(content) > limit:  # every character is at least one byte: too large before encoding
            raise PayloadTooLarge(f"content is over {limit} bytes; the limit is {limit} bytes")
        try:
            # Encoding up to the upload cap is CPU work: off the event loop (G5).
            data = await trio.to_thread.run_sync(content.encode, "utf-8", limiter=self.runtime.limiters.cpu)
        except UnicodeEncodeError:
            raise InvalidInput("content must be valid Unicode text (it holds a lone surrogate)",
                               field="content") from None
        if len(data) > limit:
            raise PayloadTooLarge(f"content is {len(data)} bytes; the limit is {limit} bytes")
        return data

    async def _get_document(self, arguments: dict[str, Any]) -> tuple[dict[str, Any], str]:
        doc, topics = await self.knowledge.get_document(DocumentRef.parse(arguments).doc_id)
        body = document_body(doc, topics, self.knowledge.root, self.timezone)
        return body, render.render_document(body)

    async def _get_topic(self, arguments: dict[str, Any]) -> tuple[dict[str, Any], str]:
        body = topic_body(await self.knowledge.get_topic(TopicRef.parse(arguments).topic_id), self.timezone)
        return body, render.render_topic(body)

    async def _list_documents(self, arguments: dict[str, Any]) -> tuple[dict[str, Any], str]:
        listing = ListDocuments.parse(arguments)
        docs, total = await self.knowledge.list_documents(**listing.model_dump())
        body = {"documents": [document_list_item(d, self.timezone) for d in docs], "total": total,
                "page": listing.page, "page_size": listing.page_size}
        return body, render.render_listing(body)

    async def _delete_document(self, arguments: dict[str, Any]) -> tuple[dict[str, Any], str]:
        doc_id = DocumentRef.parse(arguments).doc_id
        deleted = await self.knowledge.delete(doc_id)
        if deleted is None:
            raise NotFound(f"document {doc_id} not found")
        return ({"doc_id": doc_id, "deleted_topics": deleted},
                f"Deleted document {doc_id} and its {deleted} topics.")

    async def _task_status(self, arguments: dict[str, Any]) -> tuple[dict[str, Any], str]:
        job = await self.knowledge.get_task(TaskRef.parse(arguments).task_id)
        body = task_body(job, self.timezone, TASK_PREFIX, (await self.knowledge.task_progress([job])).get(job.id))
        return body, render.render_task(body)

    async def _status(self, arguments: dict[str, Any]) -> tuple[dict[str, Any], str]:
        await trio.lowlevel.checkpoint()
        health = self.runtime.board.snapshot()
        body = {"health": health, "queue": health.get("ingest") or {}}
        return body, render.render_status(body)
