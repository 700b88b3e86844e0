"""JobWatch: a waiter wakes when its job settles, even when it settled between the read and the wait."""

from __future__ import annotations

import pytest
import trio

from everos.ingest import JobWatch


async def test_a_waiter_wakes_when_its_job_settles(autojump_clock) -> None:
    jobs = JobWatch()
    woke_at: list[float] = []

    async def waiter() -> None:
        with jobs.watch("t_1") as watch:
            await watch.next(60)
            woke_at.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.sleep(3)
        jobs.settled("t_2")  # another job: no effect
        await trio.sleep(2)
        jobs.settled("t_1")
    assert woke_at == [pytest.approx(5)]


async def test_a_settlement_after_the_watch_began_is_not_missed(autojump_clock) -> None:
    jobs = JobWatch()
    with jobs.watch("t_1") as watch:
        jobs.settled("t_1")  # e.g. between the waiter's read of the job and its wait
        started = trio.current_time()
        await watch.next(60)
        assert trio.current_time() == started
        await watch.next(1)  # nothing new: waits out its timeout (the caller's re-read)
        assert trio.current_time() - started == pytest.approx(1)


async def test_a_job_is_watched_only_while_someone_waits() -> None:
    jobs = JobWatch()
    jobs.settled("t_1")  # nobody waits: nothing kept
    assert jobs._settled == {}
    with jobs.watch("t_1"), jobs.watch("t_1"):
        assert list(jobs._settled) == ["t_1"]
    assert jobs._settled == {} and jobs._waiters == {}
