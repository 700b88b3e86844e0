"""What every part of ingest works with: the store, the queue, the thread budgets, the cascade.

:class:`IngestContext` is built once when the service opens and handed to each part (intake,
workers, documents, categories, idempotency), so no part reaches into another for them; the
conversion worker processes (:class:`~everos.workers.CpuWorkers`) are one of them.
:class:`JobWatch` wakes the tasks that wait for a job (an upload's sync wait) when a worker settles
it or a DELETE removes it. :class:`IndexFeed` is what ingest needs of the cascade; ingest does not
import the cascade (a sibling in the same layer): the wiring passes the cascade in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import trio
from trio_util import AsyncValue

from everos.config import Config
from everos.knowledge._fingerprint import WrittenFiles
from everos.runtime import Limiters
from everos.store import Database, JobStatus, LeasedQueue
from everos.workers import CpuWorkers

__all__ = ["INBOX_RELPATH", "INGEST_TABLE", "TERMINAL", "IndexFeed", "IngestContext", "JobWatch", "job_id_for"]

T = TypeVar("T")

INGEST_TABLE = "ingest_jobs"
INBOX_RELPATH = Path(".index") / "inbox"
TERMINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.DEAD)


def job_id_for(doc_id: str) -> str:
    """The task id of a document's ingest job: one row per document, ``t_`` + its hex."""
    return "t_" + doc_id[2:]


class IndexFeed(Protocol):
    """The cascade as ingest sees it (:class:`~everos.cascade.CascadeService` is one)."""

    async def enqueue_document(self, doc_dir: Path, *, written: WrittenFiles | None = None) -> Any:
        """Queue a document directory that changed (published, moved or deleted) for indexing;
        ``written``: the receipt of the files a writer just published there, its rows saved."""

    async def index_states(self, doc_ids: Iterable[str]) -> dict[str, dict[str, str | None]]:
        """``{doc_id: {"index_status", "index_error"}}`` for every given id."""

    async def documents_ahead(self, doc_ids: Iterable[str]) -> dict[str, int]:
        """``{doc_id: rows}``: for each given document waiting for its index, the rows indexed
        before its own."""

    def index_lag(self) -> dict[str, int] | None:
        """``{"documents": waiting, "bound": lag_documents}`` while the index lags, else None.
        Not a checkpoint (read from memory)."""


class JobWatch:
    """Wakes the tasks waiting for a job when it settles, in this process.

    Each watched job has an :class:`~trio_util.AsyncValue` counting its settlements; a waiter
    notes the count before it reads the job, so a settlement between its read and its wait is
    not missed. A job is watched only while some task waits for it.
    """

    def __init__(self) -> None:
        self._settled: dict[str, AsyncValue[int]] = {}
        self._waiters: dict[str, int] = {}

    def settled(self, job_id: str) -> None:
        """The job changed (settled, requeued or deleted): wake its waiters. Not a checkpoint."""
        count = self._settled.get(job_id)
        if count is not None:
            count.value += 1

    def watch(self, job_id: str) -> _Watch:
        """A watch on ``job_id`` for one waiter: ``with watch: ... await watch.next(timeout)``."""
        return _Watch(self, job_id)

    def _enter(self, job_id: str) -> AsyncValue[int]:
        self._waiters[job_id] = self._waiters.get(job_id, 0) + 1
        return self._settled.setdefault(job_id, AsyncValue(0))

    def _exit(self, job_id: str) -> None:
        self._waiters[job_id] -= 1
        if not self._waiters[job_id]:
            del self._waiters[job_id], self._settled[job_id]


class _Watch:
    def __init__(self, jobs: JobWatch, job_id: str) -> None:
        self._jobs, self._job_id = jobs, job_id

    def __enter__(self) -> _Watch:
        self._count = self._jobs._enter(self._job_id)
        self._seen = self._count.value
        return self

    def __exit__(self, *exc: object) -> None:
        self._jobs._exit(self._job_id)

    async def next(self, timeout_s: float) -> None:
        """Return once the job settled since the last call (or the watch began), or after
        ``timeout_s``. A checkpoint."""
        with trio.move_on_after(timeout_s):
            await self._count.wait_value(lambda count: count > self._seen)
        self._seen = self._count.value


@dataclasses.dataclass(frozen=True)
class IngestContext:
    """The shared state of ingest's parts, complete from the moment the service is constructed."""

    config: Config
    root: Path
    limiters: Limiters
    db: Database
    queue: LeasedQueue
    jobs: JobWatch
    clock: Callable[[], float]
    # The cascade: told of every document directory that changed, and asked for index states.
    # None when no cascade runs (ingest alone): nothing is told, and states are unknown.
    index: IndexFeed | None = None
    # The worker processes that convert PDF, Office, HTML and EPUB uploads (G13). None when the
    # service runs without them: those formats are then refused (415) at accept.
    cpu_workers: CpuWorkers | None = None

    @property
    def inbox(self) -> Path:
        return self.root / INBOX_RELPATH

    async def files(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a thread under the files budget (G5)."""
        return await trio.to_thread.run_sync(fn, *args, limiter=self.limiters.files)

    async def cpu(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a thread under the cpu budget (G5)."""
        return await trio.to_thread.run_sync(fn, *args, limiter=self.limiters.cpu)

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    async def changed(self, *doc_dirs: Path | None, written: WrittenFiles | None = None) -> None:
        """Tell the cascade which document directories changed (each once, moves included);
        ``written`` is the receipt of the files just published in the first, its rows saved."""
        if self.index is None:
            return
        for index, doc_dir in enumerate(dict.fromkeys(d for d in doc_dirs if d is not None)):
            if index == 0 and written is not None:
                await self.index.enqueue_document(doc_dir, written=written)
            else:
                await self.index.enqueue_document(doc_dir)
