"""Worker processes for CPU work: deadline, memory limit, crash, cancel, warm-up, health (issue #12).

The functions the workers run live in ``tests/worker_jobs.py``, which a spawned process imports
quickly (no pytest). Each test opens its own one-worker pool (about 0.3 s). Bounds are for
liveness, not speed.
"""

from __future__ import annotations

import os

import pytest
import trio

from everos.errors import ConversionFailed, ServiceUnavailable, WorkerCrashed, WorkerOutOfMemory, WorkerTimeout
from everos.workers import open_cpu_workers

from .worker_jobs import add, count_init, die, fill, hog, pid, refuse, reserve_address_space, spin, times_initialised

LIVENESS_S = 30
MEMORY_MB = 1024

async def test_a_call_runs_in_another_process_and_returns_its_result() -> None:
    async with open_cpu_workers(workers=1) as pool:
        assert await pool.run_cpu(add, 2, 3, deadline_s=LIVENESS_S, memory_mb=MEMORY_MB) == 5
        assert await pool.run_cpu(pid, deadline_s=LIVENESS_S, memory_mb=MEMORY_MB) != os.getpid()


async def test_an_error_raised_by_the_work_comes_back_as_it_was_and_keeps_the_worker() -> None:
    async with open_cpu_workers(workers=1) as pool:
        first = await pool.run_cpu(pid, deadline_s=LIVENESS_S, memory_mb=MEMORY_MB)
        with pytest.raises(ConversionFailed, match="'a.pdf' could not be read as PDF: broken"):
            await pool.run_cpu(refuse, "a.pdf", deadline_s=LIVENESS_S, memory_mb=MEMORY_MB)
        assert await pool.run_cpu(pid, deadline_s=LIVENESS_S, memory_mb=MEMORY_MB) == first


async def test_a_call_past_its_deadline_kills_its_worker_and_a_new_one_takes_the_next_call() -> None:
    async with open_cpu_workers(workers=1) as pool:
        first = await pool.run_cpu(pid, deadline_s=LIVENESS_S, memory_mb=MEMORY_MB)
        with trio.fail_after(LIVENESS_S):
            with pytest.raises(WorkerTimeout) as caught:
                await pool.run_cpu(spin, deadline_s=0.2, memory_mb=MEMORY_MB, task="converting 'x.pdf'")
            assert caught.value.message == ("converting 'x.pdf' did not finish within 0.2 s; its worker "
                                            "process was stopped")
            assert await pool.run_cpu(pid, deadline_s=LIVENESS_S, memory_mb=MEMORY_MB) != first
        assert pool.snapshot().killed == 1


async def test_a_cancelled_caller_kills_the_worker_it_was_waiting_on() -> None:
    async with open_cpu_workers(workers=1) as pool:
        with trio.fail_after(LIVENESS_S):
            with trio.move_on_after(0.2) as scope:
                await pool.run_cpu(spin, deadline_s=3600, memory_mb=MEMORY_MB)
            assert scope.cancelled_caught
            assert await pool.run_cpu(add, 1, 1, deadline_s=LIVENESS_S, memory_mb=MEMORY_MB) == 2
        assert pool.snapshot().killed == 1


async def test_work_over_its_memory_limit_is_out_of_memory_and_the_worker_is_replaced() -> None:
    async with open_cpu_workers(workers=1) as pool:
        first = await pool.run_cpu(pid, deadline_s=LIVENESS_S, memory_mb=MEMORY_MB)
        with trio.fail_after(LIVENESS_S):
            with pytest.raises(WorkerOutOfMemory) as caught:
                await pool.run_cpu(hog, deadline_s=LIVENESS_S, memory_mb=MEMORY_MB, task="converting 'big.xlsx'")
            assert caught.value.message == ("converting 'big.xlsx' needed more than 1,024 MiB of memory; its "
                                            "worker process was replaced")
            assert await pool.run_cpu(pid, deadline_s=LIVENESS_S, memory_mb=MEMORY_MB) != first
        assert pool.snapshot().out_of_memory == 1


async def test_the_memory_limit_counts_what_a_call_adds_not_what_its_worker_mapped_before() -> None:
    # A worker that imported lancedb holds 1.7 GB of address space it never uses: a limit on the
    # whole would fail every call (a 10 MiB upload was WORKER_CRASHED), one on the call's own does not.
    async with open_cpu_workers(workers=1, init=reserve_address_space) as pool:
        with trio.fail_after(LIVENESS_S):
            answer = await pool.run_cpu(fill, 256, deadline_s=LIVENESS_S, memory_mb=MEMORY_MB)
            assert len(answer) == 64 << 20
            with pytest.raises(WorkerOutOfMemory):
                await pool.run_cpu(hog, deadline_s=LIVENESS_S, memory_mb=MEMORY_MB)
        assert pool.snapshot().crashed == 0


async def test_a_worker_that_dies_is_reported_as_crashed_and_replaced() -> None:
    async with open_cpu_workers(workers=1) as pool:
        with trio.fail_after(LIVENESS_S):
            with pytest.raises(WorkerCrashed, match=r"^die crashed its worker process \(killed by SIGKILL\)"):
                await pool.run_cpu(die, deadline_s=LIVENESS_S, memory_mb=MEMORY_MB)
            assert await pool.run_cpu(add, 2, 2, deadline_s=LIVENESS_S, memory_mb=MEMORY_MB) == 4
        assert pool.snapshot().crashed == 1


async def test_init_runs_once_in_each_worker_before_its_first_call() -> None:
    async with open_cpu_workers(workers=1, init=count_init) as pool:
        for _ in range(3):
            assert await pool.run_cpu(times_initialised, deadline_s=LIVENESS_S, memory_mb=MEMORY_MB) == 1
        with pytest.raises(WorkerTimeout):
            await pool.run_cpu(spin, deadline_s=0.2, memory_mb=MEMORY_MB)
        # The replacement ran its own init, once.
        assert await pool.run_cpu(times_initialised, deadline_s=LIVENESS_S, memory_mb=MEMORY_MB) == 1


async def test_the_snapshot_counts_workers_alive_and_calls_busy() -> None:
    async with open_cpu_workers(workers=2) as pool:
        assert pool.snapshot().alive == 2  # started before open returned
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: pool.run_cpu(spin, deadline_s=0.5, memory_mb=MEMORY_MB))
            await trio.sleep(0.1)
            snapshot = pool.snapshot()
            assert (snapshot.workers, snapshot.alive, snapshot.busy) == (2, 2, 1)
            nursery.cancel_scope.cancel()
        assert pool.snapshot().busy == 0


async def test_a_closed_pool_refuses_calls_as_unavailable() -> None:
    async with open_cpu_workers(workers=1) as pool:
        pass
    with pytest.raises(ServiceUnavailable, match="the worker processes are shutting down"):
        await pool.run_cpu(add, 1, 2, deadline_s=1, memory_mb=MEMORY_MB)


async def test_deadline_and_memory_must_be_positive() -> None:
    async with open_cpu_workers(workers=1) as pool:
        with pytest.raises(ValueError):
            await pool.run_cpu(add, 1, 2, deadline_s=0, memory_mb=MEMORY_MB)
        with pytest.raises(ValueError):
            await pool.run_cpu(add, 1, 2, deadline_s=1, memory_mb=0)


async def test_the_builtin_extractor_runs_in_a_worker_that_a_deadline_can_kill() -> None:
    """#12 item 2, G13: the built-in extractor in a worker process gives the same tree as in a
    thread; a text that takes longer than its deadline costs the worker, which the pool replaces."""
    import trio

    from everos.knowledge import BuiltinExtractor, SourceDocument

    text = "# Guide\n\n## Cats\n\nCats purr.\n\n## Dogs\n\nDogs bark.\n"
    source = SourceDocument(doc_id="d_0123456789ab", title="Guide", text=text, filename="g.md",
                            source_type=None, category_id=None)
    in_thread = await BuiltinExtractor(trio.CapacityLimiter(1)).extract(source, ())
    async with open_cpu_workers(workers=1) as pool:
        in_worker = await BuiltinExtractor(trio.CapacityLimiter(1), workers=pool).extract(source, ())
        assert in_worker == in_thread
        huge = SourceDocument(doc_id="d_0123456789ab", title="Huge", text="## Part\n\nwords and more words.\n\n" * 200_000,
                              filename="h.md", source_type=None, category_id=None)
        with pytest.raises(WorkerTimeout):
            await BuiltinExtractor(trio.CapacityLimiter(1), workers=pool, deadline_s=0.05).extract(huge, ())
        assert await BuiltinExtractor(trio.CapacityLimiter(1), workers=pool).extract(source, ()) == in_thread
        assert pool.snapshot().killed == 1
