"""The timing-heavy replay scenarios (llm-stall, llm-slow) in virtual time (G1, G3, G7).

The ingest service runs for real (SQLite, files, workers, reaper) against a model endpoint that
never answers or answers too late, through an in-memory transport. A MockClock jumps ahead
whenever every task waits, so hours of deadlines, retries and leases pass in a second. Its
autojump threshold is above zero because SQLite calls run in threads, during which trio would
otherwise think everything is idle (see tests/store).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio
import trio.testing

from everos.ingest import IngestService, Upload
from everos.knowledge import LLMExtractor
from everos.providers import make_chat
from everos.runtime import Limiters, Runtime
from everos.status import StatusBoard
from everos.supervisor import Supervisor
from everos.store import JobStatus

from ..conftest import loaded_config

# Deadlines of a local model, a tenth of the defaults: every virtual second costs a few real
# milliseconds of SQLite work (the status monitor, the reaper), so the scenario stays short.
SETTINGS = {"llm__provider": "openai", "llm__base_url": "http://model.invalid/v1", "llm__model": "m",
            "llm__timeout_seconds": 6.0, "llm__call_deadline_seconds": 30.0, "llm__max_retries": 2,
            "ingest__job_timeout_seconds": 60.0, "ingest__max_attempts": 3, "ingest__lease_seconds": 12.0,
            "ingest__retry_backoff_seconds": 3.0, "knowledge__sync_wait_seconds": 20.0}


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0.05)


def model_that(behaviour):
    async def handler(request: httpx.Request) -> httpx.Response:
        return await behaviour(request)

    return httpx.MockTransport(handler)


async def never_answers(request: httpx.Request) -> httpx.Response:
    await trio.sleep_forever()


async def answers_too_late(request: httpx.Request) -> httpx.Response:
    await trio.sleep(12)  # twice the attempt timeout
    return httpx.Response(200, json={"choices": [{"message": {"content": "{}"}}]})


async def run_scenario(root: Path, behaviour, nursery: trio.Nursery, **settings):
    loaded = loaded_config(root, **{**SETTINGS, **settings})
    runtime = Runtime(loaded=loaded, board=StatusBoard(), limiters=Limiters.from_config(loaded))
    chat = make_chat(loaded.config.llm, transport=model_that(behaviour))
    service = await IngestService.open(runtime, extractor=LLMExtractor(
        chat, runtime.config.llm, runtime.limiters.cpu, job_timeout_seconds=runtime.config.ingest.job_timeout_seconds))
    service.start_workers(Supervisor(nursery, runtime.board, restart_limit=5, restart_window_s=60))
    return service


@pytest.mark.parametrize("behaviour", [never_answers, answers_too_late], ids=["llm-stall", "llm-slow"])
async def test_upload_answers_at_its_sync_wait_and_dies_visibly_after_its_attempts(
    root: Path, mock_clock: trio.testing.MockClock, behaviour
) -> None:
    """G1, G3, G7 with [llm] fallback = "none" (model extraction only)."""
    async with trio.open_nursery() as nursery:
        service = await run_scenario(root, behaviour, nursery, llm__fallback="none")
        upload = Upload(data=b"# A\n\nSome text.\n", title="A", filename="a.md", app_id="default",
                        project_id="default")
        job, _ = await service.accept(upload)
        started = trio.current_time()
        waited = await service.wait(job.id, 20.0)
        # G1: the request's wait ends at its sync wait with the job still in progress (a 202).
        assert trio.current_time() - started == pytest.approx(20.0, abs=0.5)
        assert waited.status in (JobStatus.QUEUED, JobStatus.RUNNING)
        # G3/G7: every attempt is cut by the model's call deadline; after max_attempts the job is
        # dead with the error visible, not stuck running.
        final = await service.wait(job.id, 3600.0)
        assert final.status is JobStatus.DEAD
        assert final.attempts == 3
        assert "EXTERNAL_SERVICE_UNAVAILABLE" in final.last_error
        elapsed = trio.current_time() - started
        # Three attempts, each cut at the model's call deadline (30 s), then a backoff (3 s) and at
        # most one worker poll (reaper_interval_seconds, 5 s) before the next: bounded, never hung.
        assert 3 * 6 <= elapsed <= 3 * (30 + 3 + 5) + 30
        nursery.cancel_scope.cancel()
    await service.aclose()


@pytest.mark.parametrize(("settings", "reason"), [
    ({"llm__extraction_timeout_seconds": 10.0}, "the model did not finish within 10 s"),
    ({"ingest__job_timeout_seconds": 12.0}, "the model did not finish within 9 s"),  # 3/4 of the job's
    ({}, "the model sent nothing for 6s (streamed answer) (3 attempts)"),  # the model call ends first
], ids=["model-phase-deadline", "capped-by-the-job-deadline", "provider-timeout"])
async def test_a_stalled_model_gives_a_builtin_topic_tree_within_the_first_attempt(
    root: Path, mock_clock: trio.testing.MockClock, settings, reason
) -> None:
    """G1, G3, G11 (#18): with [llm] fallback = "builtin" (the default) a model that never answers
    costs the document its model phase, not its job: the first attempt ends at that phase's
    deadline (or the model call's, if sooner) with the built-in topic tree, and the task and the
    document say which extractor ran and why."""
    async with trio.open_nursery() as nursery:
        service = await run_scenario(root, never_answers, nursery, **settings)
        upload = Upload(data=b"# A\n\nSome text.\n", title="A", filename="a.md", app_id="default",
                        project_id="default")
        job, _ = await service.accept(upload)
        started = trio.current_time()
        final = await service.wait(job.id, 3600.0)
        elapsed = trio.current_time() - started
        assert (final.status, final.attempts) == (JobStatus.SUCCEEDED, 1)
        assert final.result["extractor"].startswith("builtin (llm fallback: ")
        assert reason in final.result["extractor"]
        assert final.result["topic_count"] >= 1
        assert elapsed < service.config.ingest.job_timeout_seconds
        doc, _ = await service.get_document(final.result["doc_id"])
        assert doc.extractor == final.result["extractor"]
        nursery.cancel_scope.cancel()
    await service.aclose()
