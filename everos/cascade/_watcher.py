"""The watcher: markdown edits under the root reach the index queue within a debounce.

``watchfiles.awatch`` (Rust ``notify``, run by anyio in a worker thread, so it works under Trio)
reports file changes; :func:`classify_change` maps each path to the document directory it
belongs to, and a :class:`ChangeBatcher` queues a directory once no change has touched it for
``watch_debounce_ms`` (a publish or an editor save writes several files). Derived and private
places are ignored: ``.index/``, ``.tmp/``, any hidden name, ``_original/``. A change above the
document level (a category directory moved away or in) asks the scanner for a scan, because the
directories inside it are not reported one by one.

The watcher holds one thread of the default thread limiter while it waits for changes (anyio's
choice; watchfiles takes no limiter). Cancellation waits for that thread's current wait to end,
at most ``rust_timeout_ms``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import Final

import trio
import watchfiles

from everos.cascade._rows import locate_document
from everos.errors import InvalidInput, StoreBusy
from everos.knowledge._layout import KNOWLEDGE_DIRNAME, ORIGINAL_DIRNAME, md_kind

__all__ = ["TREE_CHANGED", "ChangeBatcher", "Watcher", "classify_change"]

log = logging.getLogger("everos.cascade")

TREE_CHANGED: Final = "<tree>"
""":func:`classify_change` for a change above the document level: scan the tree."""

# Rust-side grouping: changes are handed over once quiet for _STEP_MS, at most every _GROUP_MS.
_STEP_MS = 50
_GROUP_MS = 200


def classify_change(relpath: str) -> str | None:
    """What a changed path (relative to the root, ``/``-separated) means to the cascade. Pure.

    Returns the document directory for the directory itself, its ``index.md`` or a topic file;
    :data:`TREE_CHANGED` for an app, project, ``knowledge`` or category directory; None for
    anything else (hidden names, ``_original/``, other files).
    """
    path = PurePosixPath(relpath)
    parts = path.parts
    if not parts or path.is_absolute() or any(p.startswith(".") or p in ("..", ORIGINAL_DIRNAME) for p in parts):
        return None
    if len(parts) >= 3 and parts[2] != KNOWLEDGE_DIRNAME:
        return None
    if len(parts) <= 4:
        return TREE_CHANGED
    if len(parts) == 6 and md_kind(path) is None:
        return None
    if len(parts) > 6:
        return None
    doc_dir = "/".join(parts[:5])
    try:
        locate_document(doc_dir)
    except InvalidInput:
        return None
    return doc_dir


class ChangeBatcher:
    """Holds changed directories until they have been quiet for ``quiet_seconds``. Pure: times
    are passed in (Trio's clock in the watcher)."""

    def __init__(self, quiet_seconds: float) -> None:
        self.quiet_seconds = quiet_seconds
        self._last_change: dict[str, float] = {}

    def add(self, doc_dir: str, now: float) -> None:
        """A change touched ``doc_dir`` at ``now``: its quiet period starts again."""
        self._last_change[doc_dir] = now

    def due(self, now: float) -> list[str]:
        """Remove and return (sorted) the directories quiet since ``now - quiet_seconds``."""
        ready = sorted(d for d, at in self._last_change.items() if at + self.quiet_seconds <= now)
        for doc_dir in ready:
            del self._last_change[doc_dir]
        return ready

    def next_due_at(self) -> float | None:
        """When the next directory becomes due, or None when none is waiting."""
        if not self._last_change:
            return None
        return min(self._last_change.values()) + self.quiet_seconds

    def __len__(self) -> int:
        return len(self._last_change)


class Watcher:
    """Watches ``root`` and calls ``enqueue(doc_dir, "watch")`` per quiet document directory,
    ``on_tree_change()`` for changes above the document level, and ``on_watching()`` each time
    its watch is in place (at a start and a restart: what changed before was seen by nobody)."""

    def __init__(
        self,
        *,
        root: Path,
        enqueue: Callable[[str, str], Awaitable[object]],
        on_tree_change: Callable[[], None],
        debounce_ms: int,
        on_watching: Callable[[], None] = lambda: None,
        rust_timeout_ms: int = 250,
    ) -> None:
        self.root = root
        self._enqueue = enqueue
        self._on_tree_change = on_tree_change
        self._on_watching = on_watching
        self._batcher = ChangeBatcher(debounce_ms / 1000)
        self._rust_timeout_ms = rust_timeout_ms
        self._changed = trio.Event()
        self.changes_seen = 0
        self.watching = False  # true once the watch is in place

    def _relative(self, path: str) -> str | None:
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return None

    def _filter(self, change: watchfiles.Change, path: str) -> bool:
        relpath = self._relative(path)
        meaning = None if relpath is None else classify_change(relpath)
        # A directory of the tree changes by being added or removed; a modified path that high is
        # a file (an operator's log in the root, say), and rescanning the tree at each of its
        # writes would cost a walk of every document a line.
        return meaning is not None and not (meaning == TREE_CHANGED and change == watchfiles.Change.modified)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch until cancelled. ``task_status.started()`` once the watch is in place (the first
        idle wait has ended), so a test can make changes after it. A checkpoint."""
        self.watching = False
        # Events carry resolved paths (under a symlinked directory, say): compare with those.
        self.root = await trio.to_thread.run_sync(self.root.resolve)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._flush_loop)
            started = False
            stream = watchfiles.awatch(
                self.root, watch_filter=self._filter, debounce=_GROUP_MS, step=_STEP_MS,
                rust_timeout=self._rust_timeout_ms, yield_on_timeout=True, ignore_permission_denied=True,
            )
            async with contextlib.aclosing(stream):  # closed here, not whenever it is collected
                async for changes in stream:
                    if not started:
                        started = self.watching = True
                        self._on_watching()
                        task_status.started()
                    self._record(changes)

    def _record(self, changes: set[tuple[watchfiles.Change, str]]) -> None:
        now = trio.current_time()
        tree_changed = False
        for _change, path in changes:
            relpath = self._relative(path)
            meaning = None if relpath is None else classify_change(relpath)
            if meaning == TREE_CHANGED:
                tree_changed = True
            elif meaning is not None:
                self._batcher.add(meaning, now)
                self.changes_seen += 1
        if tree_changed:
            self._on_tree_change()
        if len(self._batcher):
            self._changed.set()

    async def _flush_loop(self) -> None:
        while True:
            due_at = self._batcher.next_due_at()
            if due_at is None:
                await self._changed.wait()
                self._changed = trio.Event()
                continue
            await trio.sleep_until(due_at)
            for doc_dir in self._batcher.due(trio.current_time()):
                try:
                    await self._enqueue(doc_dir, "watch")
                except StoreBusy as exc:
                    log.warning("could not queue %s (trying again): %s", doc_dir, exc.message)
                    self._batcher.add(doc_dir, trio.current_time())
