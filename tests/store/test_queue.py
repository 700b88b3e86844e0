"""The leased queue against a real SQLite file (G7 leases, G8 idempotent steps, G9 bounded).

Queue time comes from an injected :class:`FakeClock` that the tests advance by hand: leases,
backoff and expiry are compared with it in SQL, so no test sleeps. The Trio clock matters only
for :meth:`LeasedQueue.wait_for_work`, tested with ``autojump_clock`` where no SQLite thread
runs during the wait (a running thread lets the autojump fire early).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing

from everos.errors import QueueSaturated
from everos.store import Database, JobStatus, LeasedQueue, open_database

from .conftest import sqlite_settings


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def queue_db(tmp_path: Path) -> AsyncIterator[Database]:
    migrations = [LeasedQueue.migration("jobs"), LeasedQueue.migration("index_rows")]
    async with open_database(tmp_path / "q.db", sqlite_settings(), trio.CapacityLimiter(2),
                             migrations=migrations) as db:
        yield db


@pytest.fixture
def queue(queue_db: Database, clock: FakeClock) -> LeasedQueue:
    return LeasedQueue(queue_db, "jobs", max_attempts=3, clock=clock)


# -- leasing -----------------------------------------------------------------------------------


async def test_lease_takes_the_oldest_available_rows_first(queue: LeasedQueue, clock: FakeClock) -> None:
    for name in ("a", "b", "c"):
        await queue.enqueue("extract", {"name": name})
    first = await queue.lease("w1", 2, 60)
    assert [job.payload["name"] for job in first] == ["a", "b"]
    assert all(job.status is JobStatus.RUNNING and job.attempts == 1 for job in first)
    assert first[0].lease_owner == "w1" and first[0].lease_expires_at == clock.now + 60
    assert [job.payload["name"] for job in await queue.lease("w2", 5, 60)] == ["c"]
    assert await queue.lease("w3", 5, 60) == []


async def test_rows_of_later_kinds_are_leased_only_when_nothing_else_is_available(
        queue: LeasedQueue, clock: FakeClock) -> None:
    """The index's deferred vector passes wait behind keyword work queued after them (#13, #15)."""
    await queue.enqueue("vectors", {"name": "v1"})
    await queue.enqueue("index", {"name": "i1"})
    await queue.enqueue("vectors", {"name": "v2"})
    await queue.enqueue("index", {"name": "i2"}, delay_seconds=5)  # not available yet: no priority
    leased = [job.payload["name"] for job in await queue.lease("w", 5, 60, later_kinds=("vectors",))]
    assert leased == ["i1", "v1", "v2"]
    clock.advance(5)
    assert [job.payload["name"] for job in await queue.lease("w", 5, 60, later_kinds=("vectors",))] == ["i2"]


async def test_skip_later_leases_no_row_of_the_later_kinds(queue: LeasedQueue) -> None:
    """An index worker without a vector-pass slot takes keyword work only, or nothing (#13)."""
    await queue.enqueue("vectors", {"name": "v1"})
    await queue.enqueue("index", {"name": "i1"})
    leased = await queue.lease("w", 5, 60, later_kinds=("vectors",), skip_later=True)
    assert [job.payload["name"] for job in leased] == ["i1"]
    assert await queue.lease("w", 5, 60, later_kinds=("vectors",), skip_later=True) == []
    assert [job.payload["name"] for job in await queue.lease("w", 5, 60, later_kinds=("vectors",))] == ["v1"]


async def test_a_lease_reads_the_queue_in_index_order_and_sorts_nothing(queue: LeasedQueue, monkeypatch) -> None:
    """#17: ORDER BY kind IN (...) sorted every queued row at each lease (17 ms a lease with 10,000
    queued, held under the write lock); each part of the lease now walks the (status,
    available_at) index and stops at its limit."""
    plans: list[str] = []
    real_write = queue._db.write

    async def explaining(fn, *args):
        def explained(conn, *inner):
            real_execute = conn.execute

            class Explaining:
                def __getattr__(self, name):
                    return getattr(conn, name)

                def execute(self, sql, params=()):
                    if sql.startswith("SELECT id FROM"):
                        plans.extend(row[3] for row in real_execute("EXPLAIN QUERY PLAN " + sql, params))
                    return real_execute(sql, params)

            return fn(Explaining(), *inner)

        return await real_write(explained, *args)

    for n in range(3):
        await queue.enqueue("vectors" if n % 2 else "index", {"name": n})
    monkeypatch.setattr(queue._db, "write", explaining)
    assert len(await queue.lease("w", 2, 60, later_kinds=("vectors",))) == 2
    assert plans and all("TEMP B-TREE" not in plan for plan in plans), plans


async def test_delayed_row_is_not_leased_before_it_is_available(queue: LeasedQueue, clock: FakeClock) -> None:
    await queue.enqueue("extract", delay_seconds=10)
    assert await queue.lease("w1", 1, 60) == []
    clock.advance(10)
    assert len(await queue.lease("w1", 1, 60)) == 1


async def test_complete_stores_the_result(queue: LeasedQueue) -> None:
    job = await queue.enqueue("extract", {"doc": 1}, job_id="task-1")
    assert job.id == "task-1"
    await queue.lease("w1", 1, 60)
    assert await queue.complete("task-1", "w1", {"topics": 3}) is True
    done = await queue.get("task-1")
    assert done is not None
    assert (done.status, done.result, done.lease_owner) == (JobStatus.SUCCEEDED, {"topics": 3}, None)


async def test_stale_owner_cannot_complete_fail_or_renew_a_re_leased_row(queue: LeasedQueue, clock: FakeClock) -> None:
    """G7: guarded updates; the worker whose lease expired changes nothing."""
    job = await queue.enqueue("extract")
    await queue.lease("w1", 1, 10)
    clock.advance(11)
    assert await queue.reap_expired() == 1
    await queue.lease("w2", 1, 60)
    assert await queue.complete(job.id, "w1", "stale") is False
    assert await queue.fail(job.id, "w1", "stale", 0) is False
    assert await queue.renew(job.id, "w1", 60) is False
    current = await queue.get(job.id)
    assert current is not None
    assert (current.status, current.lease_owner, current.result) == (JobStatus.RUNNING, "w2", None)


async def test_renew_extends_the_lease_past_its_first_expiry(queue: LeasedQueue, clock: FakeClock) -> None:
    job = await queue.enqueue("extract")
    await queue.lease("w1", 1, 10)
    clock.advance(8)
    assert await queue.renew(job.id, "w1", 10) is True
    clock.advance(8)
    assert await queue.reap_expired() == 0
    clock.advance(3)
    assert await queue.reap_expired() == 1


async def test_expired_lease_is_reaped_back_to_the_queue_counted(queue: LeasedQueue, clock: FakeClock) -> None:
    """G7: an expired lease returns the row, counted as an attempt, with the reason kept."""
    job = await queue.enqueue("extract")
    await queue.lease("w1", 1, 30)
    clock.advance(30)
    assert await queue.reap_expired() == 1
    reaped = await queue.get(job.id)
    assert reaped is not None
    assert (reaped.status, reaped.attempts, reaped.lease_owner) == (JobStatus.QUEUED, 1, None)
    assert "w1" in (reaped.last_error or "") and "expired" in (reaped.last_error or "")
    [again] = await queue.lease("w2", 1, 30)
    assert again.attempts == 2


async def test_row_is_dead_after_max_attempts_with_its_last_error(queue: LeasedQueue, clock: FakeClock) -> None:
    """G7: no row is retried forever; its last error stays visible."""
    job = await queue.enqueue("extract", max_attempts=2)
    await queue.lease("w1", 1, 60)
    assert await queue.fail(job.id, "w1", TimeoutError("llm stalled"), 0) is True
    await queue.lease("w1", 1, 60)
    await queue.fail(job.id, "w1", "llm answered 500", 0)
    dead = await queue.get(job.id)
    assert dead is not None
    assert (dead.status, dead.attempts, dead.last_error) == (JobStatus.DEAD, 2, "llm answered 500")
    assert await queue.lease("w1", 1, 60) == []


async def test_reaping_the_last_attempt_makes_the_row_dead(queue: LeasedQueue, clock: FakeClock) -> None:
    job = await queue.enqueue("extract", max_attempts=1)
    await queue.lease("w1", 1, 5)
    clock.advance(5)
    await queue.reap_expired()
    dead = await queue.get(job.id)
    assert dead is not None and dead.status is JobStatus.DEAD and dead.finished_at == clock.now


async def test_failed_row_waits_for_its_backoff(queue: LeasedQueue, clock: FakeClock) -> None:
    job = await queue.enqueue("extract")
    await queue.lease("w1", 1, 60)
    await queue.fail(job.id, "w1", ValueError("bad answer"), 30)
    failed = await queue.get(job.id)
    assert failed is not None and failed.last_error == "ValueError: bad answer"
    clock.advance(29)
    assert await queue.lease("w1", 1, 60) == []
    clock.advance(1)
    assert [j.id for j in await queue.lease("w1", 1, 60)] == [job.id]


async def test_non_retryable_failure_is_failed_at_once(queue: LeasedQueue) -> None:
    job = await queue.enqueue("extract")
    await queue.lease("w1", 1, 60)
    await queue.fail(job.id, "w1", "not UTF-8", 0, retryable=False)
    failed = await queue.get(job.id)
    assert failed is not None and failed.status is JobStatus.FAILED


async def test_long_error_is_cut_to_a_readable_length(queue: LeasedQueue) -> None:
    job = await queue.enqueue("extract")
    await queue.lease("w1", 1, 60)
    await queue.fail(job.id, "w1", "x" * 100_000, 0)
    failed = await queue.get(job.id)
    assert failed is not None and len(failed.last_error or "") == 2000


async def test_release_returns_the_row_without_counting_the_attempt(queue: LeasedQueue) -> None:
    job = await queue.enqueue("extract")
    await queue.lease("w1", 1, 60)
    assert await queue.release(job.id, "w1") is True
    released = await queue.get(job.id)
    assert released is not None and (released.status, released.attempts) == (JobStatus.QUEUED, 0)


# -- dedupe keys (G8) ------------------------------------------------------------------------------


async def test_enqueueing_a_queued_key_updates_its_row(queue: LeasedQueue) -> None:
    first = await queue.enqueue("index", {"v": 1}, key="app/p/knowledge/C/D/1_T.md")
    second = await queue.enqueue("index", {"v": 2}, key="app/p/knowledge/C/D/1_T.md")
    assert second.id == first.id
    assert [(j.id, j.payload) for j in await queue.list()] == [(first.id, {"v": 2})]


async def test_running_key_is_not_stolen_and_runs_again_after_completion(queue: LeasedQueue) -> None:
    first = await queue.enqueue("index", {"v": 1}, key="doc.md")
    await queue.lease("w1", 1, 60)
    marked = await queue.enqueue("index", {"v": 2}, key="doc.md")
    assert (marked.id, marked.status, marked.lease_owner, marked.rerun) == (first.id, JobStatus.RUNNING, "w1", True)
    assert await queue.lease("w2", 1, 60) == []
    assert await queue.complete(first.id, "w1") is True
    requeued = await queue.get(first.id)
    assert requeued is not None
    assert (requeued.status, requeued.attempts, requeued.rerun) == (JobStatus.QUEUED, 0, False)
    [rerun] = await queue.lease("w2", 1, 60)
    assert (rerun.id, rerun.payload) == (first.id, {"v": 2})


async def test_finished_key_is_queued_again_with_fresh_attempts(queue: LeasedQueue) -> None:
    job = await queue.enqueue("index", key="doc.md", max_attempts=1)
    await queue.lease("w1", 1, 60)
    await queue.fail(job.id, "w1", "boom", 0)
    revived = await queue.enqueue("index", key="doc.md")
    assert (revived.id, revived.status, revived.attempts, revived.last_error) == (job.id, JobStatus.QUEUED, 0, None)


async def test_enqueue_many_merges_by_key_as_enqueue_does_in_transactions_of_hundreds(
        queue: LeasedQueue, monkeypatch) -> None:
    """A rebuild queues every document at once: 1,200 rows in 3 writes, not 1,200."""
    running = await queue.enqueue("index", {"v": 1}, key="doc-0")
    await queue.lease("w1", 1, 60)
    writes = 0
    real_write = queue._db.write

    async def counting(fn, *args):
        nonlocal writes
        writes += 1
        return await real_write(fn, *args)

    monkeypatch.setattr(queue._db, "write", counting)
    await queue.enqueue_many("index", [(f"doc-{n}", {"v": 2}) for n in range(1200)])
    assert writes == 3
    assert (await queue.stats()).counts[JobStatus.QUEUED] == 1199
    marked = await queue.get(running.id)
    assert marked is not None and (marked.status, marked.rerun) == (JobStatus.RUNNING, True)  # as enqueue would


async def test_enqueue_with_an_existing_job_id_returns_that_row_unchanged(queue: LeasedQueue) -> None:
    await queue.enqueue("extract", {"v": 1}, job_id="task-1")
    again = await queue.enqueue("extract", {"v": 2}, job_id="task-1")
    assert again.payload == {"v": 1}
    assert len(await queue.list()) == 1


async def test_enqueue_past_max_pending_is_refused_and_writes_nothing(queue: LeasedQueue) -> None:
    """G9: the queue is bounded; the caller answers 429."""
    await queue.enqueue("extract", max_pending=2)
    await queue.enqueue("extract", max_pending=2)
    with pytest.raises(QueueSaturated):
        await queue.enqueue("extract", max_pending=2)
    assert len(await queue.list()) == 2


# -- supervision -----------------------------------------------------------------------------------


async def test_recover_at_startup_leaves_no_running_row(queue: LeasedQueue) -> None:
    """G7: a restart never leaves stale running rows; each one is counted."""
    for _ in range(3):
        await queue.enqueue("extract")
    await queue.lease("old-process:w1", 2, 3600)
    await queue.lease("other:w1", 1, 3600)
    assert await queue.recover("old-process:") == 2
    assert [j.lease_owner for j in await queue.list(JobStatus.RUNNING)] == ["other:w1"]
    assert await queue.recover() == 1
    assert await queue.list(JobStatus.RUNNING) == []
    assert all(j.attempts == 1 and j.status is JobStatus.QUEUED for j in await queue.list())


async def test_requeue_restores_dead_rows_and_skips_backoff(queue: LeasedQueue, clock: FakeClock) -> None:
    dead = await queue.enqueue("index", max_attempts=1)
    waiting = await queue.enqueue("index")
    await queue.lease("w1", 2, 60)
    await queue.fail(dead.id, "w1", "boom", 0)
    await queue.fail(waiting.id, "w1", "boom", 3600)
    assert await queue.requeue([dead.id, waiting.id, "unknown"]) == 2
    leased = await queue.lease("w1", 5, 60)
    assert sorted(j.id for j in leased) == sorted([dead.id, waiting.id])
    assert {j.id: j.attempts for j in leased} == {dead.id: 1, waiting.id: 2}


async def test_delete_get_and_list_by_status(queue: LeasedQueue) -> None:
    kept = await queue.enqueue("extract")
    gone = await queue.enqueue("extract")
    await queue.lease("w1", 1, 60)
    assert [j.id for j in await queue.list("queued")] == [gone.id]
    assert await queue.delete(gone.id) is True
    assert await queue.delete(gone.id) is False
    assert await queue.get(gone.id) is None
    assert [j.id for j in await queue.list(limit=1, offset=0)] == [kept.id]


async def test_two_queues_share_a_database_without_seeing_each_other(
    queue: LeasedQueue, queue_db: Database, clock: FakeClock
) -> None:
    index_rows = LeasedQueue(queue_db, "index_rows", max_attempts=5, clock=clock)
    await queue.enqueue("extract")
    row = await index_rows.enqueue("topic", key="doc.md")
    assert row.max_attempts == 5
    assert [j.id for j in await index_rows.lease("w1", 5, 60)] == [row.id]
    assert len(await queue.list(JobStatus.QUEUED)) == 1


def test_table_names_must_be_plain_identifiers() -> None:
    with pytest.raises(ValueError):
        LeasedQueue.migration("jobs; DROP TABLE x")


async def test_stats_report_counts_ages_and_last_progress(queue: LeasedQueue, clock: FakeClock) -> None:
    """G2's inputs: queue depth, oldest lease age, oldest wait, last progress."""
    empty = await queue.stats()
    assert empty.pending == 0 and empty.last_progress_at is None and empty.oldest_lease_age_seconds is None
    done = await queue.enqueue("extract")
    for _ in range(2):
        await queue.enqueue("extract")
    await queue.lease("w1", 2, 600)
    clock.advance(10)
    await queue.complete(done.id, "w1")
    progress_at = clock.now
    clock.advance(5)
    stats = await queue.stats()
    assert stats.counts == {JobStatus.QUEUED: 1, JobStatus.RUNNING: 1, JobStatus.SUCCEEDED: 1,
                            JobStatus.FAILED: 0, JobStatus.DEAD: 0}
    assert stats.pending == 2
    assert stats.oldest_lease_age_seconds == 15
    assert stats.oldest_queued_age_seconds == 15
    assert stats.last_progress_at == progress_at


# -- waking workers ------------------------------------------------------------------------------------


async def test_wait_for_work_wakes_on_enqueue(queue: LeasedQueue) -> None:
    woken: list[bool] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:

            async def worker() -> None:
                woken.append(await queue.wait_for_work(3600))

            nursery.start_soon(worker)
            await trio.testing.wait_all_tasks_blocked()
            await queue.enqueue("extract")
    assert woken == [True]


async def test_wait_for_work_times_out_without_work(queue: LeasedQueue, autojump_clock: trio.abc.Clock) -> None:
    start = trio.current_time()
    assert await queue.wait_for_work(30) is False
    assert trio.current_time() - start == 30
