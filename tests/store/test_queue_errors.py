"""A failed attempt's error in the leased queue: stored as code + message, shown as one text.

The queue keeps the EverOS code (``error_code``) apart from the message (``last_error``), so a
reader rebuilds the error from its code; ``Job.last_error`` is the one ``"CODE: message"`` form
every display shows. Rows written before the code had its own column are split once by the
queue's migration, and still read (unsplit) where nothing migrates them (``everos doctor``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio

from everos.errors import ExternalServiceUnavailable, InvalidInput, error_from_code
from everos.store import JobError, JobStatus, LeasedQueue, MigrationSet, open_database
from everos.store._lease import MAX_ERROR_CHARS

from .conftest import sqlite_settings
from .test_queue import FakeClock

TABLE = "jobs"


def stored_error(path: Path, job_id: str) -> tuple[str | None, str | None]:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT error_code, last_error FROM {TABLE} WHERE id = ?", (job_id,)).fetchone()


async def failed_once(path: Path, error: object) -> str:
    """A row of a fresh queue at ``path`` whose only attempt failed with ``error``; its id."""
    async with open_database(path, sqlite_settings(), trio.CapacityLimiter(2),
                             migrations=[LeasedQueue.migration(TABLE)]) as db:
        queue = LeasedQueue(db, TABLE, max_attempts=1, clock=FakeClock())
        job = await queue.enqueue("extract", {"n": 1})
        await queue.lease("w1", 1, 60)
        assert await queue.fail(job.id, "w1", error, 0) is True
        return job.id


# -- storing ------------------------------------------------------------------------------------


async def test_an_everos_error_is_stored_as_its_code_and_message(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    job_id = await failed_once(path, ExternalServiceUnavailable("the model is down"))
    assert stored_error(path, job_id) == ("EXTERNAL_SERVICE_UNAVAILABLE", "the model is down")


@pytest.mark.parametrize(("error", "shown"), [
    (ValueError("bad answer"), "ValueError: bad answer"),
    ("llm answered 500", "llm answered 500"),
    (JobError("STORE_BUSY", "disk stalled"), "STORE_BUSY: disk stalled"),
])
async def test_other_errors_are_stored_with_or_without_a_code(tmp_path: Path, error: object, shown: str) -> None:
    path = tmp_path / "q.db"
    job_id = await failed_once(path, error)
    code, message = stored_error(path, job_id)
    assert (code is None) == (not isinstance(error, JobError))
    assert str(JobError(code, message)) == shown


async def test_the_shown_error_is_cut_to_the_limit_with_its_code_kept(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    job_id = await failed_once(path, InvalidInput("x" * 100_000))
    code, message = stored_error(path, job_id)
    shown = str(JobError(code, message))
    assert code == "INVALID_INPUT" and len(shown) == MAX_ERROR_CHARS
    assert shown == ("INVALID_INPUT: " + "x" * 100_000)[: MAX_ERROR_CHARS - 1] + "…"


async def test_a_lost_lease_is_stored_without_a_code(tmp_path: Path) -> None:
    clock = FakeClock()
    async with open_database(tmp_path / "q.db", sqlite_settings(), trio.CapacityLimiter(2),
                             migrations=[LeasedQueue.migration(TABLE)]) as db:
        queue = LeasedQueue(db, TABLE, max_attempts=1, clock=clock)
        job = await queue.enqueue("extract", {})
        await queue.lease("w1:boot", 1, 10)
        clock.advance(11)
        assert await queue.reap_expired() == 1
        dead = await queue.get(job.id)
    assert dead is not None and dead.status is JobStatus.DEAD
    assert dead.error == JobError(None, "lease of w1:boot expired before the attempt ended")
    assert dead.last_error == "lease of w1:boot expired before the attempt ended"


async def test_reviving_a_failed_row_clears_its_code_and_message(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    async with open_database(path, sqlite_settings(), trio.CapacityLimiter(2),
                             migrations=[LeasedQueue.migration(TABLE)]) as db:
        queue = LeasedQueue(db, TABLE, max_attempts=1, clock=FakeClock())
        failed = await queue.enqueue("extract", {}, key="a")
        requeued = await queue.enqueue("extract", {}, key="b")
        for _ in range(2):
            job = (await queue.lease("w1", 1, 60))[0]
            await queue.fail(job.id, "w1", ExternalServiceUnavailable("down"), 0, retryable=False)
        await queue.enqueue("extract", {}, key="a")
        assert await queue.requeue([requeued.id]) == 1
    assert stored_error(path, failed.id) == stored_error(path, requeued.id) == (None, None)


# -- old rows -----------------------------------------------------------------------------------

OLD_ROWS = {
    # id: the last_error an everos before the error_code column wrote, and what step 2 makes of it
    "ingest": ("EXTERNAL_SERVICE_UNAVAILABLE: llm endpoint http://x: HTTP 500 (3 attempts)",
               "EXTERNAL_SERVICE_UNAVAILABLE", "llm endpoint http://x: HTTP 500 (3 attempts)"),
    "multiline": ("INVALID_INPUT: line one\nline two", "INVALID_INPUT", "line one\nline two"),
    "bug": ("INTERNAL_ERROR: RuntimeError: boom", "INTERNAL_ERROR", "RuntimeError: boom"),
    "lease": ("lease of ingest-1:ab12 expired before the attempt ended", None,
              "lease of ingest-1:ab12 expired before the attempt ended"),
    "cascade": ("ValueError: bad frontmatter", None, "ValueError: bad frontmatter"),
}


async def old_database(path: Path) -> None:
    """A queue table as the first schema step left it, holding :data:`OLD_ROWS` (dead)."""
    first_step = MigrationSet(f"queue.{TABLE}", LeasedQueue.migration(TABLE).steps[:1])
    async with open_database(path, sqlite_settings(), trio.CapacityLimiter(2), migrations=[first_step]):
        pass
    with sqlite3.connect(path) as conn:
        conn.executemany(
            f"INSERT INTO {TABLE} (id, kind, payload, status, attempts, max_attempts, available_at, last_error,"
            " created_at, updated_at, finished_at) VALUES (?, 'ingest', '{}', 'dead', 1, 1, 0, ?, 0, 0, 0)",
            [(row_id, text) for row_id, (text, _, _) in OLD_ROWS.items()])


async def test_the_migration_splits_old_coded_rows_once_and_keeps_what_they_show(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    await old_database(path)
    async with open_database(path, sqlite_settings(), trio.CapacityLimiter(2),
                             migrations=[LeasedQueue.migration(TABLE)]) as db:
        queue = LeasedQueue(db, TABLE, max_attempts=1)
        jobs = {job.id: job for job in await queue.list(JobStatus.DEAD)}
    for row_id, (text, code, message) in OLD_ROWS.items():
        assert stored_error(path, row_id) == (code, message)
        assert jobs[row_id].error == JobError(code, message)
        assert jobs[row_id].last_error == text  # every display shows what it showed before
    # Opened again, the step does not run twice: a message that itself starts with a code stays.
    async with open_database(path, sqlite_settings(), trio.CapacityLimiter(2),
                             migrations=[LeasedQueue.migration(TABLE)]):
        pass
    assert stored_error(path, "ingest")[1] == "llm endpoint http://x: HTTP 500 (3 attempts)"
    assert stored_error(path, "bug") == ("INTERNAL_ERROR", "RuntimeError: boom")


async def test_a_migrated_old_row_rebuilds_the_error_its_code_names(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    await old_database(path)
    async with open_database(path, sqlite_settings(), trio.CapacityLimiter(2),
                             migrations=[LeasedQueue.migration(TABLE)]) as db:
        job = await LeasedQueue(db, TABLE, max_attempts=1).get("ingest")
    assert job is not None and job.error is not None
    rebuilt = error_from_code(job.error.code, job.error.message)
    assert isinstance(rebuilt, ExternalServiceUnavailable) and rebuilt.status == 503
    assert rebuilt.message == "llm endpoint http://x: HTTP 500 (3 attempts)"


async def test_an_unmigrated_table_still_reads_with_its_whole_text(tmp_path: Path) -> None:
    """``everos doctor`` reads the index without migrating it."""
    path = tmp_path / "q.db"
    await old_database(path)
    async with open_database(path, sqlite_settings(), trio.CapacityLimiter(2), migrations=[]) as db:
        jobs = {job.id: job for job in await LeasedQueue(db, TABLE, max_attempts=1).list(JobStatus.DEAD)}
    assert {row_id: job.last_error for row_id, job in jobs.items()} == {
        row_id: text for row_id, (text, _, _) in OLD_ROWS.items()}
    assert all(job.error is not None and job.error.code is None for job in jobs.values())
