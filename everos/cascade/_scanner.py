"""The scanner: every ``scan_interval_seconds``, reconcile the markdown on disk with what the
cascade last saw, and queue only what changed.

A scan looks into a directory only when its mtime moved (:class:`~everos.cascade._snapshot.DocumentDirs`):
on a tree that did not change it costs a stat per category and per document directory, not a
listing of every document and a stat of every file in it (at 120,000 files that was a fifth of
the server's Python time, every 30 s). That finds every document added, removed or renamed and
every file added, removed or renamed in one; a file rewritten in place changes no directory's
mtime, and the watcher reports it. Every ``full_scan_interval_seconds`` (and at the first scan of
a process) a full scan lists every directory and stats every file, for the in-place edits the
watcher missed (it was down, or ``[cascade] watch`` is off): those reach the index within that
interval instead of ``scan_interval_seconds``.

It compares each document directory's fingerprint (names, sizes and modification times of its
markdown files) with the fingerprint its last attempt recorded, so it never re-queues work
already done or in hand. EverOS 1.1 re-queued every row not ``done`` on each sweep, ``processing``
ones included, which reset their retries and livelocked the cascade (reference §8.2 item 3). Here
(:func:`plan_scan`):

* a row queued already is left alone;
* a row in flight is left alone unless its files changed after its lease started (then it is
  marked to run again once the attempt ends, as the watcher would);
* a dead or failed row is queued again only when its files changed since its last attempt saw
  them, so it never loops;
* a directory whose state says it was seen gone is not queued again until it reappears.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import trio
from trio_util import wait_any

from everos.cascade._ledger import IndexLedger
from everos.cascade._rows import GONE
from everos.cascade._snapshot import DocumentDirs
from everos.knowledge._fingerprint import DirStat
from everos.errors import StoreBusy
from everos.store import Job, JobStatus

__all__ = ["Scanner", "plan_scan"]

log = logging.getLogger("everos.cascade")

# Scans asked for by the watcher (a category moved away, say) run at most this often.
MIN_SCAN_GAP_S = 1.0


def plan_scan(
    disk: Mapping[str, DirStat | None], seen: Mapping[str, str | None], rows: Mapping[str, Job]
) -> list[tuple[str, str]]:
    """The directories to queue, with a reason, sorted by path. Pure.

    ``disk`` maps each document directory found to its :class:`DirStat` (None: no ``index.md``,
    which counts as gone); ``seen`` maps each directory the cascade has state for to the
    fingerprint its last attempt recorded (:data:`GONE`, or None before any attempt); ``rows``
    holds the queue rows that are queued, running, dead or failed, by key.
    """
    plan = []
    for doc_dir in sorted(set(disk) | set(seen)):
        stat = disk.get(doc_dir)
        current = GONE if stat is None else stat.fingerprint
        if doc_dir not in seen and stat is None:
            continue  # gone, and never known: nothing to undo
        last = seen.get(doc_dir)
        if current == last:
            continue
        reason = "gone" if stat is None else ("new" if doc_dir not in seen else "changed")
        job = rows.get(doc_dir)
        if job is None:
            plan.append((doc_dir, reason))
        elif job.status is JobStatus.QUEUED:
            continue
        elif job.status is JobStatus.RUNNING:
            # What the attempt reads is at least as new as its lease: only a later change counts.
            if stat is not None and job.started_at is not None and stat.max_mtime > job.started_at:
                plan.append((doc_dir, "changed during attempt"))
        elif last is None:
            # Dead before any attempt recorded what it saw: only a change after it died counts.
            if stat is not None and stat.max_mtime > (job.finished_at or job.updated_at):
                plan.append((doc_dir, reason))
        else:
            plan.append((doc_dir, reason))
    return plan


class Scanner:
    """Runs :func:`plan_scan` over ``root`` with what the ``ledger`` knows (fingerprints seen,
    rows in hand) and hands each directory to ``enqueue(doc_dir, reason)``; the walk runs in a
    thread under ``files_limiter``, fully every ``full_scan_interval_seconds`` (Trio's clock) and
    else from the directories whose mtime moved. ``clock`` (seconds since the epoch) times
    ``last_scan_at`` and tells the walk when a directory's mtime is settled."""

    def __init__(
        self,
        *,
        root: Path,
        ledger: IndexLedger,
        enqueue: Callable[[str, str], Awaitable[object]],
        files_limiter: trio.CapacityLimiter,
        interval_seconds: float,
        full_scan_interval_seconds: float = math.inf,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = root
        self._ledger = ledger
        self._enqueue = enqueue
        self._files_limiter = files_limiter
        self.interval_seconds = interval_seconds
        self.full_scan_interval_seconds = full_scan_interval_seconds
        self._clock = clock
        self._tree = DocumentDirs(root, clock=clock)
        self._walking = trio.Lock()  # the tree's memory takes one walk at a time
        self._requested = trio.Event()
        self._last_full_scan_at = -math.inf  # Trio's clock
        self._full_needed = True  # no full scan yet
        self.last_scan_at: float | None = None
        self.last_scan_full = False

    def request_scan(self) -> None:
        """Ask for a scan soon (within :data:`MIN_SCAN_GAP_S`). Not a checkpoint."""
        self._requested.set()

    def watch_started(self) -> None:
        """The watcher's watch is in place (again): an in-place edit before it was reported by
        nobody, so the next scan is full, and soon. Not a checkpoint."""
        self._full_needed = True
        self._requested.set()

    async def run(self) -> None:
        """Scan now, then every ``interval_seconds`` or when asked, forever."""
        while True:
            self._requested = trio.Event()
            try:
                await self.scan_once()
            except StoreBusy as exc:
                log.warning("cascade scan skipped: %s", exc.message)
            await trio.sleep(MIN_SCAN_GAP_S)
            # The next scan: when one is asked for, or when the interval is over.
            await wait_any(self._requested.wait,
                           functools.partial(trio.sleep, max(0.0, self.interval_seconds - MIN_SCAN_GAP_S)))

    async def scan_once(self, *, full: bool | None = None) -> list[tuple[str, str]]:
        """One reconciliation; returns what it queued. ``full``: list every directory and stat
        every file (None: when ``full_scan_interval_seconds`` passed since the last full scan, none
        ran yet, or the watch started since). A checkpoint; the walk runs in a thread (cancelled,
        it waits for the walk)."""
        async with self._walking:
            now = trio.current_time()
            if full is None:
                full = self._full_needed or now - self._last_full_scan_at >= self.full_scan_interval_seconds
            if full:
                self._full_needed = False  # before the walk: a watch started during it asks again
            try:
                disk = await trio.to_thread.run_sync(functools.partial(self._tree.walk, full=full),
                                                     limiter=self._files_limiter)
            except BaseException:
                self._full_needed = self._full_needed or full
                raise
            if full:
                self._last_full_scan_at = now
            self.last_scan_full = full
        seen, rows = await self._ledger.scan_view()
        plan = plan_scan(disk, seen, rows)
        for doc_dir, reason in plan:
            await self._enqueue(doc_dir, reason)
        if plan:
            log.info("scanner queued %d document directories", len(plan))
        self.last_scan_at = self._clock()
        return plan
