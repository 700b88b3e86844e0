"""JSON schemas of the success answers' ``data``, for ``components/schemas`` of the OpenAPI document.

Hand-written from the shapes the answers are built with (``api._answers``: ``upload_body``,
``created_body``, ``document_body``, ``document_list_item``, ``task_body``, ``topic_body``; the
search service's hits; the routes of ``web._knowledge`` and ``web._cascade``), with EverOS 1.x's
field names (its published contract names the same fields ``DocumentCreateResponse``,
``DocumentDetailResponse`` and so on). everos's additions are described as such. Every answer is
wrapped in the success envelope ``{"request_id", "data"}`` (:func:`envelope`). The tests check real
answers of a running server against these schemas, so a field added to an answer without its
schema fails them.
"""

from __future__ import annotations

from typing import Any

from everos.api._fields import JOB_STATUSES

__all__ = ["ANSWER_SCHEMAS", "envelope"]

STRING = {"type": "string"}
INTEGER = {"type": "integer"}
NUMBER = {"type": "number"}
OPTIONAL_STRING = {"type": ["string", "null"]}
TIME = {"type": "string", "format": "date-time", "description": "ISO 8601 with milliseconds, in [memory] timezone."}
OPTIONAL_TIME = {"type": ["string", "null"], "format": "date-time"}


TASK_PHASES = ("queued", "reading", "converting", "extracting", "publishing", "indexing", "done", "failed")
_MODEL_USAGE = {"type": "object", "description": "Model answers and their tokens.",
                "properties": {"calls": INTEGER, "prompt_tokens": INTEGER, "completion_tokens": INTEGER},
                "required": ["calls", "prompt_tokens", "completion_tokens"], "additionalProperties": False}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def shape(description: str, properties: dict[str, Any], *, optional: tuple[str, ...] = (),
          closed: bool = True) -> dict[str, Any]:
    """An object schema: every property required but ``optional``; ``closed``: no other field."""
    schema: dict[str, Any] = {"type": "object", "description": description, "properties": properties,
                              "required": [name for name in properties if name not in optional]}
    if closed:
        schema["additionalProperties"] = False
    return schema


def envelope(name: str) -> dict[str, Any]:
    """The success envelope around the schema ``name``."""
    return {"type": "object", "properties": {"request_id": STRING, "data": ref(name)},
            "required": ["request_id", "data"]}


_INDEX_STATE = {
    "index_status": {"type": ["string", "null"], "enum": ["pending", "indexed", "failed", None],
                     "description": "everos: where the search index is with the document (null: no cascade runs)."},
    "index_error": {"type": ["string", "null"], "description": "everos: why indexing failed, if it did."},
}

_DOCUMENT_CREATED = {
    "doc_id": STRING, "category_id": STRING, "topic_count": INTEGER, "source_name": OPTIONAL_STRING,
    "md_path": {"type": "string", "description": "The document's directory under the root."},
    "original_file_path": OPTIONAL_STRING,
}

_TOPIC_OVERVIEW = {"topic_id": STRING, "topic_name": STRING, "topic_path": STRING, "depth": INTEGER,
                   "summary": STRING}

ANSWER_SCHEMAS: dict[str, dict[str, Any]] = {
    "DocumentCreated": shape(
        "POST/PUT /documents and a re-extraction: the stored document (EverOS's DocumentCreateResponse). "
        "everos: duplicate is true when the same bytes were already stored in the scope.",
        {**_DOCUMENT_CREATED, "duplicate": {"type": "boolean", "const": True}}, optional=("duplicate",)),
    "TaskAccepted": shape(
        "everos: 202, the extraction runs on (or Prefer: respond-async); poll status_url (also the Location header).",
        {"doc_id": STRING, "task_id": STRING, "status": {"type": "string", "enum": list(JOB_STATUSES)},
         "status_url": STRING}),
    "TopicOverview": shape("A topic of a document, without its content.", _TOPIC_OVERVIEW),
    "DocumentDetail": shape(
        "GET /documents/{doc_id}: the document and its topics (EverOS's DocumentDetailResponse); everos adds "
        "md_path, app_id, project_id, the extractor that made the topics and the index state.",
        {"doc_id": STRING, "category_id": STRING, "title": STRING, "summary": STRING,
         "source_name": OPTIONAL_STRING, "source_type": OPTIONAL_STRING, "original_file_path": OPTIONAL_STRING,
         "md_path": STRING, "app_id": STRING, "project_id": STRING, "extractor": OPTIONAL_STRING,
         "topics": {"type": "array", "items": ref("TopicOverview")}, "created_at": TIME, "updated_at": TIME,
         **_INDEX_STATE}),
    "DocumentListItem": shape(
        "One document of a page (EverOS's DocumentOverviewItemDTO, plus updated_at and the index state).",
        {"doc_id": STRING, "category_id": STRING, "title": STRING, "topic_count": INTEGER, "created_at": TIME,
         "updated_at": TIME, **_INDEX_STATE}),
    "DocumentList": shape(
        "GET /documents: one page, newest first (EverOS's DocumentListResponse).",
        {"documents": {"type": "array", "items": ref("DocumentListItem")}, "total": INTEGER, "page": INTEGER,
         "page_size": INTEGER}),
    "DocumentPatched": shape(
        "PATCH /documents/{doc_id}: what changed (EverOS's DocumentPatchResponse).",
        {"doc_id": STRING, "updated_fields": {"type": "array", "items": {"enum": ["title", "category_id"]}},
         "updated_at": TIME}),
    "DocumentDeleted": shape("DELETE /documents/{doc_id}: the document and how many topics went with it.",
                             {"doc_id": STRING, "deleted_topics": INTEGER}),
    "TopicDetail": shape(
        "GET /topics/{topic_id}: one topic with its content (EverOS's TopicDetailResponse).",
        {"topic_id": STRING, "doc_id": STRING, "category_id": STRING, "topic_name": STRING, "topic_path": STRING,
         "depth": INTEGER, "summary": STRING, "content": STRING,
         "content_labels": {"type": "array", "items": STRING}, "parent_topic_id": OPTIONAL_STRING,
         "children_topic_ids": {"type": "array", "items": STRING}, "created_at": TIME, "updated_at": TIME}),
    "SearchHitDocument": shape("The document a hit belongs to (EverOS's DocumentContextDTO).",
                               {"doc_id": STRING, "title": STRING, "summary": STRING}),
    "SearchHitFact": shape("everos: a fact of the topic that matches the query.",
                           {"fact_id": STRING, "text": STRING, "score": NUMBER}),
    "SearchHit": shape(
        "One ranked topic (EverOS's SearchHitDTO); content only with include_content; everos adds facts.",
        {"topic_id": STRING, "category_id": STRING, "topic_name": STRING, "topic_path": STRING, "depth": INTEGER,
         "summary": STRING, "content": OPTIONAL_STRING, "score": NUMBER,
         "retrieval_method": {"type": "string", "enum": ["keyword", "vector", "hybrid"]},
         "source": {"type": ["string", "null"], "description": "Which recall found it (keyword or vector), if one."},
         "document": ref("SearchHitDocument"), "facts": {"type": "array", "items": ref("SearchHitFact")}}),
    "SearchResult": shape(
        "POST /search: the hits, best first (EverOS's KnowledgeSearchResponse).",
        {"hits": {"type": "array", "items": ref("SearchHit")}, "total": INTEGER, "took_ms": NUMBER}),
    "Category": shape("One category of the taxonomy (EverOS's CategoryDTO).",
                      {"category_id": STRING, "description": STRING, "document_count": INTEGER}),
    "CategoryList": shape("GET /categories (EverOS's CategoryListResponse).",
                          {"categories": {"type": "array", "items": ref("Category")}}),
    "Task": shape(
        "everos: an ingest task as a client polls it; result is the upload's answer (and the extractor) once "
        "it succeeded; phase says where the document is, through its indexing; model, what its extraction "
        "cost the model (so far, while it runs); request_id, the request that queued it (its attempts' log "
        "lines and model calls carry the same id).",
        {"task_id": STRING, "doc_id": OPTIONAL_STRING, "request_id": OPTIONAL_STRING, "status": {"type": "string", "enum": list(JOB_STATUSES)},
         "phase": {"type": "string", "enum": list(TASK_PHASES)},
         "index_status": {"anyOf": [{"type": "string", "enum": ["pending", "indexed", "failed"]}, {"type": "null"}]},
         "documents_ahead": {"type": ["integer", "null"], "minimum": 0,
                             "description": "While the phase is indexing: the index rows taken before the "
                                            "document's own."},
         "model": {"anyOf": [_MODEL_USAGE, {"type": "null"}]},
         "attempts": INTEGER, "max_attempts": INTEGER, "last_error": OPTIONAL_STRING,
         "result": {"anyOf": [shape("The stored document, as the upload answered it.",
                                    {**_DOCUMENT_CREATED, "extractor": OPTIONAL_STRING, "model": _MODEL_USAGE},
                                    optional=("extractor", "model"), closed=False), {"type": "null"}]},
         "created_at": TIME, "updated_at": TIME, "started_at": OPTIONAL_TIME, "finished_at": OPTIONAL_TIME,
         "status_url": STRING}),
    "TaskPage": shape("everos: GET /tasks, one page of tasks.",
                      {"tasks": {"type": "array", "items": ref("Task")}, "page": INTEGER, "page_size": INTEGER}),
    "ReextractQueued": shape(
        "everos: POST /reextract, the documents queued for extraction again, with their tasks.",
        {"requeued": {"type": "array", "items": shape("One queued document.", {
            "doc_id": STRING, "task_id": STRING, "status_url": STRING})}}),
    "CascadeStatus": shape(
        "everos: the index cascade's state, what everos cascade status prints.",
        {"healthy": {"type": "boolean"}, "reasons": {"type": "array", "items": STRING},
         "depth": {"type": "object", "additionalProperties": INTEGER,
                   "description": "Index rows by queue status."},
         "pending": INTEGER, "dead": INTEGER, "failed": INTEGER,
         "oldest_lease_age_s": {"type": ["number", "null"]}, "lag_s": {"type": ["number", "null"]},
         "last_progress_at": {"type": ["number", "null"], "description": "Unix time."},
         "index_status": {"type": "object", "additionalProperties": INTEGER,
                          "description": "Documents by index status."},
         "recent_failures": {"type": "array", "items": {"type": "object"}},
         "vectors_pending": INTEGER,
         "lagging": {"type": "boolean", "description": "More documents wait for their index than lag_documents: "
                                                       "uploads are still accepted, and answered with "
                                                       "X-Everos-Index-Lag."},
         "waiting_documents": {"type": "integer", "description": "Documents whose index_status is pending."},
         "lag_documents": {"type": "integer", "description": "[cascade] lag_documents (0: never lags)."},
         "notes": {"type": "array", "items": STRING},
         "attempts_finished": INTEGER, "last_scan_at": {"type": ["number", "null"], "description": "Unix time."}},
        optional=("oldest_lease_age_s", "lag_s", "last_progress_at", "recent_failures", "vectors_pending",
                  "notes", "attempts_finished", "last_scan_at"), closed=False),
    "CascadeFixReport": shape(
        "everos: the dead and failed index rows and, with apply, how many were queued again.",
        {"rows": {"type": "array", "items": shape("One index row.", {
            "doc_dir": STRING, "status": {"type": "string", "enum": ["dead", "failed"]}, "attempts": INTEGER,
            "last_error": OPTIONAL_STRING})},
         "requeued": INTEGER}, optional=("requeued",)),
}
