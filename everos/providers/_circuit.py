"""A circuit breaker per model endpoint, so a dead endpoint costs callers nothing (G1, G3).

States::

    closed ──(failure_threshold failed calls in a row)──▶ open
    open ──(cooldown_seconds pass)──▶ half-open: exactly one probe call is let through
    half-open ──probe succeeds──▶ closed        half-open ──probe fails──▶ open (cooldown again)

A *call* is one whole :meth:`AttemptPolicy.call`, retries included: the breaker counts calls that
ended without the endpoint answering (timeouts, refused or dropped connections, 408/409/429/5xx
after every retry). An answer the policy does not retry (400, 401, a malformed body) proves the
endpoint is up and counts as a success here.

Time is ``trio.current_time()``, so tests drive the cooldown with a virtual clock. Nothing here
awaits: every method is synchronous and cheap, and :meth:`snapshot` is safe on the /health path.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

import trio

from everos.providers._errors import CircuitOpen

__all__ = ["Admission", "CircuitBreaker", "CircuitState"]


class CircuitState(enum.StrEnum):
    """Where a circuit breaker stands; the string is what /health shows."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class Admission:
    """A ticket for one admitted call; ``probe`` is True for the single half-open probe."""

    probe: bool


class CircuitBreaker:
    """Counts consecutive failed calls to one endpoint and fails fast while it is open.

    Use :meth:`admit` before a call and exactly one of :meth:`record_success`,
    :meth:`record_failure` or :meth:`release` (a cancelled call: no verdict) after it.
    """

    def __init__(self, endpoint: str, *, failure_threshold: int, cooldown_seconds: float) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if cooldown_seconds <= 0:
            raise ValueError("cooldown_seconds must be positive")
        self.endpoint = endpoint
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self._consecutive_failures = 0
        self._opened_at: float | None = None  # trio clock
        self._opened_at_wall: float | None = None  # for people reading /health
        self._probe_in_flight = False
        self._last_error: str | None = None

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if trio.current_time() - self._opened_at >= self.cooldown_seconds:
            return CircuitState.HALF_OPEN
        return CircuitState.OPEN

    def admit(self) -> Admission:
        """Let a call through, or raise :class:`CircuitOpen` at once. Not a checkpoint.

        Raises:
            CircuitOpen: the circuit is open, or half-open with its one probe already in flight.
                ``retry_after_s`` says when a probe may next go through.
        """
        state = self.state
        if state is CircuitState.CLOSED:
            return Admission(probe=False)
        if state is CircuitState.HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True
            return Admission(probe=True)
        if state is CircuitState.HALF_OPEN:
            raise CircuitOpen(
                self.endpoint,
                "circuit half-open: a probe call is in flight; failing fast until it answers",
                retry_after_s=1.0,
            )
        remaining = self._remaining_cooldown()
        raise CircuitOpen(
            self.endpoint,
            f"circuit open after {self._consecutive_failures} failed calls in a row; failing fast "
            f"for {remaining:.1f}s more (last error: {self._last_error})",
            retry_after_s=remaining,
        )

    def record_success(self, admission: Admission) -> None:
        """The endpoint answered: close the circuit and reset the failure count."""
        if admission.probe:
            self._probe_in_flight = False
        self._consecutive_failures = 0
        self._opened_at = None
        self._opened_at_wall = None

    def record_failure(self, admission: Admission, error: str) -> None:
        """The call failed without a usable answer; open the circuit at the threshold."""
        self._consecutive_failures += 1
        self._last_error = error
        if admission.probe:
            self._probe_in_flight = False
            self._open()
        elif self._opened_at is None and self._consecutive_failures >= self.failure_threshold:
            self._open()

    def release(self, admission: Admission) -> None:
        """The call ended with no verdict (its caller was cancelled): free the probe slot."""
        if admission.probe:
            self._probe_in_flight = False

    def snapshot(self) -> dict[str, object]:
        """Plain data for /health: ``state``, ``consecutive_failures``, ``opened_at`` (Unix
        seconds, None when closed), ``retry_in_seconds`` and ``last_error``."""
        state = self.state
        return {
            "state": str(state),
            "consecutive_failures": self._consecutive_failures,
            "opened_at": self._opened_at_wall,
            "retry_in_seconds": round(self._remaining_cooldown(), 3) if state is CircuitState.OPEN else 0.0,
            "last_error": self._last_error,
        }

    def _open(self) -> None:
        self._opened_at = trio.current_time()
        self._opened_at_wall = time.time()

    def _remaining_cooldown(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.cooldown_seconds - trio.current_time())
