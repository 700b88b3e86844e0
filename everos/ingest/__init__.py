"""Durable ingest: uploads made durable, extracted by leased workers, published as EverOS markdown,
and the document operations (read, PATCH, DELETE, re-extraction, retry) over their SQLite rows.

:class:`IngestService` composes the parts, one module each: ``_accept.py`` (accept and wait),
``_workers.py`` (workers, one attempt, publish, reaper, monitor), ``_documents.py`` (read, PATCH,
DELETE, re-extraction, task retry, lookups), ``_categories.py``, ``_idempotency.py``, over the
shared ``_context.py``; ``_locks.py`` has the per-document locks it shares with the cascade,
``_repository.py`` the SQL of the rows, ``_edit.py`` the PATCH rewrite. The pure core it works
with (ids, layout, markdown, taxonomy, extractors) is :mod:`everos.knowledge`.
"""

from everos._exports import claim_public_names
from everos.ingest._accept import STATUS_REFRESH_S, Upload
from everos.ingest._context import INGEST_TABLE, TERMINAL, IndexFeed, IngestContext, JobWatch, job_id_for
from everos.ingest._locks import LOCK_TIMEOUT_S, DocumentLocks
from everos.ingest._service import IngestService, builtin_extractor
from everos.ingest._workers import PERMANENT_ERRORS

__all__ = [
    "DocumentLocks",
    "INGEST_TABLE",
    "IndexFeed",
    "IngestContext",
    "IngestService",
    "JobWatch",
    "LOCK_TIMEOUT_S",
    "PERMANENT_ERRORS",
    "STATUS_REFRESH_S",
    "TERMINAL",
    "Upload",
    "builtin_extractor",
    "job_id_for",
]

claim_public_names(globals())
