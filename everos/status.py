"""The in-memory status snapshot that ``/health`` answers from (guarantee G2).

Nothing here awaits, locks or does I/O: owners *push* their state into the board (the lag probe,
the supervisor, the queues' monitors), and ``/health`` only reads it. A block that needs a database
query is refreshed by a background task and stored here, never computed on the request path.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from typing import Any

import trio

from everos import __version__

__all__ = ["LoopLagProbe", "StatusBoard"]

STATES = ("starting", "ready", "stopping")


class StatusBoard:
    """State of one server process, readable without a checkpoint.

    ``blocks`` maps a name to a zero-argument callable returning a JSON-able dict; each callable
    must be cheap and synchronous (read attributes, no I/O). They are the readiness blocks later
    layers add (queues, providers, cascade).
    """

    def __init__(self) -> None:
        self.state = "starting"
        self.started_at_wall = time.time()
        self._started_at = time.monotonic()
        self.lag_samples: collections.deque[tuple[float, float]] = collections.deque(maxlen=4096)
        self.workers: dict[str, dict[str, Any]] = {}
        self.blocks: dict[str, Callable[[], dict[str, Any]]] = {}
        self.unhealthy_reasons: dict[str, str] = {}

    def set_state(self, state: str) -> None:
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        self.state = state

    def record_lag(self, lag_s: float) -> None:
        self.lag_samples.append((time.monotonic(), lag_s))

    def loop_lag_ms(self, window_s: float = 60.0) -> dict[str, float]:
        """p50 and max event-loop lag over the last ``window_s`` seconds, in milliseconds."""
        cutoff = time.monotonic() - window_s
        recent = sorted(lag for at, lag in self.lag_samples if at >= cutoff)
        if not recent:
            return {"p50": 0.0, "max": 0.0, "samples": 0}
        p50 = recent[max(0, math.ceil(len(recent) / 2) - 1)]
        return {"p50": round(p50 * 1000, 3), "max": round(recent[-1] * 1000, 3), "samples": len(recent)}

    def snapshot(self) -> dict[str, Any]:
        """The ``/health`` body: EverOS's ``{"status": "ok"}`` plus everos's readiness blocks."""
        body: dict[str, Any] = {
            "status": "ok",
            "version": __version__,
            "state": self.state,
            "uptime_s": round(time.monotonic() - self._started_at, 3),
            "loop_lag_ms": self.loop_lag_ms(),
            "workers": self.workers,
        }
        reasons = dict(self.unhealthy_reasons)
        for name, block in self.blocks.items():
            try:
                value = block()
            except Exception as exc:  # a broken block must not break /health
                value = {"healthy": False, "reasons": [f"status block failed: {exc.__class__.__name__}"]}
            body[name] = value
            if isinstance(value, dict) and value.get("healthy") is False:
                for reason in value.get("reasons") or [f"{name} unhealthy"]:
                    reasons[f"{name}"] = str(reason)
        body["healthy"] = not reasons
        body["reasons"] = sorted(f"{k}: {v}" for k, v in reasons.items())
        return body


class LoopLagProbe:
    """Measures how late the event loop wakes a sleeping task (guarantee G5's proof).

    A blocked loop shows up as lag: the probe asks to sleep ``interval_s`` and records how much
    longer it actually took, on the board (``/health``'s window) and through ``observe`` (the
    server passes :data:`everos.metrics.LOOP_LAG`'s, for ``/metrics``; this module imports no
    metrics, so the dependency runs one way: metrics reads the board).
    """

    def __init__(self, board: StatusBoard, interval_s: float, *, observe: Callable[[float], None]) -> None:
        self.board = board
        self.interval_s = interval_s
        self.observe = observe

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled. A checkpoint every ``interval_s``."""
        task_status.started()
        while True:
            before = time.perf_counter()
            await trio.sleep(self.interval_s)
            lag = max(0.0, time.perf_counter() - before - self.interval_s)
            self.board.record_lag(lag)
            self.observe(lag)
