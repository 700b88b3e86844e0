"""The OpenAPI document of the knowledge and cascade routes, built from the request models.

``OPERATIONS`` names each route (under ``/api/v1`` and ``/api/v2`` alike) with the models of its
path, its query string and its body; :func:`openapi_document` turns them into OpenAPI 3.1
``paths``: the path and query parameters are the fields of their models, the request body is its
model's JSON schema (``components/schemas``), and a multipart upload is the form's fields plus
the ``file`` part. Each success status has its body's schema: the success envelope around the
``data`` schema (``api._answer_schemas``); each error status an operation can answer points to
EverOS's error envelope (``Error``). ``web._docs`` serves the document as ``/openapi.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from everos import __version__
from everos.api._requests import (
    CascadeFix,
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
from everos.api._answer_schemas import ANSWER_SCHEMAS, envelope
from everos.api._answers import INDEX_LAG_HEADER
from everos.api._model import RequestModel

__all__ = ["OPERATIONS", "Operation", "openapi_document"]

VERSIONS = ("v1", "v2")


@dataclass(frozen=True)
class Operation:
    """One route: ``method`` and ``path`` (below ``/api/<version>``), the operation's ``name``
    (``operationId`` with the version appended), a one-line ``summary``, the statuses it answers
    with on success (with a description and the name of the ``data`` schema in
    :data:`~everos.api._answer_schemas.ANSWER_SCHEMAS`), the error statuses it can answer, and the models of its path parameters, query string and body.
    ``body_optional``: no body at all is accepted too; ``form``: the body is multipart with a
    ``file`` part; ``tool``: the MCP tool of the same operation."""

    method: str
    path: str
    name: str
    summary: str
    answers: dict[int, tuple[str, str | None]]
    errors: tuple[int, ...]
    path_model: type[RequestModel] | None = None
    query_model: type[RequestModel] | None = None
    body_model: type[RequestModel] | None = None
    body_optional: bool = False
    form: bool = False
    tool: str | None = None


# Success statuses: (description, schema of ``data`` in ANSWER_SCHEMAS; None: no body).
_UPLOADED = {201: ("The document, stored and split into topics.", "DocumentCreated"),
             200: ("The stored document with the same content (duplicate: true), or the replaced document.",
                   "DocumentCreated"),
             202: ("Extraction is still running (or Prefer: respond-async): the task to poll.", "TaskAccepted")}
_DOCUMENT = "/knowledge/documents/{doc_id}"

# Error statuses, by what raises them (everos.errors: each class has its status). Every operation
# can answer 504 REQUEST_TIMEOUT (the request layer's deadline) and 503 (STORE_BUSY: SQLite did not
# answer in time); a body is refused with 413 past the upload limit and 422 when it is not what the
# model accepts. An upload's extraction, when the request waits for it, can fail with the job's
# error: 415 UNSUPPORTED_FORMAT, 422 EXTRACTION_EMPTY / CONVERSION_FAILED / WORKER_*, 503
# EXTERNAL_SERVICE_UNAVAILABLE (the model); 429 QUEUE_SATURATED when the ingest queue is full.
_READ = (422, 503, 504)
_READ_ONE = (404, 422, 503, 504)
_BODY = (413, 422, 503, 504)
_UPLOAD = (400, 404, 409, 413, 415, 422, 429, 503, 504)

OPERATIONS: tuple[Operation, ...] = (
    Operation("post", "/knowledge/documents", "create_document", "Upload a document", _UPLOADED, _UPLOAD,
              body_model=UploadForm, form=True),
    Operation("get", "/knowledge/documents", "list_documents", "List a scope's documents, a page at a time",
              {200: ("A page of documents.", "DocumentList")}, _READ, query_model=ListDocuments,
              tool="knowledge_list_documents"),
    Operation("get", _DOCUMENT, "get_document", "Read a document and its topic tree",
              {200: ("The document.", "DocumentDetail")}, _READ_ONE, path_model=DocumentRef,
              tool="knowledge_get_document"),
    Operation("put", _DOCUMENT, "replace_document", "Replace a document's file", _UPLOADED, _UPLOAD,
              path_model=DocumentRef, body_model=UploadForm, form=True),
    Operation("patch", _DOCUMENT, "patch_document", "Rename a document or move it to another category",
              {200: ("The fields changed.", "DocumentPatched")}, (404, *_BODY), path_model=DocumentRef,
              body_model=PatchDocument),
    Operation("delete", _DOCUMENT, "delete_document", "Delete a document",
              {200: ("What was deleted.", "DocumentDeleted"), 204: ("There was no such document.", None)}, _READ,
              path_model=DocumentRef, query_model=Scope, tool="knowledge_delete_document"),
    Operation("post", _DOCUMENT + "/reextract", "reextract_document", "Extract a document's topics again",
              {200: ("The re-extracted document.", "DocumentCreated"), 202: ("The task to poll.", "TaskAccepted")},
              (404, 413, 415, 422, 429, 503, 504), path_model=DocumentRef, body_model=EmptyBody,
              body_optional=True),
    Operation("post", "/knowledge/reextract", "reextract_fallbacks",
              "Extract again every document the built-in extractor made as a fallback",
              {202: ("The tasks queued.", "ReextractQueued")}, (413, 422, 429, 503, 504), body_model=EmptyBody,
              body_optional=True),
    Operation("get", "/knowledge/topics/{topic_id}", "get_topic", "Read a topic with its content",
              {200: ("The topic.", "TopicDetail")}, _READ_ONE, path_model=TopicRef, tool="knowledge_get_topic"),
    Operation("post", "/knowledge/search", "search", "Search the topics of a scope",
              {200: ("The hits.", "SearchResult")}, _BODY, body_model=SearchRequest, tool="knowledge_search"),
    Operation("get", "/knowledge/categories", "list_categories", "The categories of a scope's taxonomy",
              {200: ("The categories, with their document counts.", "CategoryList")}, _READ, query_model=Scope),
    Operation("get", "/knowledge/tasks", "list_tasks", "List ingest tasks",
              {200: ("A page of tasks.", "TaskPage")}, _READ, query_model=ListTasks),
    Operation("get", "/knowledge/tasks/{task_id}", "get_task", "Poll an ingest task", {200: ("The task.", "Task")},
              _READ_ONE, path_model=TaskRef, tool="knowledge_task_status"),
    Operation("post", "/knowledge/tasks/{task_id}/retry", "retry_task", "Queue a dead or failed task again",
              {200: ("The task, queued again.", "Task")}, (404, 409, 413, 422, 429, 503, 504), path_model=TaskRef,
              body_model=EmptyBody, body_optional=True),
    Operation("get", "/cascade/status", "cascade_status", "The index cascade's state",
              {200: ("What everos cascade status prints.", "CascadeStatus")}, (503, 504)),
    Operation("post", "/cascade/fix", "cascade_fix", "List, or queue again, the dead and failed index rows",
              {200: ("What everos cascade fix prints.", "CascadeFixReport")}, _BODY, body_model=CascadeFix,
              body_optional=True),
)

# What each error status means, for the responses' descriptions.
ERRORS = {
    400: "BAD_REQUEST: the request is malformed (a multipart body that does not parse, a file name that "
         "would leave the root).",
    404: "NOT_FOUND: no such document, topic or task (or the document was deleted meanwhile).",
    409: "CONFLICT: the task is not dead or failed, or its upload is gone; an Idempotency-Key reused for "
         "another request.",
    413: "PAYLOAD_TOO_LARGE: the body is larger than [knowledge] max_upload_bytes allows.",
    415: "UNSUPPORTED_FORMAT: the file is of a kind everos does not read.",
    422: "INVALID_INPUT naming the refused field; for an extraction EXTRACTION_EMPTY, CONVERSION_FAILED or "
         "WORKER_FAILED (and WORKER_TIMEOUT, WORKER_OUT_OF_MEMORY, WORKER_CRASHED).",
    429: "QUEUE_SATURATED: the ingest queue is full; try again after Retry-After seconds.",
    503: "SERVICE_UNAVAILABLE: STORE_BUSY (the store did not answer in time), EXTERNAL_SERVICE_UNAVAILABLE "
         "(the model endpoint failed), or search is not available; Retry-After when known.",
    504: "REQUEST_TIMEOUT: the request did not finish within [api] request_timeout_seconds.",
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again.",
                                "schema": {"type": "integer", "minimum": 1}}}

_INDEX_LAG = {INDEX_LAG_HEADER: {
    "description": "Only while the index lags: more documents wait for their index than [cascade] lag_documents "
                   "(documents=412, bound=300). The upload is accepted all the same; a client sending many "
                   "should wait until /health's cascade block no longer says lagging.",
    "schema": {"type": "string"}}}

_ERROR_ENVELOPE = {
    "type": "object",
    "description": "EverOS's error envelope: the code, a one-line message and, for INVALID_INPUT, the field.",
    "properties": {
        "request_id": {"type": ["string", "null"]},
        "error": {
            "type": "object",
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"},
                           "task_id": {"type": "string"}, "timestamp": {"type": "string"},
                           "path": {"type": "string"}},
            "required": ["code", "message"],
        },
    },
    "required": ["error"],
}
_FILE_PART = {"type": "string", "contentMediaType": "application/octet-stream", "minLength": 1,
              "description": "The document's bytes, at most [knowledge] max_upload_bytes (an empty file holds no "
                             "text: 422 EXTRACTION_EMPTY); the part's file name is the document's filename."}


_BEARER = {"type": "http", "scheme": "bearer",
           "description": "An API key from `everos keys create --scope read|write|admin` (issue #16 item 1), "
                          "required on every route once the root has a key: 401 UNAUTHORIZED without a "
                          "valid one, 403 FORBIDDEN when its scope is too small (read: GET and search; "
                          "write: also uploads, changes, deletes; admin: also cascade routes and task retries)."}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of :data:`OPERATIONS`, for ``/api/v1`` and ``/api/v2``. Pure."""
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Error": _ERROR_ENVELOPE, **ANSWER_SCHEMAS}
    for version in VERSIONS:
        for operation in OPERATIONS:
            paths.setdefault(f"/api/{version}{operation.path}", {})[operation.method] = \
                _operation(operation, version, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "everos", "version": __version__,
                 "description": "A local-first knowledge server speaking the EverOS 1.x knowledge API."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {"apiKey": _BEARER}},
        # A key is needed once the root has one (`everos keys create`); with none, none is needed.
        "security": [{"apiKey": []}, {}],
    }


def _operation(operation: Operation, version: str, schemas: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "operationId": f"{operation.name}_{version}",
        "summary": operation.summary,
        "tags": [operation.path.split("/")[1]],
        "parameters": [*_parameters(operation.path_model, "path"), *_parameters(operation.query_model, "query")],
        "responses": _responses(operation),
    }
    if operation.tool:
        body["x-mcp-tool"] = operation.tool
    model = operation.body_model
    if model is not None:
        schema = model.model_json_schema()
        if operation.form:
            fields = {name: _as_text(value) for name, value in schema["properties"].items() if name != "filename"}
            form = {**schema, "properties": {"file": _FILE_PART, **fields},
                    "required": ["file", *schema.get("required", [])]}
            content = {"multipart/form-data": {"schema": form}}
        else:
            # A request model and an answer schema share components/schemas: a name taken twice
            # would point one operation's answer at another's body.
            if schemas.setdefault(model.__name__, schema) != schema:
                raise ValueError(f"components/schemas/{model.__name__} names two schemas")
            content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}
        body["requestBody"] = {"required": not operation.body_optional, "content": content}
    return body


def _responses(operation: Operation) -> dict[str, Any]:
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    responses: dict[str, Any] = {}
    for status, (text, name) in operation.answers.items():
        responses[str(status)] = {"description": text}
        if name is not None:
            responses[str(status)]["content"] = {"application/json": {"schema": envelope(name)}}
        if status == 202:
            responses[str(status)]["headers"] = {"Location": {"description": "The task's status_url.",
                                                              "schema": {"type": "string"}}}
        if operation.form:  # an upload or a replace
            responses[str(status)]["headers"] = {**responses[str(status)].get("headers", {}), **_INDEX_LAG}
    for status in operation.errors:
        responses[str(status)] = {"description": ERRORS[status], "content": error}
        if status in (429, 503):
            responses[str(status)]["headers"] = _RETRY_AFTER
    if operation.body_model is not None:
        responses["408"] = {"description": "REQUEST_BODY_TIMEOUT: the body did not arrive within [api] "
                                           "body_timeout_seconds (plus a second per body_min_rate_bytes); the "
                                           "connection is closed.", "content": error}
    # Every operation: an API key over its rate (issue #16 item 2), besides what the handler raises.
    limited = "RATE_LIMITED: the API key sent more than [api] key_requests_per_second, or has its " \
              "key_concurrent_uploads in flight; try again after Retry-After seconds."
    responses["429"] = {"description": f"{ERRORS[429]} {limited}" if 429 in operation.errors else limited,
                        "content": error, "headers": _RETRY_AFTER}
    responses["401"] = {"description": "UNAUTHORIZED: the root has API keys and the request carries none, "
                                       "or an unknown one.", "content": error}
    responses["403"] = {"description": "FORBIDDEN: the API key's scope does not allow this operation.",
                        "content": error}
    responses["default"] = {"description": "INTERNAL_ERROR, or another EverOS error.", "content": error}
    return responses


def _parameters(model: type[RequestModel] | None, where: str) -> list[dict[str, Any]]:
    if model is None:
        return []
    properties = model.model_json_schema().get("properties", {})
    return [{"name": name, "in": where, "required": where == "path" or field.is_required(),
             **({"description": field.description} if field.description else {}),
             "schema": _as_text(properties[name])}
            for name, field in model.model_fields.items()]


def _as_text(schema: dict[str, Any]) -> dict[str, Any]:
    """A field's schema where its value is text (a path or query parameter, a form field): a
    model's ``null`` branch is left out, since text cannot carry JSON's null (a client would send
    the word ``null``); the field left out is what the model's ``None`` means."""
    branches = [branch for branch in schema.get("anyOf", ()) if branch != {"type": "null"}]
    if len(branches) != 1 or len(schema["anyOf"]) != 2:
        return schema
    rest = {key: value for key, value in schema.items() if key != "anyOf" and not (key == "default" and value is None)}
    return {**branches[0], **rest}
