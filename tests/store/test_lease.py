"""The pure lease arithmetic of the queue (G7, G8): where a row goes when an attempt ends."""

from __future__ import annotations

import pytest

from everos.store import JobStatus
from everos.store._lease import EnqueueAction, Settlement, enqueue_action, settle_attempt


def settle(**changes: object) -> Settlement:
    arguments = dict(succeeded=False, retryable=True, attempts=1, max_attempts=3, rerun=False, now=100.0,
                     retry_after_seconds=5.0)
    arguments.update(changes)
    return settle_attempt(**arguments)  # type: ignore[arg-type]


def test_success_is_terminal() -> None:
    assert settle(succeeded=True) == Settlement(JobStatus.SUCCEEDED, 1, 100.0)


def test_retryable_failure_waits_for_its_backoff() -> None:
    assert settle() == Settlement(JobStatus.QUEUED, 1, 105.0)


def test_failure_at_max_attempts_is_dead() -> None:
    """G7: after max_attempts the row is dead, not retried forever."""
    assert settle(attempts=3).status is JobStatus.DEAD


def test_non_retryable_failure_is_failed_whatever_the_attempts_left() -> None:
    assert settle(retryable=False).status is JobStatus.FAILED


@pytest.mark.parametrize("succeeded, retryable, attempts", [(True, True, 1), (False, True, 3), (False, False, 1)])
def test_rerun_requeues_now_with_fresh_attempts_whatever_the_outcome(
    succeeded: bool, retryable: bool, attempts: int
) -> None:
    outcome = settle(succeeded=succeeded, retryable=retryable, attempts=attempts, rerun=True)
    assert outcome == Settlement(JobStatus.QUEUED, 0, 100.0)


def test_negative_backoff_is_now() -> None:
    assert settle(retry_after_seconds=-1.0).available_at == 100.0


@pytest.mark.parametrize("existing, action", [
    (None, EnqueueAction.INSERT),
    (JobStatus.QUEUED, EnqueueAction.UPDATE),
    (JobStatus.RUNNING, EnqueueAction.RERUN),
    (JobStatus.SUCCEEDED, EnqueueAction.REVIVE),
    (JobStatus.FAILED, EnqueueAction.REVIVE),
    (JobStatus.DEAD, EnqueueAction.REVIVE),
])
def test_enqueue_action_per_existing_status(existing: JobStatus | None, action: EnqueueAction) -> None:
    assert enqueue_action(existing) is action
