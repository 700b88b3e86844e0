"""The pure core of the leased queue: job records and what happens to a row when an attempt ends.

No I/O and no clock here: every function takes ``now`` (seconds since the epoch, from the queue's
injected clock) and returns plain values, so the lease arithmetic is tested directly (G7, G8).

Attempts are counted when a row is leased. An attempt then ends in one of four ways: the worker
completes it, the worker fails it (retryable or not), its lease expires (the reaper), or the
process that held it is gone (startup recovery). A row marked ``rerun`` (enqueued again while it
was running) always goes back to the queue with a fresh attempt budget, whatever the outcome,
because what it describes changed during the attempt.

A failed attempt leaves a :class:`JobError`: the EverOS code and the message, kept apart so a
reader rebuilds the error from its code (:func:`everos.errors.error_from_code`) instead of parsing
text; ``str(error)`` is the one ``"CODE: message"`` form every display shows.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from everos.errors import EverosError

__all__ = [
    "COLUMNS",
    "MAX_ERROR_CHARS",
    "EnqueueAction",
    "Job",
    "JobError",
    "JobStatus",
    "QueueStats",
    "Settlement",
    "decode_json",
    "encode_json",
    "enqueue_action",
    "error_text",
    "job_from_row",
    "settle_attempt",
]

# An error is shown in the API and the CLI; a whole traceback or response body is not.
MAX_ERROR_CHARS = 2000


class JobStatus(enum.StrEnum):
    """Where a row is. ``succeeded``, ``failed`` (not retryable) and ``dead`` (out of attempts)
    are terminal until the row is enqueued or requeued again."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"


@dataclass(frozen=True)
class JobError:
    """Why a row's last attempt failed: its EverOS ``code`` and its ``message``.

    ``code`` is None for a failure outside the error hierarchy: an exception that is not an
    :class:`~everos.errors.EverosError`, a plain message, and the queue's own settlements of a lost
    lease. Build one with :meth:`of`, which keeps the shown form within :data:`MAX_ERROR_CHARS`.
    """

    code: str | None
    message: str

    def __str__(self) -> str:
        """``"CODE: message"`` (the message alone without a code): the ``last_error`` every task
        body, CLI listing and doctor line shows."""
        return self.message if self.code is None else f"{self.code}: {self.message}"

    @classmethod
    def of(cls, error: JobError | BaseException | str) -> JobError:
        """An ``EverosError``'s code and message; ``"Type: text"`` without a code for another
        exception; a message without a code for a ``str``. The message is cut so that the shown
        form is at most :data:`MAX_ERROR_CHARS` long, ending with ``…`` when cut. Pure."""
        if isinstance(error, JobError):
            code, message = error.code, error.message
        elif isinstance(error, EverosError):
            code, message = error.code, error.message
        elif isinstance(error, BaseException):
            code, message = None, f"{type(error).__name__}: {error}"
        else:
            code, message = None, error
        shown = len(message) if code is None else len(code) + 2 + len(message)
        if shown > MAX_ERROR_CHARS:
            message = message[: max(0, len(message) - (shown - MAX_ERROR_CHARS) - 1)] + "…"
        return cls(code, message)


@dataclass(frozen=True)
class Job:
    """One queue row as read. Times are seconds since the epoch (the queue's clock); ``payload``
    and ``result`` are decoded JSON. ``lease_owner`` is set only while ``running``. ``error`` is
    the last failed attempt's (None once the row is revived or requeued, and before any failure)."""

    id: str
    kind: str
    key: str | None
    payload: Any
    status: JobStatus
    attempts: int
    max_attempts: int
    rerun: bool
    lease_owner: str | None
    lease_expires_at: float | None
    available_at: float
    error: JobError | None
    result: Any
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None

    @property
    def last_error(self) -> str | None:
        """The error as shown (``"CODE: message"``, see :class:`JobError`), or None."""
        return None if self.error is None else str(self.error)


@dataclass(frozen=True)
class QueueStats:
    """A snapshot of one queue for /health, /metrics and the CLI.

    ``counts`` has every status (zero included). Ages are in seconds, None when no row qualifies:
    ``oldest_lease_age_seconds`` over running rows (since their attempt started),
    ``oldest_queued_age_seconds`` over queued rows that are available now (since they became
    available). ``last_progress_at`` is when a worker last completed or failed an attempt.
    """

    counts: dict[JobStatus, int]
    oldest_lease_age_seconds: float | None
    oldest_queued_age_seconds: float | None
    last_progress_at: float | None

    @property
    def pending(self) -> int:
        """Rows not yet finished: queued plus running."""
        return self.counts[JobStatus.QUEUED] + self.counts[JobStatus.RUNNING]


@dataclass(frozen=True)
class Settlement:
    """The row's next state after an attempt ended."""

    status: JobStatus
    attempts: int
    available_at: float


def settle_attempt(
    *,
    succeeded: bool,
    retryable: bool,
    attempts: int,
    max_attempts: int,
    rerun: bool,
    now: float,
    retry_after_seconds: float,
) -> Settlement:
    """Decide where a row goes when its attempt ends.

    * ``rerun`` set: back to ``queued`` now, attempts reset to 0 (it changed while running).
    * succeeded: ``succeeded``.
    * not retryable: ``failed``.
    * ``attempts`` (already counting this one) reached ``max_attempts``: ``dead``.
    * otherwise: ``queued``, available after ``retry_after_seconds``.
    """
    if rerun:
        return Settlement(JobStatus.QUEUED, 0, now)
    if succeeded:
        return Settlement(JobStatus.SUCCEEDED, attempts, now)
    if not retryable:
        return Settlement(JobStatus.FAILED, attempts, now)
    if attempts >= max_attempts:
        return Settlement(JobStatus.DEAD, attempts, now)
    return Settlement(JobStatus.QUEUED, attempts, now + max(0.0, retry_after_seconds))


class EnqueueAction(enum.Enum):
    """What :meth:`LeasedQueue.enqueue` does, given the row already holding the dedupe key."""

    INSERT = "insert"  # no such row: add one
    UPDATE = "update"  # queued: take the new payload, keep its place and its attempts
    RERUN = "rerun"  # running: leave the lease alone, run it again once the attempt ends
    REVIVE = "revive"  # finished (succeeded, failed, dead): queue it again with fresh attempts


def enqueue_action(existing: JobStatus | None) -> EnqueueAction:
    """The :class:`EnqueueAction` for a key whose row has status ``existing`` (None: no row)."""
    if existing is None:
        return EnqueueAction.INSERT
    if existing is JobStatus.QUEUED:
        return EnqueueAction.UPDATE
    if existing is JobStatus.RUNNING:
        return EnqueueAction.RERUN
    return EnqueueAction.REVIVE


# What the queue reads of a row: every column. A table not yet migrated to its error_code column
# (``everos doctor`` reads without migrating) still reads, its last_error being the whole text.
COLUMNS = "*"


def job_from_row(row: Mapping[str, Any]) -> Job:
    """A :class:`Job` from a row of the queue table (a :class:`sqlite3.Row` or a dict).

    The error is ``(error_code, last_error)``: the code, and the message in the column that held
    the whole ``"CODE: message"`` text before the code had its own (see the queue's migration).
    """
    code = row["error_code"] if "error_code" in row.keys() else None
    return Job(
        id=row["id"], kind=row["kind"], key=row["key"], payload=decode_json(row["payload"]),
        status=JobStatus(row["status"]), attempts=row["attempts"], max_attempts=row["max_attempts"],
        rerun=bool(row["rerun"]), lease_owner=row["lease_owner"], lease_expires_at=row["lease_expires_at"],
        available_at=row["available_at"],
        error=None if row["last_error"] is None else JobError(code, row["last_error"]),
        result=decode_json(row["result"]), created_at=row["created_at"], updated_at=row["updated_at"],
        started_at=row["started_at"], finished_at=row["finished_at"],
    )


def error_text(error: BaseException | str) -> str:
    """An error as shown, for an exception or a message, cut to :data:`MAX_ERROR_CHARS`: the
    ``str`` of its :class:`JobError`."""
    return str(JobError.of(error))


def encode_json(value: Any) -> str:
    """Compact, stable JSON for the payload and result columns."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def decode_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)
