"""A failing embedder degrades indexing instead of holding it (#18; G3, G7, G11).

The cascade runs for real (SQLite, its queue, the topic cache) against an in-memory sink, in
virtual time: a MockClock jumps ahead whenever every task waits, so an embedder that never answers
costs the test milliseconds. Its autojump threshold is above zero because SQLite calls run in
threads, during which trio would otherwise think everything is idle.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import trio
import trio.testing

from everos.cascade import locate_document
from everos.cascade._indexer import DEFERRED
from everos.providers import CircuitBreaker, CircuitState, ProviderConnectionError

from .conftest import GUIDE, FakeEmbedder, FakeSink, open_cascade, write_document

ROW_TIMEOUT_S = 120.0


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0.05)


@pytest.fixture
def patient_clock() -> trio.testing.MockClock:
    """For a test whose figures depend on where a deadline cuts: the clock jumps only after a
    quarter of a real second with every task blocked, so a thread hop slowed by a loaded machine
    (the indexer builds its rows in a thread) does not jump past the deadlines that follow."""
    return trio.testing.MockClock(autojump_threshold=0.25)


class StalledEmbedder(FakeEmbedder):
    """Never answers while ``stalled``; answers like :class:`FakeEmbedder` otherwise."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled = True

    async def embed(self, texts, *, budget, purpose="passage"):
        if self.stalled:
            await trio.sleep_forever()
        return await super().embed(texts, budget=budget)


class DownEmbedder(FakeEmbedder):
    """An endpoint behind a circuit breaker (threshold 1, cooldown 30 s) that refuses while ``down``."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True
        self.policy = SimpleNamespace(breaker=CircuitBreaker("embedding", failure_threshold=1, cooldown_seconds=30))

    async def embed(self, texts, *, budget, purpose="passage"):
        admission = self.policy.breaker.admit()
        if self.down:
            self.policy.breaker.record_failure(admission, "connection refused")
            raise ProviderConnectionError("embedding endpoint", "connection refused")
        self.policy.breaker.record_success(admission)
        return await super().embed(texts, budget=budget)


def vectors_of(sink: FakeSink, doc_id: str) -> list[tuple[float, ...]]:
    return [row.vector for row in sink.topics[doc_id].values()] + [fact.vector for fact in sink.facts[doc_id]]


async def test_a_stalled_embedder_leaves_the_document_keyword_searchable_within_the_row_deadline(
    root: Path, sink: FakeSink, mock_clock: trio.testing.MockClock
) -> None:
    """G3/G7 (#18): an embedder that never answers costs the row its embedding phase (45 s here,
    under the 120 s row deadline), not the row: it is indexed at once for keyword search with no
    vectors, ``indexed`` with an ``index_error`` and counted in /health; once the embedder answers,
    the re-embed pass fills exactly the missing vectors, facts taken from the cache."""
    doc_dir = write_document(root, "Trio guide", GUIDE)
    doc_id = locate_document(doc_dir).doc_id
    embedder = StalledEmbedder()
    async with open_cascade(root, sink, embedder, row_timeout_seconds=ROW_TIMEOUT_S) as cascade:
        await cascade.enqueue_document(doc_dir)
        started = trio.current_time()
        [first] = await cascade.drain()
        assert 45 <= trio.current_time() - started < ROW_TIMEOUT_S
        assert first.error is None and first.outcome.action == "indexed"
        assert first.outcome.vectors_pending == "the embedder did not answer within 45 s"
        assert sink.topic_names(doc_id) == ["Cancel scopes", "Nurseries", "Threads"]
        assert all(vector == () for vector in vectors_of(sink, doc_id)) and sink.facts[doc_id]
        assert await cascade.index_states([doc_id]) == {doc_id: {
            "index_status": "indexed", "index_error": "vectors pending: the embedder did not answer within 45 s"}}
        status = await cascade.status()
        assert status["healthy"] and status["vectors_pending"] == 1 and status["index_status"]["pending"] == 0
        assert "searchable by keyword only" in status["notes"][0]

        embedder.stalled = False
        assert await cascade.reembed() == 1
        assert (await cascade.index_states([doc_id]))[doc_id]["index_status"] == "indexed"  # searchable meanwhile
        [second] = await cascade.drain()
        assert second.outcome.action == "indexed" and second.outcome.vectors_pending is None
        assert second.outcome.embedded == len(vectors_of(sink, doc_id))  # every vector once, nothing twice
        assert all(len(vector) == FakeEmbedder.dim for vector in vectors_of(sink, doc_id))
        assert await cascade.index_states([doc_id]) == {doc_id: {"index_status": "indexed", "index_error": None}}
        assert (await cascade.status())["vectors_pending"] == 0
        assert await cascade.reembed() == 0


async def test_with_the_embedding_circuit_open_documents_are_indexed_at_once_and_re_embedded_after_it_closes(
    root: Path, sink: FakeSink, mock_clock: trio.testing.MockClock
) -> None:
    """G7/G11 (#18): a failing endpoint (its circuit open) indexes each document for keyword search
    at once; the re-embed pass queues nothing while the circuit is open, one probe document while
    it is half-open, and the rest once the probe closed it."""
    doc_dirs = [write_document(root, f"Guide {n}", GUIDE) for n in range(2)]
    embedder = DownEmbedder()
    async with open_cascade(root, sink, embedder, row_timeout_seconds=ROW_TIMEOUT_S) as cascade:
        for doc_dir in doc_dirs:
            await cascade.enqueue_document(doc_dir)
        results = await cascade.drain()
        assert [r.outcome.action for r in results] == ["indexed", "indexed"]
        assert {r.outcome.vectors_pending.split(":")[0] for r in results} == {"the embedder failed"}
        assert embedder.policy.breaker.state is CircuitState.OPEN
        assert await cascade.reembed() == 0

        embedder.down = False
        await trio.sleep(31)  # the cooldown: half-open
        assert await cascade.reembed() == 1
        [probe] = await cascade.drain()
        assert probe.outcome.vectors_pending is None and embedder.policy.breaker.state is CircuitState.CLOSED
        assert await cascade.reembed() == 1
        [rest] = await cascade.drain()
        assert rest.outcome.vectors_pending is None and {probe.doc_dir, rest.doc_dir} == set(doc_dirs)
        assert (await cascade.status())["vectors_pending"] == 0


class OtherModelEmbedder(FakeEmbedder):
    """Another model of the same width: its vectors live in another space."""

    model = "fake-2"


class NoFactsEmbedder(FakeEmbedder):
    """A model too costly for facts (like the built-in e5): topics only."""

    model = "fake-neural"
    embeds_facts = False


async def test_a_changed_embedder_of_the_same_width_re_embeds_every_document_in_the_background(
    root: Path, sink: FakeSink, mock_clock: trio.testing.MockClock
) -> None:
    """#13: switching the model (hashing -> e5, both 384-d) must not leave the index mixing two
    vector spaces: at the next start every document is marked as waiting for its vectors, stays
    searchable by keyword, and the re-embed pass makes them with the new model, facts kept."""
    doc_dirs = [write_document(root, f"Guide {n}", GUIDE) for n in range(2)]
    async with open_cascade(root, sink, FakeEmbedder()) as cascade:
        for doc_dir in doc_dirs:
            await cascade.enqueue_document(doc_dir)
        assert [r.outcome.vectors_pending for r in await cascade.drain()] == [None, None]
    doc_id = locate_document(doc_dirs[0]).doc_id
    facts_before = [fact.text for fact in sink.facts[doc_id]]
    other = OtherModelEmbedder()
    async with open_cascade(root, sink, other) as cascade:
        status = await cascade.status()
        assert status["vectors_pending"] == 2
        assert await cascade.reembed() == 2
        results = await cascade.drain()
        assert [r.outcome.vectors_pending for r in results] == [None, None]
        assert (await cascade.status())["vectors_pending"] == 0
    assert [fact.text for fact in sink.facts[doc_id]] == facts_before
    topics = sum(len(sink.topics[locate_document(d).doc_id]) for d in doc_dirs)
    facts = sum(len(sink.facts[locate_document(d).doc_id]) for d in doc_dirs)
    assert len(other.texts) == topics + facts  # every topic and fact embedded again, once
    async with open_cascade(root, sink, other) as cascade:  # the same model again: nothing to do
        assert (await cascade.status())["vectors_pending"] == 0


async def test_an_embedder_that_does_not_embed_facts_gets_topics_only(
    root: Path, sink: FakeSink, mock_clock: trio.testing.MockClock
) -> None:
    """#13: the built-in e5 embeds topics only (a fact costs as much as a topic); facts are
    kept without vectors and ranked by their words within a hit."""
    doc_dir = write_document(root, "Guide", GUIDE)
    embedder = NoFactsEmbedder()
    async with open_cascade(root, sink, embedder) as cascade:
        await cascade.enqueue_document(doc_dir)
        [result] = await cascade.drain()
    doc_id = locate_document(doc_dir).doc_id
    assert result.outcome.facts > 0 and result.outcome.embedded == result.outcome.topics
    assert all(len(row.vector) == embedder.dim for row in sink.topics[doc_id].values())
    assert all(len(fact.vector) == 0 for fact in sink.facts[doc_id])
    assert len(embedder.texts) == result.outcome.topics


class SlowModelEmbedder(NoFactsEmbedder):
    """A model too slow to wait for (like the built-in e5): vectors in a later attempt."""

    model = "fake-slow"
    defers_vectors = True


async def test_a_slow_embedder_leaves_keyword_rows_first_and_its_vectors_to_a_queued_attempt(
    root: Path, sink: FakeSink, mock_clock: trio.testing.MockClock
) -> None:
    """#13: with the built-in e5 (half a second a topic) an upload must not wait for its vectors to be
    searchable: the first attempt writes keyword rows (no embedder call) and queues the
    document again behind the others, whose keyword rows come first; that attempt embeds it."""
    doc_dirs = [write_document(root, f"Guide {n}", GUIDE) for n in range(3)]
    embedder = SlowModelEmbedder()
    async with open_cascade(root, sink, embedder, workers=1) as cascade:  # one worker: keyword rows first
        for doc_dir in doc_dirs:
            await cascade.enqueue_document(doc_dir)
        results = await cascade.drain()
        # Attempts overlap while they wait for their commits, so they end in any order within a pass.
        assert [r.outcome.embedded > 0 for r in results] == [False] * 3 + [True] * 3
        assert {r.doc_dir for r in results[:3]} == {r.doc_dir for r in results[3:]} == set(doc_dirs)
        assert [r.outcome.vectors_pending for r in results] == [DEFERRED] * 3 + [None] * 3
        assert (await cascade.status())["vectors_pending"] == 0
        assert len(embedder.texts) == sum(r.outcome.topics for r in results[3:])  # each topic once
        # An unchanged document is not embedded (nor deferred) again.
        await cascade.enqueue_document(doc_dirs[0])
        assert [r.outcome.action for r in await cascade.drain()] == ["unchanged"]
    for doc_dir in doc_dirs:
        rows = sink.topics[locate_document(doc_dir).doc_id].values()
        assert all(len(row.vector) == embedder.dim for row in rows)


class MinutesPerDocumentEmbedder(SlowModelEmbedder):
    """Like e5 on a slow machine: ``seconds_per_text`` of virtual time per text, calls counted,
    ``texts_per_call`` handed over at a time."""

    model = "fake-minutes"

    def __init__(self, seconds_per_text: float, texts_per_call: int | None = None) -> None:
        super().__init__()
        self.seconds_per_text = seconds_per_text
        if texts_per_call is not None:
            self.texts_per_call = texts_per_call
        self.running = self.most_running = 0

    async def embed(self, texts, *, budget, purpose="passage"):
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await trio.sleep(self.seconds_per_text * len(texts))
            return await super().embed(texts, budget=budget)
        finally:
            self.running -= 1


async def test_a_vector_pass_cut_at_its_deadline_keeps_what_it_embedded_and_the_next_pass_finishes(
    root: Path, sink: FakeSink, mock_clock: trio.testing.MockClock
) -> None:
    """#13/G7: e5 needs minutes for a long document. A pass that only makes vectors (the document
    is searchable by keyword already) may embed for 75 % of the row's deadline (90 s of 120), not
    the 45 s a keyword attempt gets; texts go to the embedder a few at a time (its
    ``texts_per_call``), so a pass cut at its deadline keeps every vector made before it, and the
    next pass (queued at once, as it made progress) embeds only the rest. (Handed over all at
    once, each pass lost everything at its deadline, and a long document never got its vectors.)"""
    guide = GUIDE + "".join(f"\n## Part {n}\nMore about part {n} of the guide.\n" for n in range(3))
    doc_dir = write_document(root, "Trio guide", guide)
    doc_id = locate_document(doc_dir).doc_id
    embedder = MinutesPerDocumentEmbedder(seconds_per_text=20.0, texts_per_call=1)  # 6 topics: 120 s
    async with open_cascade(root, sink, embedder, workers=1, row_timeout_seconds=ROW_TIMEOUT_S) as cascade:
        await cascade.enqueue_document(doc_dir)
        keyword, first, second = await cascade.drain()
        assert keyword.outcome.vectors_pending == DEFERRED and keyword.outcome.embedded == 0
        assert first.outcome.vectors_pending == "the embedder did not answer within 90 s"
        assert first.outcome.embedded == 4
        assert second.outcome.vectors_pending is None and second.outcome.embedded == 2
        assert await cascade.reembed() == 0
    assert len(embedder.texts) == 6  # each topic once
    assert all(len(row.vector) == embedder.dim for row in sink.topics[doc_id].values())


async def test_vector_passes_leave_a_worker_to_uploads_waiting_for_their_keyword_index(
    root: Path, sink: FakeSink, mock_clock: trio.testing.MockClock
) -> None:
    """#13/G3: with two index workers and two documents waiting for slow vectors, one worker runs
    a vector pass and the other stays free: a document uploaded meanwhile is searchable by
    keyword at once, not after the passes' minutes (both workers used to take a pass each)."""
    first = [write_document(root, f"Guide {n}", GUIDE) for n in range(2)]
    embedder = MinutesPerDocumentEmbedder(seconds_per_text=10.0)
    async with open_cascade(root, sink, embedder, workers=2, row_timeout_seconds=ROW_TIMEOUT_S) as cascade:
        async with trio.open_nursery() as nursery:
            for n in range(2):
                nursery.start_soon(cascade.workers.work, f"worker-{n}")
            for doc_dir in first:
                await cascade.enqueue_document(doc_dir)
            while embedder.running == 0:  # the first vector pass has started
                await trio.sleep(0.5)
            await trio.sleep(1)
            started = trio.current_time()
            late = write_document(root, "Late guide", GUIDE)
            late_id = locate_document(late).doc_id
            await cascade.enqueue_document(late)
            while (await cascade.index_states([late_id]))[late_id]["index_status"] != "indexed":
                await trio.sleep(0.5)
            assert trio.current_time() - started < 10  # well before the running pass's 30 s end
            assert embedder.running == 1
            while (await cascade.status())["vectors_pending"] or embedder.running:
                await trio.sleep(1)
            nursery.cancel_scope.cancel()
    assert embedder.most_running == 1
    assert all(len(row.vector) == embedder.dim for doc_dir in [*first, late]
               for row in sink.topics[locate_document(doc_dir).doc_id].values())


async def test_a_cut_vector_pass_keeps_its_turn_so_documents_get_their_vectors_one_after_another(
    root: Path, sink: FakeSink, patient_clock: trio.testing.MockClock
) -> None:
    """#13: a vector pass cut at its deadline after making some vectors queues the rest at once,
    in its own turn: documents get their vectors one after another (the worker has leased the next
    pass by the time a pass settles, so two at a time here), instead of each waiting for the
    re-embed pass in turn (with e5 and ten long documents, none had all its vectors for a quarter
    of an hour)."""
    doc_dirs = [write_document(root, f"Guide {d}", GUIDE + "".join(
        f"\n## Part {n}\nMore about part {n} of guide {d}.\n" for n in range(3))) for d in "ABC"]
    embedder = MinutesPerDocumentEmbedder(seconds_per_text=20.0, texts_per_call=1)  # 6 topics: two passes each
    async with open_cascade(root, sink, embedder, workers=1, row_timeout_seconds=ROW_TIMEOUT_S) as cascade:
        for doc_dir in doc_dirs:
            await cascade.enqueue_document(doc_dir)
        results = await cascade.drain()
        passes = [(r.doc_dir, r.outcome.embedded) for r in results if r.outcome.embedded]
        a, b, c = doc_dirs
        assert passes == [(a, 4), (b, 4), (a, 2), (b, 2), (c, 4), (c, 2)]
        assert (await cascade.status())["vectors_pending"] == 0
    assert len(embedder.texts) == 18  # each topic once
