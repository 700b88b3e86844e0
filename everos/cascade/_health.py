"""The cascade block of /health and of ``everos cascade status``. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from everos.api._answers import INDEX_LAG_HEADER
from everos.store import JobStatus, QueueStats

__all__ = ["cascade_health", "index_lags", "stall_after_seconds"]


def stall_after_seconds(row_timeout_seconds: float, lease_seconds: float) -> float:
    """How long rows may wait with no attempt finishing before the cascade is called stalled:
    twice the longest an attempt can hold a row (its deadline, or its lease if longer), and at
    least a minute."""
    return max(60.0, 2 * max(row_timeout_seconds, lease_seconds))


def index_lags(waiting_documents: int, lag_documents: int) -> bool:
    """Whether the index lags: more documents wait for their index than ``lag_documents``
    (``[cascade] lag_documents``; 0 never lags)."""
    return 0 < lag_documents < waiting_documents


def cascade_health(
    stats: QueueStats, index_counts: Mapping[str, int], *, now: float, stall_after_s: float,
    recent_failures: Sequence[Mapping[str, Any]] = (), vectors_pending: int = 0, lag_documents: int = 0,
) -> dict[str, Any]:
    """The status block: depth per queue state, ``dead`` and ``failed`` row counts, the oldest
    lease age, the lag (age of the oldest row waiting), the last progress time (seconds since the
    epoch), the documents per ``index_status``, ``recent_failures`` (the newest failed documents
    with their errors, as given), ``vectors_pending`` (indexed documents searchable by keyword
    only, waiting for their vectors) and ``notes`` saying so. Pending vectors do not make the
    cascade unhealthy: every document is searchable, and they are filled by themselves.

    ``lagging`` says whether the index lags (:func:`index_lags`): more documents wait for their
    index (``waiting_documents``: those whose ``index_status`` is ``pending``, uploaded or edited
    and not yet searchable; a deferred vector pass is not counted, its document is searchable by
    keyword) than ``lag_documents`` (``[cascade] lag_documents``, also in the block), with a note.
    A lagging index is not unhealthy either: uploads are still accepted, and indexed in turn.

    ``healthy`` is false, with ``reasons``, when rows have waited longer than ``stall_after_s``
    while no attempt finished for as long, when an attempt has held its row for longer than that,
    and when a document failed to index or a row is dead (they stay so until their files are
    fixed or ``everos cascade fix --apply`` queues them again)."""
    reasons = []
    lag = stats.oldest_queued_age_seconds
    since_progress = None if stats.last_progress_at is None else max(0.0, now - stats.last_progress_at)
    if lag is not None and lag > stall_after_s and (since_progress is None or since_progress > stall_after_s):
        idle = "no attempt ever finished" if since_progress is None else f"none finished for {since_progress:.0f} s"
        reasons.append(f"{stats.counts[JobStatus.QUEUED]} index rows waiting, the oldest for {lag:.0f} s, and {idle}")
    lease_age = stats.oldest_lease_age_seconds
    if lease_age is not None and lease_age > stall_after_s:
        reasons.append(f"an index row has been running for {lease_age:.0f} s")
    failure = _failure_reason(stats, index_counts, recent_failures)
    if failure:
        reasons.append(failure)
    waiting = index_counts.get("pending", 0)
    lagging = index_lags(waiting, lag_documents)
    notes = [f"{_count(vectors_pending, 'document')} searchable by keyword only: vectors pending (queued for a "
             "slow embedder, or the embedder failed or stalled); they are embedded in the background"
             ] if vectors_pending else []
    if lagging:
        notes.append(f"the index lags: {_count(waiting, 'document')} wait for their index, more than [cascade] "
                     f"lag_documents ({lag_documents}); uploads are still accepted, and their answers carry "
                     f"{INDEX_LAG_HEADER} so clients slow down")
    return {
        "healthy": not reasons,
        "reasons": reasons,
        "depth": {str(status): count for status, count in stats.counts.items()},
        "pending": stats.pending,
        "dead": stats.counts[JobStatus.DEAD],
        "failed": stats.counts[JobStatus.FAILED],
        "oldest_lease_age_s": _round(lease_age),
        "lag_s": _round(lag),
        "last_progress_at": stats.last_progress_at,
        "index_status": dict(index_counts),
        "recent_failures": [dict(failure) for failure in recent_failures],
        "vectors_pending": vectors_pending,
        "lagging": lagging,
        "waiting_documents": waiting,
        "lag_documents": lag_documents,
        "notes": notes,
    }


def _failure_reason(
    stats: QueueStats, index_counts: Mapping[str, int], recent_failures: Sequence[Mapping[str, Any]]
) -> str | None:
    """What to say about failed documents and dead rows, naming the newest failure; None if none."""
    documents = index_counts.get("failed", 0)
    dead = stats.counts[JobStatus.DEAD]
    if not documents and not dead:
        return None
    reason = f"{_count(documents, 'document')} failed to index, {_count(dead, 'index row')} dead"
    if recent_failures:
        newest = recent_failures[0]
        reason += f"; newest: {newest['doc_dir']}: {newest['error']}"
    return reason + "; fix the files, or run `everos cascade fix --apply`"


def _count(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
