"""The answer shapes of the knowledge API, shared by every surface that answers with them.

The HTTP routes (``web/_knowledge.py``) and the MCP tools (``everos.mcp``) answer with the same
bodies, field for field (EverOS 1.x, reference §2.3, plus everos's task body). Each function is
pure: plain rows in, a JSON-able dict out; times are shown in ``[memory] timezone``.
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from pathlib import Path
from typing import Any

from everos.errors import EverosError, ServiceUnavailable, error_from_code
from everos.store import Job, JobError, JobStatus

__all__ = [
    "INDEX_LAG_HEADER",
    "created_body",
    "display_time",
    "document_body",
    "document_list_item",
    "index_lag_header",
    "job_failure",
    "parse_index_lag",
    "task_body",
    "topic_body",
    "upload_body",
]

# A document row (``everos.ingest._repository.DocumentRow``), known here by the fields the answers
# read: the answers sit below ingest in the layers (tests/test_layers.py), so they do not import it.
DocumentRow = Any


def display_time(epoch: float | None, timezone: str) -> str | None:
    """``epoch`` as ISO 8601 with milliseconds in ``timezone``; None stays None."""
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, zoneinfo.ZoneInfo(timezone)).isoformat(timespec="milliseconds")


# On an upload's answer while the index lags ([cascade] lag_documents): a header, so EverOS's
# answer bodies keep their fields, and a client that does not know it sees EverOS's answer.
INDEX_LAG_HEADER = "X-Everos-Index-Lag"


def index_lag_header(waiting_documents: int, lag_documents: int) -> str:
    """The :data:`INDEX_LAG_HEADER` value: a structured-field dictionary (RFC 8941) of the
    documents waiting for their index and the bound they passed, ``documents=412, bound=300``."""
    return f"documents={waiting_documents}, bound={lag_documents}"


def parse_index_lag(value: str | None) -> dict[str, int] | None:
    """``{"documents": …, "bound": …}`` from an :data:`INDEX_LAG_HEADER` value (members that are
    not whole numbers left out); None without the header: the index does not lag."""
    if value is None:
        return None
    members = (member.partition("=") for member in value.split(","))
    return {name.strip(): int(number) for name, _, number in members
            if name.strip() in ("documents", "bound") and number.strip().isdigit()}


def task_body(job: Job, timezone: str, prefix: str, progress: dict[str, Any] | None = None) -> dict[str, Any]:
    """``GET {prefix}/tasks/{task_id}``: the ingest job as a client polls it. ``progress`` (from
    ``IngestService.task_progress``) gives ``phase`` (``queued``, ``reading``, ``converting``,
    ``extracting``, ``publishing``, ``indexing``, ``done``, ``failed``), ``index_status``,
    ``documents_ahead`` (while ``indexing``: the index rows taken before the document's own) and
    ``model`` (the calls and tokens the extraction cost, so far while it runs); without it the
    phase follows the job's status alone. ``request_id`` is the request that queued the job."""
    progress = progress or {}
    return {
        "task_id": job.id,
        "doc_id": (job.payload or {}).get("doc_id"),
        "request_id": (job.payload or {}).get("request_id"),
        "status": str(job.status),
        "phase": progress.get("phase", _PHASE_OF_STATUS[job.status]),
        "index_status": progress.get("index_status"),
        "documents_ahead": progress.get("documents_ahead"),
        "model": progress.get("model", (job.result or {}).get("model")),
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "last_error": job.last_error,
        "result": job.result if job.status is JobStatus.SUCCEEDED else None,
        "created_at": display_time(job.created_at, timezone),
        "updated_at": display_time(job.updated_at, timezone),
        "started_at": display_time(job.started_at, timezone),
        "finished_at": display_time(job.finished_at, timezone),
        "status_url": f"{prefix}/tasks/{job.id}",
    }


_PHASE_OF_STATUS = {JobStatus.QUEUED: "queued", JobStatus.RUNNING: "reading", JobStatus.SUCCEEDED: "indexing",
                    JobStatus.FAILED: "failed", JobStatus.DEAD: "failed"}
# What a job's result holds beyond EverOS's upload fields: shown in the task, not the upload answer.
_TASK_ONLY_RESULT = ("extractor", "model")


def upload_body(result: dict[str, Any]) -> dict[str, Any]:
    """The 201/200 body of an upload, PUT or re-extraction from its job's result: EverOS's fields.
    The job result's ``extractor`` and ``model`` stay in the task (``GET /tasks/{id}``)."""
    return {name: value for name, value in result.items() if name not in _TASK_ONLY_RESULT}


def job_failure(job: Job) -> EverosError:
    """The error a job that ended without success failed with, rebuilt from its stored code and
    message, so its ``status`` is the error hierarchy's. An error stored without a code (the
    last attempt was lost: its lease expired or its process stopped) answers 503, as before:
    trying again later may well succeed."""
    error = job.error or JobError("INTERNAL_ERROR", "failed")
    if error.code is None:
        return ServiceUnavailable(error.message)
    return error_from_code(error.code, error.message)


def created_body(doc: DocumentRow, root: Path) -> dict[str, Any]:
    """The 201 body of an upload, for a document that is already stored (a content duplicate)."""
    return {
        "doc_id": doc.doc_id, "category_id": doc.category_id, "topic_count": doc.topic_count,
        "source_name": doc.source_name, "md_path": str((root / doc.md_path).parent),
        "original_file_path": str(root / doc.original_path) if doc.original_path else None,
    }


def document_body(doc: DocumentRow, topics: list, root: Path, timezone: str) -> dict[str, Any]:
    """``GET /documents/{doc_id}``: the document and its topics (without their content), and
    which extractor made them (``extractor``; None when ingest did not write the document)."""
    return {
        "doc_id": doc.doc_id, "category_id": doc.category_id, "title": doc.title, "summary": doc.summary,
        "source_name": doc.source_name, "source_type": doc.source_type,
        "original_file_path": str(root / doc.original_path) if doc.original_path else None,
        "md_path": str((root / doc.md_path).parent),
        "app_id": doc.app_id, "project_id": doc.project_id, "extractor": doc.extractor,
        "topics": [{"topic_id": t["node_id"], "topic_name": t["topic_name"], "topic_path": t["topic_path"],
                    "depth": t["depth"], "summary": t["summary"]} for t in topics if t["topic_index"]],
        "created_at": display_time(doc.created_at, timezone), "updated_at": display_time(doc.updated_at, timezone),
    }


def document_list_item(doc: DocumentRow, timezone: str) -> dict[str, Any]:
    """One entry of ``GET /documents``."""
    return {"doc_id": doc.doc_id, "category_id": doc.category_id, "title": doc.title,
            "topic_count": doc.topic_count, "created_at": display_time(doc.created_at, timezone),
            "updated_at": display_time(doc.updated_at, timezone)}


def topic_body(row: Any, timezone: str) -> dict[str, Any]:
    """``GET /topics/{topic_id}``: one topic with its content."""
    return {
        "topic_id": row["node_id"], "doc_id": row["doc_id"], "category_id": row["category_id"],
        "topic_name": row["topic_name"], "topic_path": row["topic_path"], "depth": row["depth"],
        "summary": row["summary"], "content": row["content"], "content_labels": json.loads(row["content_labels"]),
        "parent_topic_id": row["parent_node_id"], "children_topic_ids": json.loads(row["children_node_ids"]),
        "created_at": display_time(row["created_at"], timezone),
        "updated_at": display_time(row["updated_at"], timezone),
    }
