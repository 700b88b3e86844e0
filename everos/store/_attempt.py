"""One attempt at one leased row: a deadline, a renewed lease, and a clean hand-back on cancel.

Ingest workers and index workers both run their rows through :func:`run_leased_attempt`, so the
lease rules (G7) live in one place: the lease is renewed every third of ``lease_seconds``; if it is
lost (reaped, deleted, re-leased) the attempt is stopped; if the attempt outlasts
``timeout_seconds`` it is stopped and reported as a timeout; if the caller is cancelled (a
shutdown) the lease is given back without spending the attempt, and the cancellation propagates.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from everos.errors import StoreBusy
from everos.store._lease import Job
from everos.store._queue import LeasedQueue

__all__ = ["AttemptOutcome", "is_cancellation", "run_leased_attempt"]

log = logging.getLogger("everos.store")

RELEASE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class AttemptOutcome:
    """How an attempt ended: ``succeeded`` with ``result``, failed with ``error``, or neither
    (the lease was lost: the row's new owner settles it)."""

    succeeded: bool = False
    result: Any = None
    error: Exception | None = None


def is_cancellation(exc: BaseException) -> bool:
    """True for ``Cancelled``, or a group of nothing else (a nursery wraps what its body raises)."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(trio.Cancelled)[1] is None
    return isinstance(exc, trio.Cancelled)


async def run_leased_attempt(
    queue: LeasedQueue,
    job: Job,
    owner: str,
    work: Callable[[], Awaitable[Any]],
    *,
    lease_seconds: float,
    timeout_seconds: float,
    timeout_error: Callable[[], Exception],
) -> AttemptOutcome:
    """Run ``work()`` for ``owner``'s lease on ``job``; never raises for a failure of the work.

    A checkpoint; blocks for as long as the work, at most ``timeout_seconds``.

    **Cancellation handling:** the lease is released (shielded, within ``RELEASE_TIMEOUT_S``) so
    the row is available again without an attempt spent, and ``Cancelled`` propagates.
    """
    outcome = AttemptOutcome()
    try:
        with trio.fail_after(timeout_seconds):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_renew_lease, queue, job.id, owner, lease_seconds, nursery.cancel_scope)
                try:
                    outcome = AttemptOutcome(succeeded=True, result=await work())
                except Exception as exc:
                    outcome = AttemptOutcome(error=exc)
                nursery.cancel_scope.cancel()
    except trio.TooSlowError:
        return AttemptOutcome(error=timeout_error())
    except BaseException as exc:
        if is_cancellation(exc):
            with trio.CancelScope(shield=True), trio.move_on_after(RELEASE_TIMEOUT_S):
                await queue.release(job.id, owner)
        raise
    return outcome


async def _renew_lease(
    queue: LeasedQueue, job_id: str, owner: str, lease_seconds: float, attempt_scope: trio.CancelScope
) -> None:
    """Renew every third of the lease; if the lease is lost, stop the attempt (G7)."""
    while True:
        await trio.sleep(lease_seconds / 3)
        try:
            renewed = await queue.renew(job_id, owner, lease_seconds)
        except StoreBusy:
            continue  # two thirds of the lease are left; try again next round
        if not renewed:
            log.warning("lost the lease of %s; abandoning the attempt", job_id)
            attempt_scope.cancel()
            return
