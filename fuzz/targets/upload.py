"""Target: the multipart upload path, from the request's bytes to the acceptance point (G10).

One input is a raw ``POST /api/v1/knowledge/documents`` request: its body, its ``Content-Type``
and its query string. It is sent through the real Quart-Trio app (``web/_app.py`` ``create_app``
with ``web/_knowledge.py``'s blueprints, Quart's test client, no socket): Quart's multipart parser
(werkzeug's sans-IO decoder), the route's ``read_upload`` (file part, size check, ``UploadForm``)
and the real ``Intake.accept`` (``detect_format``, the decode and empty checks, the category check).
What ``accept`` would touch next is a recording stub: the inbox write, the SQLite reads and the job
row. So the check can say what G10 promises: a refusal is a documented 4xx in the EverOS envelope,
given before the inbox write or the job row; an acceptance wrote exactly the validated upload.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio

from everos.config import Config
from everos.errors import InvalidInput
from everos.ingest._accept import Intake
from everos.ingest._context import IngestContext, JobWatch
from everos.knowledge import DEFAULT_CATEGORIES, decode_upload, detect_format, safe_filename
from everos.knowledge._models import validate_app_id, validate_project_id
from everos.runtime import Limiters
from everos.store import Job, JobStatus
from everos.web import create_app
from everos.web._knowledge import knowledge_blueprints

__all__ = ["MAX_UPLOAD_BYTES", "UPLOAD_PATH", "UploadRequest", "check_upload", "check_upload_bytes",
           "upload_request_from_bytes"]

UPLOAD_PATH = "/api/v1/knowledge/documents"
MAX_UPLOAD_BYTES = 4096
"""The upload cap of the target's server, small so that fuzzed files reach the 413 path."""
# What a refusal of an upload may answer (errors.py): 400 BAD_REQUEST (a NUL in the file name),
# 413 PAYLOAD_TOO_LARGE, 415 UNSUPPORTED_FORMAT, 422 (INVALID_INPUT, EXTRACTION_EMPTY,
# CONVERSION_FAILED). 202: accepted (the request asks for Prefer: respond-async).
REFUSALS = {400: {"BAD_REQUEST"}, 413: {"PAYLOAD_TOO_LARGE"}, 415: {"UNSUPPORTED_FORMAT"},
            422: {"INVALID_INPUT", "EXTRACTION_EMPTY", "CONVERSION_FAILED"}}
_DOC_ROOT = Path("/nonexistent/everos-fuzz-root")  # never touched: every file call is recorded, not run


@dataclasses.dataclass(frozen=True)
class UploadRequest:
    """One upload request as the client sends it."""

    body: bytes
    content_type: str
    query: Mapping[str, str] = dataclasses.field(default_factory=dict)


def upload_request_from_bytes(data: bytes) -> UploadRequest:
    """A request from fuzzer bytes: the body as it is; its first line (after ``--``) names the
    boundary, so a mutated corpus body keeps a boundary that matches it, or breaks it."""
    first = data.split(b"\r\n", 1)[0].split(b"\n", 1)[0]
    boundary = first[2:] if first.startswith(b"--") else b"fuzz"
    # A header value holds no control characters: an HTTP server never hands one to the app.
    header_safe = bytes(b for b in boundary if 0x20 <= b < 0x7F)
    return UploadRequest(data, "multipart/form-data; boundary=" + header_safe.decode("ascii"))


_CONFIG = Config()
_CONFIG = dataclasses.replace(_CONFIG, knowledge=dataclasses.replace(_CONFIG.knowledge,
                                                                      max_upload_bytes=MAX_UPLOAD_BYTES))


class _Recorder:
    """The store as ``Intake.accept`` sees it, recording instead of writing."""

    def __init__(self) -> None:
        self.file_calls: list[tuple[Any, tuple[Any, ...]]] = []
        self.jobs: list[dict[str, Any]] = []

    # LeasedQueue
    async def enqueue(self, kind: str, payload: Any, *, key: str, job_id: str, max_pending: int,
                      durable: bool = False) -> Job:
        self.jobs.append(payload)
        now = time.time()
        return Job(id=job_id, kind=kind, key=key, payload=payload, status=JobStatus.QUEUED, attempts=0,
                   max_attempts=3, rerun=False, lease_owner=None, lease_expires_at=None, available_at=now,
                   error=None, result=None, created_at=now, updated_at=now, started_at=None, finished_at=None)

    # Database
    async def read(self, fn: Any, *args: Any) -> None:
        return None  # no duplicate content, no document to replace


class _DryContext(IngestContext):
    """The real context but for its file calls, which go to the recorder."""

    async def files(self, fn: Any, *args: Any) -> Any:
        self.queue.file_calls.append((fn, args))  # type: ignore[attr-defined]  # the recorder


class _Categories:
    """The default taxonomy's check, without its file (``Categories.check``'s contract)."""

    async def check(self, category_id: str | None, app_id: str, project_id: str) -> str | None:
        known = {c.id for c in DEFAULT_CATEGORIES}
        if category_id is not None and category_id not in known:
            raise InvalidInput(f"unknown category_id {category_id!r}", field="category_id")
        return category_id


class _Service:
    """What the knowledge routes use of :class:`~everos.ingest.IngestService` for an upload; each
    request gets a fresh context and recorder (:meth:`reset`), the app is built once."""

    config = _CONFIG
    root = _DOC_ROOT

    def reset(self) -> _Recorder:
        recorder = _Recorder()
        self.limiters = Limiters(*(trio.CapacityLimiter(2) for _ in range(4)))
        ctx = _DryContext(config=self.config, root=self.root, limiters=self.limiters,
                          db=recorder, queue=recorder, jobs=JobWatch(), clock=time.time)  # type: ignore[arg-type]
        self._intake = Intake(ctx, _Categories())  # type: ignore[arg-type]
        return recorder

    async def accept(self, upload: Any, *, replace_doc_id: str | None = None) -> Any:
        return await self._intake.accept(upload, replace_doc_id=replace_doc_id)

    async def idempotent_answer(self, *args: Any) -> None:
        return None

    async def remember_answer(self, *args: Any) -> None:
        return None

    def index_lag(self) -> None:
        return None  # no cascade: the index never lags


_SERVICE = _Service()
_APP = create_app(max_upload_bytes=MAX_UPLOAD_BYTES,
                  blueprints=knowledge_blueprints(_SERVICE))  # type: ignore[arg-type]  # its upload part


def check_upload(request: UploadRequest) -> int:
    """Send one upload request and check G10 on its answer; returns the status.

    Accepted (202): one inbox write of exactly the file's bytes, one job row whose fields are the
    validated form (a safe file name, a stripped title, valid scope ids, a known category, text
    that decodes). Refused: a status and code of :data:`REFUSALS` in the EverOS error envelope,
    no file call and no job row. Anything else (a 500, an envelope without its code) fails.
    """
    recorder = _SERVICE.reset()

    async def send() -> tuple[int, bytes]:
        response = await _APP.test_client().post(
            UPLOAD_PATH, data=request.body, query_string=dict(request.query),
            headers={"Content-Type": request.content_type, "Prefer": "respond-async"})
        return response.status_code, await response.get_data()

    status, raw = trio.run(send)
    body = json.loads(raw)
    if status == 202:
        assert len(recorder.jobs) == 1 and len(recorder.file_calls) == 1, (recorder.jobs, recorder.file_calls)
        payload = recorder.jobs[0]
        (_, (inbox_path, data)) = recorder.file_calls[0]
        assert inbox_path.name == payload["inbox"] and len(data) <= MAX_UPLOAD_BYTES
        assert hashlib.sha256(data).hexdigest() == payload["sha256"]
        assert body["data"]["doc_id"] == payload["doc_id"]
        _check_accepted(payload, data)
        return status
    assert status in REFUSALS, (status, body)
    assert body["error"]["code"] in REFUSALS[status], (status, body)
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert not recorder.file_calls and not recorder.jobs, "a refused upload reached the store"
    return status


def _check_accepted(payload: Mapping[str, Any], data: bytes) -> None:
    title = payload["title"]
    assert title == title.strip() and 0 < len(title) <= 500 and "\x00" not in title
    assert safe_filename(payload["filename"]) == payload["filename"]
    validate_app_id(payload["app_id"])
    validate_project_id(payload["project_id"])
    assert payload["category_id"] in {None, *(c.id for c in DEFAULT_CATEGORIES)}
    for text in (title, payload["filename"], payload["source_type"] or ""):
        text.encode("utf-8")  # storable: no lone surrogate reaches a file or a row
    assert payload["format"] == detect_format(data, payload["filename"]) in ("text", "markdown")
    assert decode_upload(data, payload["filename"], None).strip()


def check_upload_bytes(data: bytes) -> None:
    """:func:`check_upload` of the request :func:`upload_request_from_bytes` makes of ``data``."""
    check_upload(upload_request_from_bytes(data))
