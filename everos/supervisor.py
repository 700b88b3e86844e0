"""Supervision of long-lived workers in the root nursery.

A worker that raises is restarted after an exponential backoff, and its crash count is reported in
the status board. A worker that crashes ``restart_limit`` times within ``restart_window_s`` is not
restarted again: :class:`WorkerCrashLoop` propagates, the root nursery is cancelled and the process
stops with a clear log line. There is no third outcome — never a silent zombie (design, "The
nursery tree"). Workers never live in Quart's ``app.nursery``, where a crash is silent
(stack notes §3).
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from everos.status import StatusBoard

__all__ = ["Supervisor", "WorkerCrashLoop"]

log = logging.getLogger("everos.supervisor")

BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 10.0


class WorkerCrashLoop(RuntimeError):
    """A worker kept crashing; the server stops rather than run without it."""


class Supervisor:
    """Starts workers into a nursery and restarts them when they crash."""

    def __init__(
        self, nursery: trio.Nursery, board: StatusBoard, *, restart_limit: int, restart_window_s: float
    ) -> None:
        self._nursery = nursery
        self._board = board
        self.restart_limit = restart_limit
        self.restart_window_s = restart_window_s

    def start(self, name: str, worker: Callable[[], Awaitable[Any]]) -> None:
        """Run ``worker()`` under supervision in the nursery. Not a checkpoint.

        ``worker`` should run until cancelled; returning normally ends it without a restart.
        """
        self._board.workers[name] = {"state": "running", "restarts": 0, "last_error": None, "last_crash_at": None}
        self._nursery.start_soon(self._supervise, name, worker, name=f"worker:{name}")

    async def _supervise(self, name: str, worker: Callable[[], Awaitable[Any]]) -> None:
        entry = self._board.workers[name]
        crashes: collections.deque[float] = collections.deque()
        backoff_s = BACKOFF_FIRST_S
        while True:
            started = trio.current_time()
            try:
                await worker()
            except Exception as exc:
                now = trio.current_time()
                if now - started > self.restart_window_s:
                    backoff_s = BACKOFF_FIRST_S  # it ran well for a while: start backing off afresh
                crashes.append(now)
                while crashes and crashes[0] < now - self.restart_window_s:
                    crashes.popleft()
                entry["restarts"] += 1
                entry["last_error"] = f"{exc.__class__.__name__}: {exc}"[:500]
                entry["last_crash_at"] = time.time()
                if len(crashes) >= self.restart_limit:
                    entry["state"] = "crashed"
                    log.critical(
                        "worker %s crashed %d times within %.0f s; stopping the server: %s",
                        name, len(crashes), self.restart_window_s, entry["last_error"], exc_info=exc,
                    )
                    raise WorkerCrashLoop(f"worker {name} keeps crashing: {entry['last_error']}") from exc
                entry["state"] = "restarting"
                log.error("worker %s crashed (restart %d in %.1f s)", name, entry["restarts"], backoff_s,
                          exc_info=exc)
                await trio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
                entry["state"] = "running"
            else:
                entry["state"] = "stopped"
                return
