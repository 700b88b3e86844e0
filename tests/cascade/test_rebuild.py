"""``CascadeService.rebuild``: the bulk path (everos/cascade/_rebuild.py). Queued in one pass,
drained with many attempts at once so the index writer merges their commits, nothing asked of an
index the caller emptied, progress told while it runs."""

from __future__ import annotations

from pathlib import Path

import trio

from everos.cascade import locate_document
from everos.store import JobStatus

from .conftest import GUIDE, FakeEmbedder, FakeSink, open_cascade, write_document


class CountingSink(FakeSink):
    """Counts what the cascade asks of the index."""

    def __init__(self) -> None:
        super().__init__()
        self.hash_reads = 0

    async def topic_hashes(self, doc_id: str) -> dict[str, str]:
        self.hash_reads += 1
        return await super().topic_hashes(doc_id)


class GatedSink(FakeSink):
    """Holds every ``replace_document`` until ``gate`` callers wait in it at once: a rebuild that
    hands the writer fewer documents at a time never gets through (the test's deadline ends it)."""

    def __init__(self, gate: int) -> None:
        super().__init__()
        self.gate, self.waiting, self.most_waiting = gate, 0, 0
        self.open = trio.Event()

    async def replace_document(self, doc_id, topics, facts) -> None:
        self.waiting += 1
        self.most_waiting = max(self.most_waiting, self.waiting)
        if self.waiting >= self.gate:
            self.open.set()
        await self.open.wait()
        self.waiting -= 1
        await super().replace_document(doc_id, topics, facts)


def write_documents(root: Path, count: int) -> list[str]:
    return sorted(write_document(root, f"Guide {n}", GUIDE) for n in range(count))


async def test_rebuild_into_an_emptied_index_deletes_nothing_and_reads_no_topic_hashes(
    root: Path, embedder: FakeEmbedder
) -> None:
    sink = CountingSink()
    doc_dirs = write_documents(root, 4)
    async with open_cascade(root, sink, embedder) as cascade:
        await cascade.sync()  # known to SQLite and the cascade state now
        sink.hash_reads, replaced = 0, len(sink.replaced)
        summary = await cascade.rebuild(index_emptied=True)
        assert summary["dropped"] == 4 and summary["queued"] == doc_dirs and summary["outcomes"] == {"indexed": 4}
        assert sink.deleted == [] and sink.hash_reads == 0
        assert len(sink.replaced) == replaced + 4  # each document written once


async def test_rebuild_of_an_index_it_did_not_empty_deletes_every_known_document_first(
    root: Path, embedder: FakeEmbedder
) -> None:
    sink = CountingSink()
    doc_dirs = write_documents(root, 3)
    async with open_cascade(root, sink, embedder) as cascade:
        await cascade.sync()
        await cascade.rebuild()
        assert sorted(sink.deleted) == sorted(locate_document(d).doc_id for d in doc_dirs)
        assert sink.hash_reads == 3  # before the rebuild: sync's attempts; none during it


async def test_rebuild_hands_the_index_writer_many_documents_at_once(root: Path, embedder: FakeEmbedder) -> None:
    """With two index workers a rebuild ran two documents at a time, and the writer committed
    each alone; now ``rebuild_workers`` attempts wait for the writer together."""
    sink = GatedSink(gate=6)
    write_documents(root, 12)
    async with open_cascade(root, sink, embedder, workers=2, rebuild_workers=6) as cascade:
        with trio.fail_after(60):  # a hang guard only: the gate opens once six wait, or never
            summary = await cascade.rebuild(index_emptied=True)
        assert summary["outcomes"] == {"indexed": 12} and sink.most_waiting == 6


async def test_rebuild_queues_every_document_pending_before_the_first_attempt(root: Path, sink: FakeSink,
                                                                              embedder: FakeEmbedder) -> None:
    doc_dirs = write_documents(root, 3)
    doc_ids = [locate_document(d).doc_id for d in doc_dirs]
    async with open_cascade(root, sink, embedder) as cascade:
        await cascade.ledger.enqueue_many(doc_dirs, "rebuild")
        assert await cascade.index_statuses(doc_ids) == dict.fromkeys(doc_ids, "pending")
        queued = await cascade.queue.list(JobStatus.QUEUED)
        assert sorted(job.key for job in queued) == doc_dirs
        assert {job.payload["reason"] for job in queued} == {"rebuild"}


async def test_rebuild_tells_its_progress_up_to_every_document(root: Path, sink: FakeSink,
                                                               embedder: FakeEmbedder) -> None:
    write_documents(root, 5)
    told: list[tuple[int, int, int]] = []
    async with open_cascade(root, sink, embedder) as cascade:
        await cascade.rebuild(index_emptied=True, on_progress=lambda *counts: told.append(counts))
    assert told[-1] == (5, 0, 5)
    assert [done for done, _, _ in told] == sorted(done for done, _, _ in told)  # never backwards


async def test_rebuild_counts_a_failed_document_in_its_progress(root: Path, sink: FakeSink,
                                                                embedder: FakeEmbedder) -> None:
    write_documents(root, 2)
    broken = write_document(root, "Broken", GUIDE)
    (root / broken / "index.md").write_bytes(b"\xff\xfe not UTF-8")
    told: list[tuple[int, int, int]] = []
    async with open_cascade(root, sink, embedder) as cascade:
        summary = await cascade.rebuild(index_emptied=True, on_progress=lambda *counts: told.append(counts))
    assert told[-1] == (3, 1, 3) and [f["doc_dir"] for f in summary["failures"]] == [broken]
