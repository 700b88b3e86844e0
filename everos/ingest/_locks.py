"""One lock per document, so that the writers of one document never interleave.

Publishing an extraction, PATCH, DELETE and the cascade's row writes of a document each hold its
lock (``async with locks.hold(doc_id):``). The wiring creates one :class:`DocumentLocks` per
process and gives it to ingest and to the cascade. A lock not free within ``LOCK_TIMEOUT_S`` is
:class:`~everos.errors.StoreBusy` (G3: even waiting for a lock has a deadline).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import trio

from everos.errors import StoreBusy

__all__ = ["LOCK_TIMEOUT_S", "DocumentLocks"]

LOCK_TIMEOUT_S = 30.0


class _Entry:
    """A document's lock and how many tasks hold it or wait for it."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = trio.Lock()
        self.users = 0


class DocumentLocks:
    """The per-document locks of one process. A lock exists while some task holds or awaits it."""

    def __init__(self, timeout_s: float = LOCK_TIMEOUT_S) -> None:
        self._timeout_s = timeout_s
        self._entries: dict[str, _Entry] = {}

    @contextlib.asynccontextmanager
    async def hold(self, doc_id: str) -> AsyncIterator[None]:
        """Hold ``doc_id``'s lock for the body. A checkpoint.

        Raises:
            StoreBusy: the lock was not free within ``timeout_s``; the body did not run.
        """
        entry = self._entries.setdefault(doc_id, _Entry())
        entry.users += 1
        try:
            try:
                with trio.fail_after(self._timeout_s):
                    await entry.lock.acquire()
            except trio.TooSlowError:
                raise StoreBusy(f"document {doc_id} is busy; try again", retry_after_s=5) from None
            try:
                yield
            finally:
                entry.lock.release()
        finally:
            entry.users -= 1
            if not entry.users:
                del self._entries[doc_id]
