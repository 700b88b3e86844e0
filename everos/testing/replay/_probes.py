"""What a run watches while it loads the server: :class:`HealthProbe` hits ``/health`` on a fixed
interval (G2), :class:`SearchWatch` looks each acknowledged document up by its corpus word until a
keyword search finds it (G6).

The probe runs in a thread of its own, as a watchdog runs in a process of its own: the harness's
event loop also serves the fake model and the searches, and a probe on that loop would time the
harness's own steps as the server's latency (measured: 20 to 56 ms steps of the harness).
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import httpx
import trio

from everos.testing.replay._load import API
from everos.testing.replay._report import percentiles

__all__ = ["HealthProbe", "SearchWatch"]


class HealthProbe:
    """Hits /health every ``interval_s``; a probe fails when it errors or exceeds ``timeout_s``."""

    def __init__(self, url: str, interval_s: float, timeout_s: float) -> None:
        self.url, self.interval_s, self.timeout_s = url, interval_s, timeout_s
        self.latencies: list[float] = []
        self.failures = 0
        self.longest_outage_s = 0.0
        self.paused = False
        # The server's own view: the most event-loop lag its /health reported (over its last minute).
        self.loop_lag_ms_max = 0.0
        self._slowest: list[tuple[float, float]] = []  # (latency, seconds since the run started)

    async def run(self) -> None:
        """Probe until cancelled, from a thread (see the module's docstring)."""
        stop = threading.Event()
        try:
            await trio.to_thread.run_sync(self._probe_until, stop, abandon_on_cancel=True)
        finally:
            stop.set()  # the thread ends within one interval (or one timeout)

    def _probe_until(self, stop: threading.Event) -> None:
        outage_started: float | None = None
        began = time.monotonic()
        with httpx.Client(base_url=self.url, timeout=self.timeout_s, trust_env=False) as client:
            while not stop.is_set():
                if not self.paused:
                    started = time.monotonic()
                    try:
                        response = client.get("/health")
                        ok = response.status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    elapsed = time.monotonic() - started
                    if stop.is_set():
                        return  # the run is over: the server may be gone already
                    if ok and elapsed <= self.timeout_s:
                        self.latencies.append(elapsed)
                        self._note(response, elapsed, started - began)
                        if outage_started is not None:
                            self.longest_outage_s = max(self.longest_outage_s, started - outage_started)
                            outage_started = None
                    else:
                        self.failures += 1
                        outage_started = outage_started or started
                stop.wait(self.interval_s)

    def _note(self, response: httpx.Response, elapsed: float, at: float) -> None:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            self.loop_lag_ms_max = max(self.loop_lag_ms_max, float(response.json()["loop_lag_ms"]["max"]))
        self._slowest = sorted([*self._slowest, (elapsed, at)], reverse=True)[:5]

    def report(self) -> dict[str, Any]:
        return {"probes": len(self.latencies) + self.failures, "failures": self.failures,
                "latency_ms": percentiles(self.latencies), "longest_outage_s": round(self.longest_outage_s, 2),
                "server_loop_lag_ms_max": round(self.loop_lag_ms_max, 1),
                "slowest": [{"ms": round(ms * 1000, 1), "at_s": round(at, 1)} for ms, at in self._slowest]}


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
