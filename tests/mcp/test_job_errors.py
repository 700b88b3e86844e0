"""A failed ingest job's error through HTTP and MCP: stored as code + message, rebuilt from them.

The worker stores the error's EverOS code and message in the job's row; the upload answer (HTTP
status and envelope, MCP tool error) is rebuilt from those columns with ``error_from_code``, and
the task answers show them as ``"CODE: message"``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio
from mcp import Client

from everos import errors
from everos.store import LeasedQueue, MigrationSet, open_database

from ..store.conftest import sqlite_settings
from .conftest import call, mcp_server

API = "/api/v1/knowledge"
DATABASE = Path(".index") / "sqlite" / "everos.db"


class RaisingExtractor:
    """Fails every extraction with ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def extract(self, source, categories):
        await trio.lowlevel.checkpoint()
        raise self.error


def stored_error(root: Path, task_id: str) -> tuple[str | None, str | None]:
    with sqlite3.connect(root / DATABASE) as conn:
        return conn.execute("SELECT error_code, last_error FROM ingest_jobs WHERE id = ?", (task_id,)).fetchone()


FAILURES = [
    # raised by the extractor -> HTTP status, code and message of the answer
    (errors.ExtractionEmpty("the extractor found no topics"), 422, "EXTRACTION_EMPTY", "the extractor found no topics"),
    (errors.ExternalServiceUnavailable("the model is down"), 503, "EXTERNAL_SERVICE_UNAVAILABLE", "the model is down"),
    (errors.PathTraversal("a name escapes the root"), 400, "BAD_REQUEST", "a name escapes the root"),
    (errors.NotFound("the document was deleted"), 404, "NOT_FOUND", "the document was deleted"),
    (errors.StoreBusy("extraction did not finish within 1 s"), 503, "STORE_BUSY",
     "extraction did not finish within 1 s"),
    (RuntimeError("boom"), 500, "INTERNAL_ERROR", "RuntimeError: boom"),
]


@pytest.mark.parametrize(("raised", "status", "code", "message"), FAILURES, ids=[f[2] for f in FAILURES])
async def test_a_failed_upload_answers_the_code_stored_in_its_row(
    root: Path, raised: Exception, status: int, code: str, message: str
) -> None:
    async with mcp_server(root, extractor=RaisingExtractor(raised), ingest__max_attempts=1) as server, \
            Client(server.mcp.server) as client:
        http = server.http.client
        response = await http.post(f"{API}/documents", data={"title": "A"},
                                   files={"file": ("a.md", b"# A\n\nSome text.\n", "text/markdown")})
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert (error["code"], error["message"]) == (code, message)
        assert stored_error(root, error["task_id"]) == (code, message)
        task = (await http.get(f"{API}/tasks/{error['task_id']}")).json()["data"]
        assert task["last_error"] == f"{code}: {message}"

        body, text, is_error = await call(client, "knowledge_add_document", title="B", content="# B\n\nOther text.\n")
        assert is_error and body["error"]["code"] == code and body["error"]["message"] == message
        task_id = body["error"]["task_id"]
        assert text == f"{code}: {message} (task_id: {task_id})"
        assert stored_error(root, task_id) == (code, message)
        polled, _, is_error = await call(client, "knowledge_task_status", task_id=task_id)
        assert not is_error and polled["last_error"] == f"{code}: {message}"


async def test_a_task_that_failed_before_the_code_column_shows_its_old_text(root: Path) -> None:
    """A row an older everos wrote (``last_error`` holding ``"CODE: message"``) is split when the
    server opens the database, and the task answers show the same text as before."""
    first_step = MigrationSet("queue.ingest_jobs", LeasedQueue.migration("ingest_jobs").steps[:1])
    (root / DATABASE).parent.mkdir(parents=True)
    async with open_database(root / DATABASE, sqlite_settings(), trio.CapacityLimiter(1), migrations=[first_step]):
        pass
    task_id, text = "t_0123456789ab", "EXTERNAL_SERVICE_UNAVAILABLE: the model is down"
    with sqlite3.connect(root / DATABASE) as conn:
        conn.execute("INSERT INTO ingest_jobs (id, kind, key, payload, status, attempts, max_attempts, available_at,"
                     " last_error, created_at, updated_at, finished_at) VALUES (?, 'ingest', 'd_0123456789ab',"
                     " '{\"doc_id\": \"d_0123456789ab\"}', 'dead', 3, 3, 0, ?, 0, 0, 0)", (task_id, text))
    async with mcp_server(root) as server, Client(server.mcp.server) as client:
        assert stored_error(root, task_id) == ("EXTERNAL_SERVICE_UNAVAILABLE", "the model is down")
        task = (await server.http.client.get(f"{API}/tasks/{task_id}")).json()["data"]
        assert (task["status"], task["last_error"]) == ("dead", text)
        polled, rendered, is_error = await call(client, "knowledge_task_status", task_id=task_id)
        assert not is_error and polled["last_error"] == text and text in rendered
