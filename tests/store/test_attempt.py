"""run_leased_attempt: the lease rules shared by ingest and index workers (G7)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from everos.errors import StoreBusy
from everos.store import JobStatus, LeasedQueue, open_database
from everos.store._attempt import run_leased_attempt

from .conftest import sqlite_settings


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[LeasedQueue]:
    async with open_database(tmp_path / "q.db", sqlite_settings(), trio.CapacityLimiter(2),
                             migrations=[LeasedQueue.migration("jobs")]) as db:
        yield LeasedQueue(db, "jobs", max_attempts=3)


async def leased(queue: LeasedQueue, owner: str = "w1", lease_s: float = 30.0):
    await queue.enqueue("k", {"n": 1})
    (job,) = await queue.lease(owner, 1, lease_s)
    return job


def timeout_error() -> Exception:
    return StoreBusy("too slow")


async def test_success_returns_the_result(queue: LeasedQueue) -> None:
    job = await leased(queue)

    async def work():
        return {"ok": True}

    outcome = await run_leased_attempt(queue, job, "w1", work, lease_seconds=30, timeout_seconds=5,
                                       timeout_error=timeout_error)
    assert outcome.succeeded and outcome.result == {"ok": True} and outcome.error is None


async def test_an_error_of_the_work_is_returned_not_raised(queue: LeasedQueue) -> None:
    job = await leased(queue)

    async def work():
        raise ValueError("bad row")

    outcome = await run_leased_attempt(queue, job, "w1", work, lease_seconds=30, timeout_seconds=5,
                                       timeout_error=timeout_error)
    assert not outcome.succeeded and isinstance(outcome.error, ValueError)


async def test_past_its_deadline_the_attempt_reports_the_timeout_error(queue: LeasedQueue) -> None:
    job = await leased(queue)
    outcome = await run_leased_attempt(queue, job, "w1", trio.sleep_forever, lease_seconds=30,
                                       timeout_seconds=0.2, timeout_error=timeout_error)
    assert isinstance(outcome.error, StoreBusy) and outcome.error.message == "too slow"


async def test_the_lease_is_renewed_while_the_work_runs(queue: LeasedQueue) -> None:
    job = await leased(queue, lease_s=0.3)

    async def work():
        await trio.sleep(1.0)  # more than three leases long
        return "done"

    outcome = await run_leased_attempt(queue, job, "w1", work, lease_seconds=0.3, timeout_seconds=5,
                                       timeout_error=timeout_error)
    assert outcome.succeeded
    assert await queue.reap_expired() == 0
    assert await queue.complete(job.id, "w1", "done")


async def test_a_lost_lease_stops_the_attempt_without_a_verdict(queue: LeasedQueue) -> None:
    job = await leased(queue, lease_s=0.3)
    await queue.delete(job.id)  # e.g. the document was deleted meanwhile
    outcome = await run_leased_attempt(queue, job, "w1", trio.sleep_forever, lease_seconds=0.3,
                                       timeout_seconds=5, timeout_error=timeout_error)
    assert outcome.succeeded is False and outcome.error is None


async def test_cancellation_gives_the_lease_back_without_spending_the_attempt(queue: LeasedQueue) -> None:
    job = await leased(queue)
    with trio.move_on_after(0.2):
        await run_leased_attempt(queue, job, "w1", trio.sleep_forever, lease_seconds=30, timeout_seconds=5,
                                 timeout_error=timeout_error)
    again = await queue.get(job.id)
    assert again.status is JobStatus.QUEUED and again.attempts == 0 and again.lease_owner is None
