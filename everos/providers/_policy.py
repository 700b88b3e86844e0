"""The one attempt policy every model endpoint uses (guarantees G3 and G4).

For one call :meth:`AttemptPolicy.call`:

* asks the endpoint's circuit breaker first (an open circuit fails at once);
* takes a slot of the caller's budget (interactive or background) for **one attempt only**; the
  slot is released before any backoff sleep, so a failing endpoint never parks slots (G4);
* runs each attempt in ``trio.fail_after(timeout_seconds)`` and the whole call, backoff sleeps
  and slot waits included, within ``call_deadline_seconds`` (G3);
* retries connect errors, attempt timeouts, connections closed mid-answer and 408/409/429/5xx,
  after an exponential backoff with jitter, or after the endpoint's ``Retry-After`` (capped at
  ``retry_backoff_max_seconds``); never retries 400/401/403/404/422 or a malformed answer;
* leaves a caller's own cancellation alone: ``trio.Cancelled`` propagates, the slot is freed and
  the breaker is given no verdict.

The arithmetic (backoff, ``Retry-After`` parsing, status classification) is plain functions.
"""

from __future__ import annotations

import email.utils
import enum
import math
import random as _random
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import httpx
import trio

from everos.metrics import MODEL_ATTEMPTS, MODEL_CALL_SECONDS, MODEL_CALLS, endpoint_kind
from everos.providers._circuit import Admission, CircuitBreaker
from everos.providers._errors import (
    CircuitOpen,
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderResponseError,
    ProviderTimeout,
)

if TYPE_CHECKING:
    from everos.config import _ProviderSettings

__all__ = [
    "AttemptPolicy",
    "Budget",
    "Budgets",
    "PriorityGate",
    "backoff_seconds",
    "is_retryable_exception",
    "is_retryable_status",
    "parse_retry_after",
    "retry_delay_seconds",
]

T = TypeVar("T")

# Statuses worth another try: request timeout, conflict (often a transient lock), rate limit.
_RETRYABLE_STATUSES = frozenset({408, 409, 429})


class _Outcome(enum.Enum):
    RETRY = "retry"  # the endpoint may do better next time
    ANSWERED = "answered"  # the endpoint is up but said no: stop, and tell the breaker it is alive
    GIVE_UP = "give_up"  # our own mistake (a bad URL): stop, no verdict for the breaker


class Budget(enum.StrEnum):
    """Which budget a call draws on. Interactive: uploads and searches a person waits for.
    Background: indexing and facts, which must never take the slot an upload needs (G4)."""

    INTERACTIVE = "interactive"
    BACKGROUND = "background"


class PriorityGate:
    """The endpoint's ``slots`` (llama-server's ``--parallel``): at most that many attempts in
    flight, and a free slot goes to a waiting interactive attempt before any background one.

    A model server with one slot queues requests first come, first served: without the gate, an
    upload's extraction sent while a backlog of background calls (facts, embeddings) is queued
    there waits for all of them. With it, the backlog waits here instead, and the extraction
    waits at most for the one call already running. Within a budget, first come, first served.
    A slot is handed straight to the next waiter, so none is lost to a cancellation.
    """

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.slots = slots
        self._free = slots
        self._lots = {Budget.INTERACTIVE: trio.lowlevel.ParkingLot(), Budget.BACKGROUND: trio.lowlevel.ParkingLot()}

    @contextlib.asynccontextmanager
    async def slot(self, budget: Budget | str) -> AsyncIterator[None]:
        """Hold one slot for the block. A checkpoint."""
        await self._acquire(Budget(budget))
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, budget: Budget) -> None:
        ahead = self._lots[Budget.INTERACTIVE] or (budget is Budget.BACKGROUND and self._lots[Budget.BACKGROUND])
        if self._free > 0 and not ahead:
            await trio.lowlevel.checkpoint_if_cancelled()
            self._free -= 1
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        await self._lots[budget].park()  # returns only with a slot handed over by _release

    def _release(self) -> None:
        for budget in (Budget.INTERACTIVE, Budget.BACKGROUND):
            if self._lots[budget]:
                self._lots[budget].unpark()
                return
        self._free += 1

    def snapshot(self) -> dict[str, int]:
        """``slots``, ``in_flight`` and the attempts ``waiting`` per budget. Not a checkpoint."""
        return {"slots": self.slots, "in_flight": self.slots - self._free,
                "waiting_interactive": len(self._lots[Budget.INTERACTIVE]),
                "waiting_background": len(self._lots[Budget.BACKGROUND])}


class Budgets:
    """Two concurrency limiters for one endpoint, ``interactive`` and ``background``, and, when
    the endpoint's ``slots`` are known, the :class:`PriorityGate` behind them (``gate``)."""

    def __init__(self, *, interactive: int, background: int, slots: int = 0) -> None:
        self.interactive = trio.CapacityLimiter(interactive)
        self.background = trio.CapacityLimiter(background)
        self.gate = PriorityGate(slots) if slots > 0 else None

    @classmethod
    def from_settings(cls, settings: _ProviderSettings) -> Budgets:
        return cls(interactive=settings.max_concurrent, background=settings.background_max_concurrent,
                   slots=getattr(settings, "slots", 0))

    def limiter(self, budget: Budget | str) -> trio.CapacityLimiter:
        """The limiter of ``budget``. Raises ValueError for an unknown budget name."""
        return self.interactive if Budget(budget) is Budget.INTERACTIVE else self.background

    @contextlib.asynccontextmanager
    async def attempt(self, budget: Budget | str) -> AsyncIterator[None]:
        """Hold what one attempt of ``budget`` needs: its budget's slot, then a slot of the gate
        (if any). A checkpoint. Raises ValueError for an unknown budget name."""
        async with self.limiter(budget):
            if self.gate is None:
                yield
            else:
                async with self.gate.slot(budget):
                    yield

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Per budget: ``in_flight`` attempts, ``limit`` and ``waiting`` tasks; ``slots``: the
        gate's (when the endpoint's slots are set). Not a checkpoint."""
        out = {}
        for budget in Budget:
            stats = self.limiter(budget).statistics()
            out[str(budget)] = {
                "in_flight": stats.borrowed_tokens,
                "limit": int(stats.total_tokens),
                "waiting": stats.tasks_waiting,
            }
        if self.gate is not None:
            out["slots"] = self.gate.snapshot()
        return out


def is_retryable_status(status: int) -> bool:
    """True for 408, 409, 429 and every 5xx; False for other statuses (400, 401, 403, 404, 422…)."""
    return status in _RETRYABLE_STATUSES or 500 <= status <= 599


def is_retryable_exception(exc: BaseException) -> bool:
    """True for transport failures another attempt may not meet: timeouts, connect/read/write
    errors and a connection closed mid-answer. False for our own mistakes (a bad URL scheme,
    a request h11 refuses to send) and everything else."""
    return isinstance(exc, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError))


def backoff_seconds(retry_number: int, *, base_seconds: float, max_seconds: float, jitter: float) -> float:
    """Sleep before retry ``retry_number`` (1 = first retry): exponential, with "equal jitter".

    The step is ``base * 2**(retry_number-1)``, capped at ``max_seconds``; the sleep is half the
    step plus ``jitter`` (in [0, 1)) times the other half, so retries from many callers spread out
    but never collapse to zero.
    """
    exponent = min(max(retry_number - 1, 0), 62)  # 2**62 already dwarfs any cap; avoids overflow
    step = min(max_seconds, base_seconds * (2.0**exponent))
    return step / 2 + (step / 2) * jitter


def retry_delay_seconds(
    retry_number: int,
    retry_after_seconds: float | None,
    *,
    base_seconds: float,
    max_seconds: float,
    jitter: float,
) -> float:
    """The endpoint's ``Retry-After`` when it sent one (capped at ``max_seconds``), else backoff."""
    if retry_after_seconds is not None:
        return min(max(retry_after_seconds, 0.0), max_seconds)
    return backoff_seconds(retry_number, base_seconds=base_seconds, max_seconds=max_seconds, jitter=jitter)


def parse_retry_after(value: str | None, *, now_epoch_seconds: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    Returns None when the header is absent or unreadable, 0.0 for a date in the past. Not capped:
    the policy caps it.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT; an offset-less one is read as such
        return None
    now = time.time() if now_epoch_seconds is None else now_epoch_seconds
    return max(when.timestamp() - now, 0.0)


class AttemptPolicy:
    """Deadlines, retries, budgets and the circuit breaker of one endpoint, applied per call.

    ``endpoint`` names it in every error (e.g. ``"llm http://127.0.0.1:8080/v1"``). ``random``
    returns the jitter in [0, 1); tests pass a constant.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        attempt_timeout_seconds: float,
        call_deadline_seconds: float,
        max_retries: int,
        backoff_base_seconds: float,
        backoff_max_seconds: float,
        budgets: Budgets,
        breaker: CircuitBreaker | None = None,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.endpoint = endpoint
        self.attempt_timeout_seconds = attempt_timeout_seconds
        self.call_deadline_seconds = call_deadline_seconds
        self.max_retries = max_retries
        self.backoff_base_seconds = backoff_base_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.budgets = budgets
        self.breaker = breaker
        self._random = random

    @classmethod
    def from_settings(
        cls, settings: _ProviderSettings, *, endpoint: str, random: Callable[[], float] = _random.random
    ) -> AttemptPolicy:
        """A policy with its own budgets and circuit breaker, from one ``[llm]``-style section."""
        return cls(
            endpoint,
            attempt_timeout_seconds=settings.timeout_seconds,
            call_deadline_seconds=settings.call_deadline_seconds,
            max_retries=settings.max_retries,
            backoff_base_seconds=settings.retry_backoff_base_seconds,
            backoff_max_seconds=settings.retry_backoff_max_seconds,
            budgets=Budgets.from_settings(settings),
            breaker=CircuitBreaker(
                endpoint,
                failure_threshold=settings.circuit_failure_threshold,
                cooldown_seconds=settings.circuit_cooldown_seconds,
            ),
            random=random,
        )

    async def call(self, attempt_fn: Callable[[], Awaitable[T]], *, budget: Budget | str,
                   attempt_timeout_seconds: float | None = None) -> T:
        """Run ``attempt_fn()`` until it returns, under this policy; return what it returned.

        ``attempt_fn`` makes one attempt. It reports failures by raising
        :class:`ProviderHTTPError` (retried when its status is), :class:`ProviderResponseError`
        (never retried), another :class:`ProviderError`, or an ``httpx`` transport error.

        This is a checkpoint and blocks for at most ``call_deadline_seconds``.

        ``attempt_timeout_seconds`` replaces the policy's for this call (``math.inf``: the attempt
        bounds its own time, as a streamed answer's idle timeout does).

        Raises:
            CircuitOpen: the endpoint's circuit is open; ``attempt_fn`` was not called.
            ProviderTimeout: attempts timed out until retries or the call deadline ran out.
            ProviderConnectionError: connections failed or closed until retries ran out.
            ProviderHTTPError: a status that is not retried, or retries ran out.
            ProviderResponseError: the answer was unusable.

        Cancellation handling: a caller's cancellation propagates as ``trio.Cancelled``; the
        attempt in flight is cancelled (an httpx request closes its connection), the budget slot
        is free when this returns, and the circuit breaker records nothing.

        Every call and attempt is counted in :mod:`everos.metrics` by endpoint kind and outcome.
        """
        kind = endpoint_kind(self.endpoint)
        started = time.perf_counter()
        outcome = "cancelled"
        try:
            result = await self._call(attempt_fn, budget=budget, kind=kind,
                                      attempt_timeout_seconds=attempt_timeout_seconds)
            outcome = "ok"
            return result
        except CircuitOpen:
            outcome = "circuit_open"
            raise
        except ProviderError:
            outcome = "failed"
            raise
        finally:
            MODEL_CALLS.labels(kind, outcome).inc()
            if outcome != "circuit_open":
                MODEL_CALL_SECONDS.labels(kind).observe(time.perf_counter() - started)

    async def _call(self, attempt_fn: Callable[[], Awaitable[T]], *, budget: Budget | str, kind: str,
                    attempt_timeout_seconds: float | None = None) -> T:
        """:meth:`call` without its accounting."""
        attempt_timeout = self.attempt_timeout_seconds if attempt_timeout_seconds is None else attempt_timeout_seconds
        Budget(budget)  # an unknown budget name raises ValueError before anything is admitted
        admission = self.breaker.admit() if self.breaker is not None else None
        verdict_given = False
        attempts = 0
        last_error: ProviderError | None = None
        try:
            with trio.move_on_after(self.call_deadline_seconds) as deadline_scope:
                while True:
                    async with self.budgets.attempt(budget):
                        attempts += 1
                        try:
                            with trio.fail_after(attempt_timeout):
                                result = await attempt_fn()
                        except (trio.TooSlowError, ProviderError, httpx.HTTPError) as exc:
                            timed_out = isinstance(exc, (trio.TooSlowError, ProviderTimeout))
                            MODEL_ATTEMPTS.labels(kind, "timeout" if timed_out else "error").inc()
                            error, outcome = self._classify(exc)
                            if outcome is _Outcome.ANSWERED:
                                verdict_given = self._answered(admission)
                            if outcome is not _Outcome.RETRY:
                                raise error.with_attempts(attempts) from None
                            last_error = error
                        else:
                            MODEL_ATTEMPTS.labels(kind, "ok").inc()
                            verdict_given = self._answered(admission)
                            return result
                    # The slot is released here, before any sleep (G4).
                    if attempts > self.max_retries:
                        break
                    delay = retry_delay_seconds(
                        attempts,
                        getattr(last_error, "retry_after_seconds", None),
                        base_seconds=self.backoff_base_seconds,
                        max_seconds=self.backoff_max_seconds,
                        jitter=self._random(),
                    )
                    if trio.current_time() + delay >= deadline_scope.deadline:
                        break  # sleeping would only end at the deadline: report the real error now
                    await trio.sleep(delay)
            if deadline_scope.cancelled_caught:
                if attempts == 0:
                    # Our own congestion, not the endpoint's fault: no verdict for the breaker.
                    raise ProviderTimeout(
                        self.endpoint,
                        f"no slot of the {Budget(budget)} budget came free within the call deadline "
                        f"of {self.call_deadline_seconds:g}s",
                        attempts=0,
                    )
                last_detail = last_error.detail if last_error is not None else "the attempt was still running"
                last_error = ProviderTimeout(
                    self.endpoint,
                    f"no answer within the call deadline of {self.call_deadline_seconds:g}s "
                    f"(last error: {last_detail})",
                )
            assert last_error is not None
            failure = last_error.with_attempts(attempts)
            if admission is not None and self.breaker is not None:
                self.breaker.record_failure(admission, failure.detail)
                verdict_given = True
            raise failure from None
        finally:
            if admission is not None and self.breaker is not None and not verdict_given:
                self.breaker.release(admission)

    def _classify(self, exc: Exception) -> tuple[ProviderError, _Outcome]:
        """What one failed attempt means for the call."""
        if isinstance(exc, trio.TooSlowError):
            detail = f"no complete answer within the attempt timeout of {self.attempt_timeout_seconds:g}s"
            return ProviderTimeout(self.endpoint, detail), _Outcome.RETRY
        if isinstance(exc, ProviderHTTPError):
            return exc, _Outcome.RETRY if is_retryable_status(exc.status) else _Outcome.ANSWERED
        if isinstance(exc, ProviderResponseError):
            return exc, _Outcome.ANSWERED
        if isinstance(exc, ProviderError):
            return exc, _Outcome.RETRY
        assert isinstance(exc, httpx.HTTPError)
        error = ProviderConnectionError(self.endpoint, _describe(exc))
        return error, _Outcome.RETRY if is_retryable_exception(exc) else _Outcome.GIVE_UP

    def _answered(self, admission: Admission | None) -> bool:
        if admission is not None and self.breaker is not None:
            self.breaker.record_success(admission)
        return True


def _describe(exc: httpx.HTTPError) -> str:
    name = type(exc).__name__
    text = str(exc)
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"connection closed before a complete answer ({name}: {text})" if text else f"connection closed ({name})"
    return f"{name}: {text}" if text else name
