"""Index workers: retries, dead rows, lease expiry, deadlines, lost leases, crash recovery (G3, G7, G8).

Queue time is an injected clock the tests advance by hand (leases and backoff are compared with it
in SQL), so no test waits for a lease or a backoff. The two tests about a hung attempt use small
real timeouts: SQLite runs in threads, and a virtual clock would jump while they run.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import trio

from everos.cascade import locate_document
from everos.store import JobStatus

from .conftest import GUIDE, Crash, FakeEmbedder, FakeSink, open_cascade, write_document


class FakeClock:
    def __init__(self, now: float = 2_000_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def contains(exc: BaseException, kind: type[BaseException]) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return any(contains(inner, kind) for inner in exc.exceptions)
    return isinstance(exc, kind)


async def test_failing_row_is_retried_after_backoff_then_dead(
    root: Path, sink: FakeSink, embedder: FakeEmbedder
) -> None:
    """G7: a row that keeps failing dies after max_attempts, with its error kept, instead of looping."""
    clock = FakeClock()
    doc_dir = write_document(root, "Trio guide", GUIDE)
    doc_id = locate_document(doc_dir).doc_id
    sink.fail_replace = 100
    async with open_cascade(root, sink, embedder, clock=clock, max_attempts=3, retry_backoff_seconds=10) as cascade:
        await cascade.sync(doc_dir)
        [job] = await cascade.queue.list()
        assert (job.status, job.attempts, job.available_at) == (JobStatus.QUEUED, 1, clock.now + 10)
        assert await cascade.index_statuses([doc_id]) == {doc_id: "pending"}
        assert await cascade.drain() == []  # in backoff: nothing is available yet
        for _ in range(2):
            clock.advance(10)
            [result] = await cascade.drain()
            assert "index unavailable" in result.error
        [job] = await cascade.queue.list()
        assert (job.status, job.attempts) == (JobStatus.DEAD, 3) and "index unavailable" in job.last_error
        assert await cascade.index_statuses([doc_id]) == {doc_id: "failed"}
        assert await cascade.scanner.scan_once() == []  # dead stays dead until its files change
        assert (await cascade.status())["dead"] == 1


async def test_expired_leases_are_reaped_and_count_as_attempts(
    root: Path, sink: FakeSink, embedder: FakeEmbedder
) -> None:
    """G7: a worker that vanished mid-row loses it when its lease expires; after max_attempts of
    that the row is dead and shows failed."""
    clock = FakeClock()
    doc_dir = write_document(root, "Trio guide", GUIDE)
    doc_id = locate_document(doc_dir).doc_id
    async with open_cascade(root, sink, embedder, clock=clock, max_attempts=2, lease_seconds=60) as cascade:
        await cascade.enqueue_document(doc_dir)
        for attempt in (1, 2):
            [job] = await cascade.queue.lease("vanished-worker", 1, 60)
            assert job.attempts == attempt
            clock.advance(59)
            assert await cascade.workers.reap() == 0  # not expired yet
            clock.advance(2)
            assert await cascade.workers.reap() == 1
        [job] = await cascade.queue.list()
        assert job.status is JobStatus.DEAD and "expired" in job.last_error
        assert await cascade.index_statuses([doc_id]) == {doc_id: "failed"}
        assert (await cascade.fix(apply=True))["outcomes"] == {"indexed": 1}


async def test_an_attempt_that_hangs_ends_at_its_deadline(root: Path, sink: FakeSink, embedder: FakeEmbedder) -> None:
    """G3: every row runs under row_timeout_seconds; a hung index write cannot hold it longer."""
    doc_dir = write_document(root, "Trio guide", GUIDE)
    sink.hang_replace = True
    async with open_cascade(root, sink, embedder, row_timeout_seconds=0.3, max_attempts=1) as cascade:
        await cascade.enqueue_document(doc_dir)
        with trio.fail_after(10):
            [result] = await cascade.drain()
        assert "did not finish within 0.3 s" in result.error
        [job] = await cascade.queue.list()
        assert job.status is JobStatus.DEAD


async def test_losing_the_lease_stops_the_attempt(root: Path, sink: FakeSink, embedder: FakeEmbedder) -> None:
    """G7: once its row was taken away, an attempt stops instead of writing over its new owner."""
    doc_dir = write_document(root, "Trio guide", GUIDE)
    sink.hang_replace = True
    async with open_cascade(root, sink, embedder, lease_seconds=0.3) as cascade:
        await cascade.enqueue_document(doc_dir)
        [job] = await cascade.queue.list()
        results = []

        async def drain() -> None:
            results.extend(await cascade.workers.drain("w"))

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain)
                while (await cascade.queue.get(job.id)).status is not JobStatus.RUNNING:
                    await trio.sleep(0.01)
                await cascade.queue.delete(job.id)
        [result] = results
        assert result.outcome is None and result.error is None


async def test_crash_mid_batch_then_restart_converges_with_nothing_indexed_twice(
    root: Path, sink: FakeSink, embedder: FakeEmbedder
) -> None:
    """G6/G8: the process dies right after the third document reached the index; after a restart
    every document is indexed, and none was written to the index or embedded twice."""
    doc_dirs = sorted(write_document(root, f"Doc {i}", GUIDE.replace("Trio guide", f"Doc {i}")) for i in range(5))
    doc_ids = [locate_document(d).doc_id for d in doc_dirs]
    sink.crash_after_commit = {doc_ids[2]}
    async with open_cascade(root, sink, embedder, workers=1) as cascade:
        with pytest.raises(BaseException) as crashed:
            await cascade.sync()
        assert contains(crashed.value, Crash)
        assert sink.replaced == doc_ids[:3]
    embedded_per_doc = len(embedder.texts) // 3
    async with open_cascade(root, sink, embedder, workers=1) as restarted:
        summary = await restarted.sync()
        assert summary["outcomes"] == {"unchanged": 1, "indexed": 2} and summary["failures"] == []
        assert await restarted.index_statuses(doc_ids) == dict.fromkeys(doc_ids, "indexed")
        assert (await restarted.sync())["queued"] == []
    assert sorted(sink.replaced) == sorted(doc_ids)  # each exactly once (in any order: attempts overlap)
    assert len(embedder.texts) == 5 * embedded_per_doc


async def test_cancelled_worker_gives_its_row_back_without_spending_an_attempt(
    root: Path, sink: FakeSink, embedder: FakeEmbedder
) -> None:
    """G7: a clean shutdown mid-row releases the lease; the next process starts the row afresh."""
    doc_dir = write_document(root, "Trio guide", GUIDE)
    sink.hang_replace = True
    async with open_cascade(root, sink, embedder) as cascade:
        await cascade.enqueue_document(doc_dir)
        [job] = await cascade.queue.list()
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(cascade.workers.work, "w-0")
                while (await cascade.queue.get(job.id)).status is not JobStatus.RUNNING:
                    await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
        row = await cascade.queue.get(job.id)
        assert (row.status, row.attempts, row.lease_owner) == (JobStatus.QUEUED, 0, None)


class StallingEmbedder(FakeEmbedder):
    """Answers its first ``calls_before_stall`` calls, then never again (until reset)."""

    def __init__(self, calls_before_stall: int) -> None:
        super().__init__()
        self.calls_left = calls_before_stall

    async def embed(self, texts, *, budget, purpose="passage"):
        if self.calls_left == 0:
            await trio.sleep_forever()
        self.calls_left -= 1
        return await super().embed(texts, budget=budget)


async def test_an_attempt_cut_short_keeps_the_embeddings_it_finished(
    root: Path, sink: FakeSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """G7 convergence: each chunk of vectors is cached when done; an attempt whose embedding
    phase runs out indexes the rest for keyword search (vectors pending), and the re-embed pass
    later embeds only what is missing, never a chunk twice."""
    monkeypatch.setattr("everos.cascade._indexer.EMBED_CHUNK_TEXTS", 3)  # one topic (1 + 2 facts) per call
    doc_dir = write_document(root, "Trio guide", GUIDE)
    doc_id = locate_document(doc_dir).doc_id
    embedder = StallingEmbedder(calls_before_stall=1)
    async with open_cascade(root, sink, embedder, row_timeout_seconds=0.5) as cascade:
        await cascade.enqueue_document(doc_dir)
        with trio.fail_after(10):
            [first] = await cascade.drain()
        assert first.outcome.action == "indexed" and first.outcome.embedded == 3
        assert "did not answer within 0.2 s" in first.outcome.vectors_pending and len(embedder.texts) == 3
        embedder.calls_left = 10
        assert await cascade.reembed() == 1
        [second] = await cascade.drain()
        assert second.outcome.action == "indexed" and second.outcome.embedded == 6
        assert second.outcome.vectors_pending is None
    assert len(embedder.texts) == 9 and len(set(embedder.texts)) == 9
    assert sink.topic_names(doc_id) == ["Cancel scopes", "Nurseries", "Threads"]


async def test_rows_read_from_a_directory_moved_meanwhile_never_overwrite_the_new_place(
    root: Path, sink: FakeSink, embedder: FakeEmbedder
) -> None:
    """A PATCH moves the document between the cascade's read and its row write: the cascade,
    holding the document's lock, sees the files gone and writes nothing from the old place."""
    from everos.ingest import _repository as repo

    doc_dir = write_document(root, "Trio", GUIDE)
    moved_to = root / doc_dir.replace("/Technology/", "/Engineering/")

    @contextlib.asynccontextmanager
    async def lock_after_a_patch(doc_id: str):
        moved_to.parent.mkdir(parents=True, exist_ok=True)
        (root / doc_dir).rename(moved_to)  # what a PATCH holding the lock just did
        yield

    async with open_cascade(root, sink, embedder, document_lock=lock_after_a_patch) as cascade:
        outcome = await cascade.workers.indexer.index(doc_dir)
        assert outcome.action == "moved"
        doc_id = doc_dir.rsplit("_", 2)[-2] + "_" + doc_dir.rsplit("_", 1)[-1]
        assert await cascade.db.read(repo.get_document, doc_id) is None


class GateSink(FakeSink):
    """A sink whose commits wait until ``opened`` is set; counts the documents waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = trio.Event()
        self.waiting = 0
        self.most_waiting = 0

    async def replace_document(self, doc_id: str, topics: list, facts: list) -> None:
        self.waiting += 1
        self.most_waiting = max(self.most_waiting, self.waiting)
        await self.opened.wait()
        self.waiting -= 1
        await super().replace_document(doc_id, topics, facts)


async def test_a_worker_derives_the_next_documents_while_earlier_ones_wait_for_their_commit(
    root: Path, embedder: FakeEmbedder
) -> None:
    """G9 (bounded): one worker hands each document's rows to the writer and leases the next, up
    to attempts_in_flight documents at once, so a slow commit takes many documents; none is lost."""
    doc_dirs = [write_document(root, f"Doc {i}", GUIDE.replace("Trio guide", f"Doc {i}")) for i in range(6)]
    sink = GateSink()
    async with open_cascade(root, sink, embedder, workers=1, attempts_in_flight=4) as cascade:
        for doc_dir in doc_dirs:
            await cascade.enqueue_document(doc_dir)
        results: list = []

        async def drain() -> None:
            results.extend(await cascade.workers.drain("w"))

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain)
                while sink.waiting < 4:
                    await trio.sleep(0.01)
                await trio.sleep(0.1)
                assert sink.waiting == 4  # bounded: the fifth waits for a slot
                sink.opened.set()
        assert sink.most_waiting == 4
        assert sorted(r.doc_dir for r in results if r.outcome is not None) == sorted(doc_dirs)
        ids = [locate_document(d).doc_id for d in doc_dirs]
        assert await cascade.index_statuses(ids) == dict.fromkeys(ids, "indexed")
