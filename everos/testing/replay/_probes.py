"""What a run watches while it loads the server: :class:`HealthProbe` hits ``/health`` on a fixed
interval (G2), :class:`SearchWatch` looks each acknowledged document up by its corpus word until a
keyword search finds it (G6).

The probe runs in a process of its own, as a watchdog would: the harness's event loop also serves
the fake model and the searches, and a probe on that loop timed the harness's own steps as the
server's latency (20 to 56 ms steps); a probe in a thread still waited for the harness's GIL at
each blocking call (up to a switch interval, 5 ms, each time).
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import time
from multiprocessing.connection import Connection
from typing import Any

import httpx
import trio

from everos.allocator import freeze_startup_heap
from everos.logs import utc_stamp
from everos.testing.replay._load import API
from everos.testing.replay._report import percentiles

__all__ = ["HealthProbe", "SearchWatch"]


class HealthProbe:
    """Hits /health every ``interval_s`` from a process of its own (see the module's docstring);
    a probe fails when it errors or exceeds ``timeout_s``. ``paused`` stops probing (while the
    run restarts the server) until it is set false again."""

    def __init__(self, url: str, interval_s: float, timeout_s: float) -> None:
        self.url, self.interval_s, self.timeout_s = url, interval_s, timeout_s
        self.latencies: list[float] = []
        self.failures = 0
        self.longest_outage_s = 0.0
        # The server's own view: the most event-loop lag its /health reported (over its last minute).
        self.loop_lag_ms_max = 0.0
        self._slowest: list[tuple[float, float]] = []  # (latency, seconds since the run started)
        self._control: Connection | None = None
        self._outage_started: float | None = None
        self._began = time.monotonic()
        self._began_wall = time.time()  # so a slow probe can be found in the server's log
        # [from, until] of each pause: a probe the process had started when it heard of one
        # went to a server that was meant to be down, and is not counted.
        self._pauses: list[list[float]] = []

    @property
    def paused(self) -> bool:
        return bool(self._pauses) and self._pauses[-1][1] == math.inf

    @paused.setter
    def paused(self, value: bool) -> None:
        if value == self.paused:
            return
        if value:
            self._pauses.append([time.monotonic(), math.inf])
        else:
            self._pauses[-1][1] = time.monotonic()
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.send("pause" if value else "resume")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Probe until cancelled; ``task_status.started()`` once the probing process is up."""
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        ours, theirs = context.Pipe()
        process = context.Process(target=_probe_forever, args=(self.url, self.interval_s, self.timeout_s, theirs),
                                  name="everos-replay-health-probe", daemon=True)
        process.start()
        theirs.close()
        try:
            ready = await trio.to_thread.run_sync(ours.recv, abandon_on_cancel=True)
            assert ready == "ready", ready
            self._control = ours
            if self.paused:
                ours.send("pause")
            task_status.started()
            await trio.to_thread.run_sync(self._collect, ours, abandon_on_cancel=True)
        finally:
            self._control = None
            with contextlib.suppress(OSError):
                ours.send("stop")
            process.join(timeout=self.interval_s + self.timeout_s + 1.0)
            if process.is_alive():
                process.kill()
                process.join()
            ours.close()

    def _collect(self, conn: Connection) -> None:
        """Take in what the probing process measured, until it ends (in a thread)."""
        while True:
            try:
                ok, elapsed, started, lag_ms = conn.recv()
            except (EOFError, OSError):
                return
            if any(since <= started + elapsed and started <= until for since, until in self._pauses):
                continue
            at = started - self._began
            if ok:
                self.latencies.append(elapsed)
                self._note(lag_ms, elapsed, at)
                if self._outage_started is not None:
                    self.longest_outage_s = max(self.longest_outage_s, at - self._outage_started)
                    self._outage_started = None
            else:
                self.failures += 1
                if self._outage_started is None:
                    self._outage_started = at

    def _note(self, lag_ms: float | None, elapsed: float, at: float) -> None:
        if lag_ms is not None:
            self.loop_lag_ms_max = max(self.loop_lag_ms_max, lag_ms)
        self._slowest = sorted([*self._slowest, (elapsed, at)], reverse=True)[:5]

    def report(self) -> dict[str, Any]:
        return {"probes": len(self.latencies) + self.failures, "failures": self.failures,
                "latency_ms": percentiles(self.latencies), "longest_outage_s": round(self.longest_outage_s, 2),
                "server_loop_lag_ms_max": round(self.loop_lag_ms_max, 1),
                "slowest": [{"ms": round(ms * 1000, 1), "at_s": round(at, 1), "at": utc_stamp(self._began_wall + at)}
                            for ms, at in self._slowest]}


class SearchWatch:
    """Looks each acknowledged document up by its corpus word (keyword search, in the run's
    scope) every ``interval_s`` until it is found, and keeps how long after its acknowledgement
    that was."""

    def __init__(self, url: str, scope: dict[str, str], interval_s: float = 0.5) -> None:
        self.url, self.scope, self.interval_s = url, scope, interval_s
        self.acknowledged: dict[str, tuple[str, float]] = {}  # doc_id -> (word, when acknowledged)
        self.found_after_s: dict[str, float] = {}
        self._client: httpx.AsyncClient | None = None  # run's, while it runs

    def add(self, doc_id: str, word: str) -> None:
        self.acknowledged.setdefault(doc_id, (word, time.monotonic()))

    async def run(self) -> None:
        """Look every ``interval_s`` until cancelled, on one client (a new client costs the
        harness's loop tens of milliseconds: httpx builds an SSL context for each)."""
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
            self._client = client
            try:
                while True:
                    await self.check()
                    await trio.sleep(self.interval_s)
            finally:
                self._client = None

    async def check(self) -> None:
        """One look-up of every document not found yet (errors are a miss, tried again later)."""
        if self._client is not None:
            await self._check(self._client)
            return
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
            await self._check(client)

    async def _check(self, client: httpx.AsyncClient) -> None:
        for doc_id, (word, acknowledged_at) in list(self.acknowledged.items()):
            if doc_id in self.found_after_s:
                continue
            with contextlib.suppress(httpx.HTTPError, KeyError, TypeError, ValueError):
                response = await client.post(f"{API}/search", json={
                    "query": word, "method": "keyword", "top_k": 5, **self.scope})
                hits = response.json()["data"]["hits"]
                if any((hit.get("document") or {}).get("doc_id") == doc_id for hit in hits):
                    self.found_after_s[doc_id] = time.monotonic() - acknowledged_at

    def missing(self) -> list[str]:
        return sorted(set(self.acknowledged) - set(self.found_after_s))

    def report(self) -> dict[str, Any]:
        return {"searchable": len(self.found_after_s), "not_searchable": len(self.missing()),
                "searchable_after_ms": percentiles(list(self.found_after_s.values()))}


def _probe_forever(url: str, interval_s: float, timeout_s: float, conn: Connection) -> None:
    """The probing process: one GET /health every ``interval_s``, each result sent as ``(ok,
    seconds, when it started (``time.monotonic``, the same clock in every process), the loop lag
    the server reported)``; ``"pause"``, ``"resume"`` and ``"stop"`` come the other way."""
    # What the import of this package left (the fake model, the web stack) is kept for the
    # process's life: frozen, so no full collection walks it between two probes (one of 50 ms,
    # about 300 s in, was a run's slowest probe).
    freeze_startup_heap()
    paused = False
    with httpx.Client(base_url=url, timeout=timeout_s, trust_env=False) as client:
        conn.send("ready")
        while True:
            if not paused:
                started = time.monotonic()
                lag_ms = None
                try:
                    response = client.get("/health")
                    ok = response.status_code == 200
                    with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
                        lag_ms = float(response.json()["loop_lag_ms"]["max"])
                except httpx.HTTPError:
                    ok = False
                elapsed = time.monotonic() - started
                try:
                    conn.send((ok and elapsed <= timeout_s, elapsed, started, lag_ms))
                except OSError:
                    return
            try:
                if conn.poll(interval_s):
                    command = conn.recv()
                    if command == "stop":
                        return
                    paused = command == "pause"
            except (EOFError, OSError):
                return
