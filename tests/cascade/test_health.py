"""The cascade block of /health: depth, lag, progress, failures, and when it says unhealthy (G2, G7)."""

from __future__ import annotations

from everos.cascade import cascade_health, stall_after_seconds
from everos.store import JobStatus, QueueStats


def stats(queued: int = 0, running: int = 0, *, lag: float | None = None, lease_age: float | None = None,
          last_progress_at: float | None = None, dead: int = 0) -> QueueStats:
    counts = dict.fromkeys(JobStatus, 0) | {JobStatus.QUEUED: queued, JobStatus.RUNNING: running, JobStatus.DEAD: dead}
    return QueueStats(counts, lease_age, lag, last_progress_at)


INDEX = {"pending": 0, "indexed": 0, "failed": 0}


def test_stall_threshold_is_twice_the_longest_hold_and_at_least_a_minute() -> None:
    assert stall_after_seconds(120, 60) == 240
    assert stall_after_seconds(5, 10) == 60


def test_idle_queue_is_healthy_however_old_the_last_progress() -> None:
    report = cascade_health(stats(last_progress_at=0.0), INDEX, now=1e6, stall_after_s=240)
    assert report["healthy"] and report["reasons"] == [] and report["lag_s"] is None


def test_waiting_rows_with_recent_progress_are_healthy() -> None:
    report = cascade_health(stats(50, 2, lag=900.0, last_progress_at=1e6 - 5), INDEX, now=1e6, stall_after_s=240)
    assert report["healthy"] and report["pending"] == 52 and report["lag_s"] == 900.0


def test_waiting_rows_without_progress_are_unhealthy_with_a_reason() -> None:
    report = cascade_health(stats(3, lag=300.0, last_progress_at=1e6 - 600), INDEX, now=1e6, stall_after_s=240)
    assert not report["healthy"]
    assert report["reasons"] == ["3 index rows waiting, the oldest for 300 s, and none finished for 600 s"]


def test_a_row_held_too_long_is_unhealthy() -> None:
    report = cascade_health(stats(running=1, lease_age=500.0, last_progress_at=1e6), INDEX, now=1e6, stall_after_s=240)
    assert report["reasons"] == ["an index row has been running for 500 s"]


def test_failed_documents_and_dead_rows_are_unhealthy_naming_the_newest_error() -> None:
    """G7: a document that failed to index (or a dead row) is not healthy, and the block says
    which one and why, instead of ``healthy: true`` with the error only in the log."""
    failures = [{"doc_id": "d_000000000001", "doc_dir": "a/b/knowledge/Tech/T_d_000000000001",
                 "error": "INVALID_INPUT: 1_X.md: frontmatter type must be 'knowledge_topic'", "at": 1e6 - 5}]
    report = cascade_health(stats(dead=1, last_progress_at=1e6), INDEX | {"indexed": 3, "failed": 2}, now=1e6,
                            stall_after_s=240, recent_failures=failures)
    assert not report["healthy"] and report["recent_failures"] == failures
    assert report["reasons"] == [
        "2 documents failed to index, 1 index row dead; newest: a/b/knowledge/Tech/T_d_000000000001: "
        "INVALID_INPUT: 1_X.md: frontmatter type must be 'knowledge_topic'; fix the files, or run "
        "`everos cascade fix --apply`"]
    assert cascade_health(stats(), INDEX, now=1e6, stall_after_s=240)["recent_failures"] == []


def test_more_documents_waiting_than_the_bound_lag_with_a_note_and_stay_healthy() -> None:
    """Issue #17 item 4: past [cascade] lag_documents the block says the index lags, and how far;
    uploads still work, so it is not a reason to be unhealthy."""
    report = cascade_health(stats(301, 2, lag=40.0, last_progress_at=1e6 - 1), INDEX | {"pending": 303}, now=1e6,
                            stall_after_s=240, lag_documents=300)
    assert report["healthy"] and report["reasons"] == []
    assert (report["lagging"], report["waiting_documents"], report["lag_documents"]) == (True, 303, 300)
    assert report["notes"] == ["the index lags: 303 documents wait for their index, more than [cascade] "
                               "lag_documents (300); uploads are still accepted, and their answers carry "
                               "X-Everos-Index-Lag so clients slow down"]


def test_the_bound_itself_does_not_lag_and_0_never_lags() -> None:
    at_bound = cascade_health(stats(300), INDEX | {"pending": 300}, now=1e6, stall_after_s=240, lag_documents=300)
    assert not at_bound["lagging"] and at_bound["notes"] == []
    off = cascade_health(stats(10_000), INDEX | {"pending": 10_000}, now=1e6, stall_after_s=240, lag_documents=0)
    assert not off["lagging"] and off["waiting_documents"] == 10_000


def test_rows_waiting_only_for_their_vectors_do_not_lag() -> None:
    """A deferred vector pass is a queue row, but its document is searchable by keyword already:
    only documents whose index_status is pending count."""
    report = cascade_health(stats(500), INDEX | {"indexed": 500}, now=1e6, stall_after_s=240, vectors_pending=500,
                            lag_documents=300)
    assert report["pending"] == 500 and not report["lagging"] and report["waiting_documents"] == 0


def test_the_status_block_reads_every_second_use_indexes_not_a_scan_of_every_document() -> None:
    """The monitor refreshes the block once a second (G2: /health stays cheap): with 100,000
    documents a scan of cascade_index_state per query took 85 ms of each second."""
    import sqlite3

    from everos.cascade import _state as state
    from everos.store._migrations import split_statements

    conn = sqlite3.connect(":memory:")
    for step in state.MIGRATIONS.steps:
        for statement in split_statements(step):
            conn.execute(statement)
    plans: list[str] = []

    def traced(statement: str) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            plans.extend(str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}"))

    conn.set_trace_callback(traced)
    assert state.state_counts(conn) == INDEX
    assert state.recent_failures(conn, 5) == []
    assert state.vectors_pending_count(conn) == 0
    conn.set_trace_callback(None)
    assert plans and all("INDEX cascade_index_state_" in plan for plan in plans if plan.startswith(("SCAN", "SEARCH")))
    assert not any(plan == "SCAN cascade_index_state" for plan in plans)
