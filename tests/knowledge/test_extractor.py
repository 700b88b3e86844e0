"""The extractor seam: the built-in extractor runs in a thread under the CPU limiter (G5, G5a, G11)."""

from __future__ import annotations

import threading

import pytest
import trio

from everos.errors import ExtractionEmpty
from everos.knowledge import (
    DEFAULT_CATEGORIES,
    BuiltinExtractor,
    ExtractedDocument,
    Extractor,
    SourceDocument,
    TopicNode,
    _extractor,
    extract_structure,
)

SOURCE = SourceDocument(doc_id="d_0123456789ab", title="Guide", text="# A\nalpha\n# B\nbeta\n", filename="g.md")


def test_builtin_extractor_is_an_extractor() -> None:
    assert isinstance(BuiltinExtractor(trio.CapacityLimiter(1)), Extractor)


async def test_extract_matches_extract_structure() -> None:
    result = await BuiltinExtractor(trio.CapacityLimiter(1)).extract(SOURCE, DEFAULT_CATEGORIES)
    assert result == extract_structure(SOURCE.text, SOURCE.title, DEFAULT_CATEGORIES)


async def test_extract_passes_the_chosen_category() -> None:
    source = SourceDocument("d_0123456789ab", "Guide", "text", category_id="Legal")
    result = await BuiltinExtractor(trio.CapacityLimiter(1)).extract(source, DEFAULT_CATEGORIES)
    assert result.category_id == "Legal"


async def test_extract_runs_off_the_event_loop_under_the_limiter(monkeypatch: pytest.MonkeyPatch) -> None:
    """G5: the work runs in a worker thread holding a token of the CPU limiter."""
    limiter = trio.CapacityLimiter(1)
    seen: dict[str, object] = {}

    def record(*args: object, **kwargs: object) -> ExtractedDocument:
        seen["thread"] = threading.get_ident()
        seen["borrowed"] = limiter.borrowed_tokens
        return ExtractedDocument("en", "s", (), "Others", TopicNode("Guide", "s", ""))

    monkeypatch.setattr(_extractor, "extract_structure", record)
    await BuiltinExtractor(limiter).extract(SOURCE, DEFAULT_CATEGORIES)
    assert seen == {"thread": seen["thread"], "borrowed": 1}
    assert seen["thread"] != threading.get_ident()
    assert limiter.borrowed_tokens == 0


async def test_extraction_empty_propagates() -> None:
    with pytest.raises(ExtractionEmpty):
        await BuiltinExtractor(trio.CapacityLimiter(1)).extract(
            SourceDocument("d_0123456789ab", "T", "  \n "), DEFAULT_CATEGORIES
        )


async def test_cancel_while_waiting_for_the_limiter_runs_nothing(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.abc.Clock
) -> None:
    limiter = trio.CapacityLimiter(1)
    calls: list[str] = []
    monkeypatch.setattr(_extractor, "extract_structure", lambda *a, **k: calls.append("ran"))
    async with limiter:
        with trio.move_on_after(5) as scope:
            await BuiltinExtractor(limiter).extract(SOURCE, DEFAULT_CATEGORIES)
    assert scope.cancelled_caught
    assert calls == []


async def test_cancel_mid_run_returns_at_once_and_discards_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """G5a: the thread cannot be stopped; the caller stops waiting, the token returns when it ends."""
    limiter = trio.CapacityLimiter(1)
    started, release, finished = threading.Event(), threading.Event(), threading.Event()
    results: list[object] = []

    def slow(*args: object, **kwargs: object) -> ExtractedDocument:
        started.set()
        release.wait(timeout=30)
        finished.set()
        return extract_structure(*args, **kwargs)  # type: ignore[arg-type]

    async def run(scope: trio.CancelScope) -> None:
        with scope:
            results.append(await BuiltinExtractor(limiter).extract(SOURCE, DEFAULT_CATEGORIES))

    monkeypatch.setattr(_extractor, "extract_structure", slow)
    scope = trio.CancelScope()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, scope)
            while not started.is_set():
                await trio.sleep(0.001)
            scope.cancel()
    # The call returned while the thread was still blocked: nothing was delivered.
    assert scope.cancelled_caught and results == [] and not finished.is_set()
    assert limiter.borrowed_tokens == 1  # still held by the abandoned thread
    release.set()
    with trio.fail_after(30):
        while limiter.borrowed_tokens:
            await trio.sleep(0.001)
    assert finished.is_set() and results == []
