"""The EverOS knowledge routes, mounted under ``/api/v1/knowledge`` and ``/api/v2/knowledge``.

Field names, id patterns, status codes and envelopes follow EverOS 1.x (reference §2.3); where
everos adds something (202 with a task, ``/tasks``, ``duplicate``, ``Idempotency-Key``) an EverOS
client that does not ask for it sees EverOS's answers.
"""

from __future__ import annotations

from typing import Any

import trio
from quart import Blueprint, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from everos.api import (
    DocumentRef,
    EmptyBody,
    ListDocuments,
    ListTasks,
    PatchDocument,
    Scope,
    SearchRequest,
    TaskRef,
    TopicRef,
    UploadForm,
)
from everos.api import _answers as answers
from everos.errors import InvalidInput, PayloadTooLarge, ServiceUnavailable
from everos.ingest import TERMINAL, IngestService, Upload
from everos.store import Job, JobStatus
from everos.web._app import current_request_id, ok
from everos.web._envelope import dumps, now_iso

__all__ = ["knowledge_blueprints"]


def knowledge_blueprints(service: IngestService, search: Any = None) -> list[Blueprint]:
    """The routes for ``/api/v1`` and ``/api/v2``. ``search`` is the search service (an object with
    EverOS's ``search(...)``); without one, ``POST /search`` answers 503."""
    return [_blueprint(service, search, version) for version in ("v1", "v2")]


def _blueprint(service: IngestService, search: Any, version: str) -> Blueprint:
    bp = Blueprint(f"knowledge_{version}", __name__, url_prefix=f"/api/{version}/knowledge")
    prefix = f"/api/{version}/knowledge"

    def timezone() -> str:
        return service.config.memory.timezone

    def timestamp(epoch: float | None) -> str | None:
        return answers.display_time(epoch, timezone())

    async def read_upload() -> Upload:
        form = await request.form
        files = await request.files
        if "file" not in files:
            raise InvalidInput("file is required (multipart field 'file')", field="file")
        storage = files["file"]
        # A large part is spooled to a temporary file: read it off the event loop (G5).
        data = await trio.to_thread.run_sync(storage.read, limiter=service.limiters.files)
        if len(data) > service.config.knowledge.max_upload_bytes:
            raise PayloadTooLarge(
                f"file is {len(data)} bytes; the limit is {service.config.knowledge.max_upload_bytes} bytes")
        scope = form if "app_id" in form or "project_id" in form else request.args
        fields = UploadForm.parse({**{name: scope[name] for name in ("app_id", "project_id") if name in scope},
                                   "title": form.get("title"), "filename": storage.filename,
                                   "source_type": form.get("source_type"), "category_id": form.get("category_id")})
        return Upload(data=data, title=fields.title, filename=fields.filename, app_id=fields.app_id,
                      project_id=fields.project_id, source_type=fields.source_type, category_id=fields.category_id)

    def job_answer(job: Job, success_status: int) -> tuple[int, dict[str, Any], dict[str, str]]:
        if job.status is JobStatus.SUCCEEDED:
            return success_status, {"request_id": None, "data": answers.upload_body(job.result)}, {}
        if job.status in TERMINAL:
            error = answers.job_failure(job)
            return error.status, {"request_id": None, "error": {"code": error.code, "message": error.message,
                                                                "task_id": job.id, "path": request.path}}, {}
        body = {"doc_id": job.payload["doc_id"], "task_id": job.id, "status": str(job.status),
                "status_url": f"{prefix}/tasks/{job.id}"}
        return 202, {"request_id": None, "data": body}, {"Location": body["status_url"]}

    def render(status: int, body: dict[str, Any], headers: dict[str, str]) -> Response:
        if "error" in body:
            error = {**body["error"], "timestamp": now_iso()}
            response = Response(dumps({"request_id": current_request_id(), "error": error}), status=status,
                                content_type="application/json")
            for name, value in headers.items():
                response.headers[name] = value
            return response
        return ok(body["data"], status, headers)

    async def waited_answer(job: Job, success_status: int) -> tuple[int, dict[str, Any], dict[str, str]]:
        """The job's answer after the sync wait (none with ``Prefer: respond-async``)."""
        prefer_async = "respond-async" in request.headers.get("Prefer", "").lower()
        wait_s = 0.0 if prefer_async else service.config.knowledge.sync_wait_seconds
        job = await service.wait(job.id, wait_s) if wait_s > 0 else job
        return job_answer(job, success_status)

    def signal_lag(response: Response) -> Response:
        """A successful upload's answer while the index lags: the same answer, with
        X-Everos-Index-Lag saying how many documents wait and the bound they passed."""
        lag = service.index_lag()
        if lag is not None and response.status_code < 300:
            response.headers[answers.INDEX_LAG_HEADER] = answers.index_lag_header(lag["documents"], lag["bound"])
        return response

    async def ingest(op: str, doc_id: str | None) -> Response:
        upload = await read_upload()
        key = request.headers.get("Idempotency-Key")
        idem_scope = f"{op}:{upload.app_id}:{upload.project_id}"
        if key:
            request_hash = await trio.to_thread.run_sync(upload.request_hash, op, doc_id,
                                                         limiter=service.limiters.cpu)
            stored = await service.idempotent_answer(idem_scope, key, request_hash)
            if stored is not None:
                status, body = stored
                response = render(status, body, {})
                response.headers["Idempotent-Replayed"] = "true"
                return signal_lag(response)
        job, existing = await service.accept(upload, replace_doc_id=doc_id)
        if existing is not None:
            status, body, headers = 200, {"data": {**answers.created_body(existing, service.root), "duplicate": True}}, {}
        else:
            status, body, headers = await waited_answer(job, 201 if op == "create" else 200)
        if key and status < 500:
            await service.remember_answer(idem_scope, key, request_hash, status, body)
        return signal_lag(render(status, body, headers))

    @bp.post("/documents")
    async def create_document() -> Response:
        return await ingest("create", None)

    @bp.put("/documents/<doc_id>")
    async def replace_document(doc_id: str) -> Response:
        return await ingest("replace", path_doc_id(doc_id))

    @bp.post("/documents/<doc_id>/reextract")
    async def reextract_document(doc_id: str) -> Response:
        doc_id = path_doc_id(doc_id)
        await empty_body()
        return render(*await waited_answer(await service.reextract(doc_id), 200))

    @bp.post("/reextract")
    async def reextract_fallbacks() -> Response:
        await empty_body()
        jobs = await service.reextract_fallbacks()
        return ok({"requeued": [{"doc_id": job.payload["doc_id"], "task_id": job.id,
                                 "status_url": f"{prefix}/tasks/{job.id}"} for job in jobs]}, 202)

    @bp.patch("/documents/<doc_id>")
    async def patch_document(doc_id: str) -> Response:
        doc_id = path_doc_id(doc_id)
        patch = PatchDocument.parse(await json_body())
        result = await service.update(doc_id, title=patch.title, category_id=patch.category_id)
        return ok({**result, "updated_at": timestamp(result["updated_at"])})

    @bp.delete("/documents/<doc_id>")
    async def delete_document(doc_id: str) -> Response:
        doc_id = path_doc_id(doc_id)
        Scope.from_query(request.args)
        deleted = await service.delete(doc_id)
        if not deleted:
            # A bytes body: Quart's default empty body is a sync iterable that it drains through
            # asyncio, which fails under trio ("no running event loop").
            return Response(b"", status=204)
        return ok({"doc_id": doc_id, "deleted_topics": deleted})

    @bp.get("/documents")
    async def list_documents() -> Response:
        listing = ListDocuments.from_query(request.args)
        docs, total = await service.list_documents(**listing.model_dump())
        states = await service.index_states([d.doc_id for d in docs])
        return ok({
            "documents": [{**answers.document_list_item(d, timezone()), **states[d.doc_id]} for d in docs],
            "total": total, "page": listing.page, "page_size": listing.page_size,
        })

    @bp.get("/documents/<doc_id>")
    async def get_document(doc_id: str) -> Response:
        doc, topics = await service.get_document(path_doc_id(doc_id))
        states = await service.index_states([doc.doc_id])
        return ok({**answers.document_body(doc, topics, service.root, timezone()), **states[doc.doc_id]})

    @bp.get("/topics/<topic_id>")
    async def get_topic(topic_id: str) -> Response:
        return ok(answers.topic_body(await service.get_topic(path_topic_id(topic_id)), timezone()))

    @bp.post("/search")
    async def search_route() -> Response:
        checked = SearchRequest.parse(await json_body(), top_k_cap=service.config.knowledge_search.top_k_cap)
        if search is None:
            raise ServiceUnavailable("search is not available on this server")
        return ok(await search.search(**checked.model_dump()))

    @bp.get("/categories")
    async def categories() -> Response:
        scope = Scope.from_query(request.args)
        return ok({"categories": await service.category_listing(scope.app_id, scope.project_id)})

    async def task_bodies(jobs: list) -> list[dict]:
        progress = await service.task_progress(jobs)
        return [answers.task_body(job, timezone(), prefix, progress.get(job.id)) for job in jobs]

    @bp.get("/tasks/<task_id>")
    async def get_task(task_id: str) -> Response:
        return ok((await task_bodies([await service.get_task(path_task_id(task_id))]))[0])

    @bp.post("/tasks/<task_id>/retry")
    async def retry_task(task_id: str) -> Response:
        task_id = path_task_id(task_id)
        await empty_body()
        return ok((await task_bodies([await service.retry_task(task_id)]))[0])

    @bp.get("/tasks")
    async def list_tasks() -> Response:
        listing = ListTasks.from_query(request.args)
        jobs = await service.list_tasks(listing.status, limit=listing.page_size,
                                        offset=(listing.page - 1) * listing.page_size)
        return ok({"tasks": await task_bodies(jobs), "page": listing.page,
                   "page_size": listing.page_size})

    return bp


def path_doc_id(doc_id: str) -> str:
    """The path's document id, checked (``InvalidInput`` naming ``doc_id``)."""
    return DocumentRef.parse({"doc_id": doc_id}).doc_id


def path_topic_id(topic_id: str) -> str:
    """The path's topic id, checked (``InvalidInput`` naming ``topic_id``)."""
    return TopicRef.parse({"topic_id": topic_id}).topic_id


def path_task_id(task_id: str) -> str:
    """The path's task id, checked (``InvalidInput`` naming ``task_id``)."""
    return TaskRef.parse({"task_id": task_id}).task_id


async def empty_body() -> None:
    """Accept an empty body or ``{}`` only (routes that take no arguments).

    Raises:
        InvalidInput: any other body.
    """
    if await request.get_data():
        EmptyBody.parse(await json_body())


async def json_body() -> dict[str, Any]:
    try:
        body = await request.get_json(force=True, silent=False)
    except RequestEntityTooLarge:
        raise PayloadTooLarge("the request body is larger than the server accepts") from None
    except Exception:
        raise InvalidInput("the body must be a JSON object", field="body") from None
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object", field="body")
    return body
