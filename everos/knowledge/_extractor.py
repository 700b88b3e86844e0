"""The extractor seam: one interface for the built-in extractor and the LLM extractor.

The ingest service holds an :class:`Extractor` and never knows which one it is. The built-in one
(:class:`BuiltinExtractor`) needs nothing but a CPU limiter (G11); the LLM one plugs in later
with the same ``extract`` signature.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, final, runtime_checkable

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
    """Headings-and-paragraphs extraction (:func:`extract_structure`) in a worker thread.

    ``cpu_limiter`` bounds how many extractions (and other CPU work sharing it) run at once (G5).
    """

    def __init__(self, cpu_limiter: trio.CapacityLimiter) -> None:
        self._cpu_limiter = cpu_limiter

    async def extract(self, source: SourceDocument, categories: Sequence[Category]) -> ExtractedDocument:
        """Run :func:`extract_structure` in a thread under the CPU limiter.

        This is a checkpoint. It waits for a limiter token, then for the thread; the event loop is
        never blocked (G5).

        **Cancellation handling:** the call returns :class:`trio.Cancelled` at once, even mid-run.
        A thread cannot be stopped (G5a): an extraction already running keeps running to its end,
        holding its limiter token until then, and its result is discarded. That is harmless: the
        extraction is pure (no files, no rows), so an abandoned run changes nothing.

        Raises:
            ExtractionEmpty: the text is empty or whitespace only.
        """
        run = functools.partial(
            extract_structure, source.text, source.title, tuple(categories), category_id=source.category_id
        )
        return await trio.to_thread.run_sync(run, limiter=self._cpu_limiter, abandon_on_cancel=True)
