"""The extractor seam: one interface for the built-in extractor and the LLM extractor.

The ingest service holds an :class:`Extractor` and never knows which one it is. The built-in one
(:class:`BuiltinExtractor`) needs nothing but a CPU limiter (G11); the LLM one plugs in later
with the same ``extract`` signature.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, final, runtime_checkable

import trio

from everos.knowledge._builtin_extractor import extract_structure
from everos.knowledge._models import ExtractedDocument
from everos.knowledge._taxonomy import Category

__all__ = ["BuiltinExtractor", "Extractor", "SourceDocument"]


@dataclass(frozen=True)
class SourceDocument:
    """A decoded upload, ready for extraction.

    ``category_id`` is the caller's choice, or ``None`` to let the extractor classify.
    """

    doc_id: str
    title: str
    text: str
    filename: str | None = None
    source_type: str | None = None
    category_id: str | None = None


@runtime_checkable
class Extractor(Protocol):
    """Turns a :class:`SourceDocument` into an :class:`ExtractedDocument`."""

    async def extract(self, source: SourceDocument, categories: Sequence[Category]) -> ExtractedDocument:
        """Extract the topic tree of ``source``, classifying against ``categories``.

        Implementations are checkpoints, bound every outside call with a deadline (G3) and take
        their limiters per attempt (G4). Cancelling the call must leave nothing behind.

        Raises:
            ExtractionEmpty: the document yields no topics.
        """
        ...


@final
class BuiltinExtractor:
    """Headings-and-paragraphs extraction (:func:`extract_structure`), in a CPU worker process
    when ``workers`` (a :class:`~everos.workers.CpuWorkers`) are given, else in a worker thread.

    ``cpu_limiter`` bounds how many thread extractions (and other CPU work sharing it) run at once
    (G5). In a worker process each extraction has a deadline (``deadline_s``) and a memory limit
    (``memory_mb``) and is killed past them (G13): a pathological text costs a worker, never a
    thread that cannot be stopped, and never the event loop's GIL.
    """

    def __init__(self, cpu_limiter: trio.CapacityLimiter, *, workers: Any | None = None, deadline_s: float = 60.0,
                 memory_mb: int = 2048) -> None:
        self._cpu_limiter = cpu_limiter
        self._workers = workers
        self._deadline_s = deadline_s
        self._memory_mb = memory_mb

    async def extract(self, source: SourceDocument, categories: Sequence[Category]) -> ExtractedDocument:
        """Run :func:`extract_structure` in a worker process (or a thread under the CPU limiter).

        This is a checkpoint; the event loop is never blocked (G5).

        **Cancellation handling:** returns :class:`trio.Cancelled` at once. In a worker process the
        extraction is killed with its worker (which the pool replaces). In a thread it cannot be
        stopped (G5a): it runs to its end, holding its limiter token, and its result is discarded;
        harmless, as the extraction is pure (no files, no rows).

        Raises:
            ExtractionEmpty: the text is empty or whitespace only.
            WorkerTimeout, WorkerOutOfMemory, WorkerCrashed: the extraction cost its worker process.
        """
        if self._workers is not None:
            return await self._workers.run_cpu(
                _extract, source.text, source.title, tuple(categories), source.category_id,
                deadline_s=self._deadline_s, memory_mb=self._memory_mb, task=f"extracting {source.title!r}")
        run = functools.partial(
            extract_structure, source.text, source.title, tuple(categories), category_id=source.category_id
        )
        return await trio.to_thread.run_sync(run, limiter=self._cpu_limiter, abandon_on_cancel=True)


def _extract(text: str, title: str, categories: tuple[Category, ...], category_id: str | None) -> ExtractedDocument:
    """:func:`extract_structure` with positional arguments, for a worker process."""
    return extract_structure(text, title, categories, category_id=category_id)
