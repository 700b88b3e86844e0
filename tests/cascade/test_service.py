"""The cascade end to end without a server: sync, hand edits, deletes, moves, rebuild, fix, status."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import trio

from everos.cascade import locate_document
from everos.errors import InvalidInput
from everos.ingest import _repository as repo
from everos.status import StatusBoard
from everos.store import JobStatus
from everos.supervisor import Supervisor

from .conftest import GUIDE, FakeEmbedder, FakeSink, open_cascade, write_document


async def test_sync_indexes_topics_facts_and_sqlite_rows(root: Path, sink: FakeSink, embedder: FakeEmbedder) -> None:
    doc_dir = write_document(root, "Trio guide", GUIDE)
    doc_id = locate_document(doc_dir).doc_id
    async with open_cascade(root, sink, embedder) as cascade:
        summary = await cascade.sync()
        assert summary["queued"] == [doc_dir] and summary["outcomes"] == {"indexed": 1}
        assert sink.topic_names(doc_id) == ["Cancel scopes", "Nurseries", "Threads"]
        facts = [f.text for f in sink.facts[doc_id]]
        assert "A thread cannot be cancelled." in facts
        row = next(r for r in sink.topics[doc_id].values() if r.topic_name == "Threads")
        assert "worker" in row.content_tokens.split() and row.app_id == "default" and len(row.vector) == 8
        assert set(embedder.budgets) == {"background"}  # G4: indexing never draws on the interactive budget
        doc = await cascade.db.read(repo.get_document, doc_id)
        assert doc.md_path == f"{doc_dir}/index.md" and doc.topic_count == 3
        assert doc.original_path == f"{doc_dir}/_original/source.md" and doc.content_sha256
        assert await cascade.index_statuses([doc_id, "d_000000000000"]) == {
            doc_id: "indexed", "d_000000000000": "pending"}


async def test_unchanged_document_is_not_embedded_or_written_again(
    root: Path, sink: FakeSink, embedder: FakeEmbedder
) -> None:
    """G8: running a row again changes nothing and costs no embedding."""
    doc_dir = write_document(root, "Trio guide", GUIDE)
    async with open_cascade(root, sink, embedder) as cascade:
        await cascade.sync()
        embedded = len(embedder.texts)
        assert (await cascade.sync(doc_dir))["outcomes"] == {"unchanged": 1}
        assert (await cascade.sync())["queued"] == []
    assert sink.replaced == [locate_document(doc_dir).doc_id] and len(embedder.texts) == embedded


async def test_hand_edit_of_a_topic_reaches_the_index_and_the_topic_row(
    root: Path, sink: FakeSink, embedder: FakeEmbedder
) -> None:
    doc_dir = write_document(root, "Trio guide", GUIDE)
    doc_id = locate_document(doc_dir).doc_id
    async with open_cascade(root, sink, embedder) as cascade:
        await cascade.sync()
        before = len(embedder.texts)
        topic_file = root / doc_dir / "2_Nurseries.md"
        topic_file.write_text(topic_file.read_text().replace("owns its child tasks", "supervises goblins"))
        assert (await cascade.sync())["queued"] == [doc_dir]
        row = next(r for r in sink.topics[doc_id].values() if r.topic_name == "Nurseries")
        assert "goblins." in row.content_tokens.split()
        assert any(f.text == "A nursery supervises goblins." for f in sink.facts[doc_id])
        # Only the edited topic was embedded again: its summary text and its facts.
        assert len(embedder.texts) - before == 1 + 2
        topic = await cascade.db.read(repo.get_topic, f"{doc_id}_2")
        assert "goblins" in topic["content"]
        assert len(sink.topics[doc_id]) == 3 and all(len(r.vector) == 8 for r in sink.topics[doc_id].values())


async def test_removed_topic_file_leaves_the_index(root: Path, sink: FakeSink, embedder: FakeEmbedder) -> None:
    doc_dir = write_document(root, "Trio guide", GUIDE)
    doc_id = locate_document(doc_dir).doc_id
    async with open_cascade(root, sink, embedder) as cascade:
        await cascade.sync()
        (root / doc_dir / "3_Threads.md").unlink()
        await cascade.sync(root / doc_dir / "index.md")
        assert sink.topic_names(doc_id) == ["Cancel scopes", "Nurseries"]
        assert all(f.topic_id != f"{doc_id}_3" for f in sink.facts[doc_id])
        assert [t["topic_index"] for t in await cascade.db.read(repo.list_topics, doc_id)] == [0, 1, 2]


async def test_deleted_document_directory_leaves_the_index_and_sqlite(
    root: Path, sink: FakeSink, embedder: FakeEmbedder
) -> None:
    doc_dir = write_document(root, "Trio guide", GUIDE)
    doc_id = locate_document(doc_dir).doc_id
    async with open_cascade(root, sink, embedder) as cascade:
        await cascade.sync()
        shutil.rmtree(root / doc_dir)
        summary = await cascade.sync()
        assert summary["queued"] == [doc_dir] and summary["outcomes"] == {"deleted": 1}
        assert doc_id not in sink.topics and doc_id not in sink.facts
        assert await cascade.db.read(repo.get_document, doc_id) is None
        assert await cascade.db.read(repo.list_topics, doc_id) == []
        assert (await cascade.sync())["queued"] == []  # a handled deletion is not queued again


async def test_moved_document_is_reindexed_at_its_new_place_not_deleted(
    root: Path, sink: FakeSink, embedder: FakeEmbedder
) -> None:
    doc_dir = write_document(root, "Trio guide", GUIDE)
    doc_id = locate_document(doc_dir).doc_id
    moved = doc_dir.replace("/Technology/", "/Science/")
    async with open_cascade(root, sink, embedder) as cascade:
        await cascade.sync()
        (root / moved).parent.mkdir(parents=True)
        (root / doc_dir).rename(root / moved)
        summary = await cascade.sync()
        assert sorted(summary["queued"]) == sorted([doc_dir, moved])
        assert summary["outcomes"] == {"moved": 1, "indexed": 1}
        assert sink.deleted == [] and len(sink.topics[doc_id]) == 3
        assert all(r.md_path.startswith(moved) for r in sink.topics[doc_id].values())
        assert (await cascade.db.read(repo.get_document, doc_id)).md_path == f"{moved}/index.md"


async def test_malformed_hand_edit_fails_the_row_and_keeps_the_index(
    root: Path, sink: FakeSink, embedder: FakeEmbedder
) -> None:
    """G10: a broken file changes nothing in the index; its error is visible; fixing it heals."""
    doc_dir = write_document(root, "Trio guide", GUIDE)
    doc_id = locate_document(doc_dir).doc_id
    topic_file = root / doc_dir / "1_Cancel_scopes.md"
    good = topic_file.read_text()
    async with open_cascade(root, sink, embedder) as cascade:
        await cascade.sync()
        topic_file.write_text("---\ntype: [broken\n---\n")
        summary = await cascade.sync()
        assert "1_Cancel_scopes.md" in summary["failures"][0]["error"]
        assert len(sink.topics[doc_id]) == 3 and sink.replaced == [doc_id]
        assert await cascade.index_statuses([doc_id]) == {doc_id: "failed"}
        fix = await cascade.fix()
        assert [(r["doc_dir"], r["status"]) for r in fix["rows"]] == [(doc_dir, "failed")]
        assert (await cascade.sync())["queued"] == []  # a failed row is not retried until its files change
        topic_file.write_text(good)
        # The files are back to what is indexed: nothing to write, the document is indexed again.
        assert (await cascade.fix(apply=True))["outcomes"] == {"unchanged": 1}
        assert await cascade.index_statuses([doc_id]) == {doc_id: "indexed"}


async def test_a_topic_file_without_frontmatter_fails_the_document_with_its_error_in_get_and_status(
    root: Path, sink: FakeSink, embedder: FakeEmbedder
) -> None:
    """G7: a document whose index failed shows its last error (``index_error``) and the status
    says unhealthy with the newest failures; once fixed, the error and the failure are gone."""
    doc_dir = write_document(root, "Trio guide", GUIDE)
    doc_id = locate_document(doc_dir).doc_id
    topic_file = root / doc_dir / "1_Cancel_scopes.md"
    good = topic_file.read_text()
    async with open_cascade(root, sink, embedder) as cascade:
        await cascade.sync()
        assert await cascade.index_states([doc_id]) == {doc_id: {"index_status": "indexed", "index_error": None}}
        topic_file.write_text("# Cancel scopes\n\nEdited by hand, and the frontmatter is gone.\n")
        await cascade.sync()
        [state] = (await cascade.index_states([doc_id])).values()
        assert state["index_status"] == "failed"
        assert "1_Cancel_scopes.md" in state["index_error"] and "frontmatter" in state["index_error"]
        status = await cascade.status()
        assert not status["healthy"] and status["index_status"]["failed"] == 1
        [failure] = status["recent_failures"]
        assert (failure["doc_id"], failure["doc_dir"], failure["error"]) == (doc_id, doc_dir, state["index_error"])
        assert failure["at"] > 0 and "1_Cancel_scopes.md" in status["reasons"][0]

        topic_file.write_text(good)
        await cascade.fix(apply=True)
        assert await cascade.index_states([doc_id]) == {doc_id: {"index_status": "indexed", "index_error": None}}
        status = await cascade.status()
        assert status["healthy"] and status["recent_failures"] == [] and status["reasons"] == []


async def test_fix_without_drain_queues_the_rows_for_the_workers_and_runs_none(
    root: Path, sink: FakeSink, embedder: FakeEmbedder
) -> None:
    """G1: the server's fix route answers at once: it queues the failed rows again (documents
    pending, errors cleared) and leaves them to the index workers instead of draining them."""
    doc_dir = write_document(root, "Trio guide", GUIDE)
    doc_id = locate_document(doc_dir).doc_id
    async with open_cascade(root, sink, embedder) as cascade:
        await cascade.sync()
        (root / doc_dir / "1_Cancel_scopes.md").write_text("no frontmatter\n")
        await cascade.sync()
        report = await cascade.fix(apply=True, drain=False)
        assert [row["doc_dir"] for row in report["rows"]] == [doc_dir] and report["requeued"] == 1
        assert "outcomes" not in report and sink.replaced == [doc_id]  # nothing ran
        [job] = await cascade.queue.list()
        assert (job.status, job.attempts, job.last_error) == (JobStatus.QUEUED, 0, None)
        assert await cascade.index_states([doc_id]) == {doc_id: {"index_status": "pending", "index_error": None}}
        assert (await cascade.fix(apply=True, drain=False))["requeued"] == 0  # nothing dead or failed left


async def test_enqueue_marks_the_document_pending(root: Path, sink: FakeSink, embedder: FakeEmbedder) -> None:
    doc_dir = write_document(root, "Trio guide", GUIDE)
    doc_id = locate_document(doc_dir).doc_id
    async with open_cascade(root, sink, embedder) as cascade:
        await cascade.sync()
        assert await cascade.enqueue_document(root / doc_dir, "ingest") == doc_dir
        assert await cascade.index_statuses([doc_id]) == {doc_id: "pending"}
        status = await cascade.status()
        assert status["depth"]["queued"] == 1 and status["index_status"]["pending"] == 1 and status["healthy"]
        with pytest.raises(InvalidInput):
            await cascade.enqueue_document(root / "elsewhere" / "x.md")


async def test_rebuild_indexes_a_root_written_by_everos(
    everos_root: Path, sink: FakeSink, embedder: FakeEmbedder
) -> None:
    trio_id, cjk_id, empty_id = "d_3f2a9c1e7b40", "d_9b8e7d6c5a41", "d_00aa11bb22cc"
    async with open_cascade(everos_root, sink, embedder) as cascade:
        summary = await cascade.rebuild()
        assert summary["failures"] == [] and len(summary["queued"]) == 3
        assert sink.topic_names(trio_id) == ["Cancel scopes", "Child tasks", "Nurseries"]
        child = sink.topics[trio_id][f"{trio_id}_2"]
        assert child.depth == 2 and child.parent_node_id == f"{trio_id}_1"
        assert child.topic_path == "Trio Structured Concurrency > Nurseries > Child tasks"
        cjk = sink.topics[cjk_id][f"{cjk_id}_1"]
        assert (cjk.app_id, cjk.project_id, cjk.content_labels) == ("acme", "handbook", ("medical",))
        assert "诊断" in cjk.topic_name and sink.facts[cjk_id]
        assert empty_id not in sink.topics  # no topic files: nothing for the topic index
        for doc_id in (trio_id, cjk_id, empty_id):
            assert await cascade.db.read(repo.get_document, doc_id) is not None
        assert await cascade.index_statuses([trio_id, cjk_id, empty_id]) == dict.fromkeys(
            [trio_id, cjk_id, empty_id], "indexed")
        original = await cascade.db.read(repo.get_document, trio_id)
        assert original.original_path.endswith("_original/trio.md") and original.source_name == "trio.md"


async def test_rebuild_drops_documents_gone_from_disk_and_indexes_everything_again(
    everos_root: Path, sink: FakeSink, embedder: FakeEmbedder
) -> None:
    async with open_cascade(everos_root, sink, embedder) as cascade:
        await cascade.rebuild()
        shutil.rmtree(everos_root / "acme")
        before = len(sink.replaced)
        summary = await cascade.rebuild()
        assert summary["dropped"] == 3 and len(summary["queued"]) == 2
        assert "d_9b8e7d6c5a41" not in sink.topics
        assert await cascade.db.read(repo.get_document, "d_9b8e7d6c5a41") is None
        assert len(sink.replaced) == before + 1  # the one document with topics, written again


async def test_status_reports_depth_and_index_states(root: Path, sink: FakeSink, embedder: FakeEmbedder) -> None:
    write_document(root, "Trio guide", GUIDE)
    async with open_cascade(root, sink, embedder) as cascade:
        await cascade.sync()
        status = await cascade.status()
        assert status["depth"]["succeeded"] == 1 and status["dead"] == 0 and status["lag_s"] is None
        assert status["index_status"] == {"pending": 0, "indexed": 1, "failed": 0}
        assert cascade.status_block()["healthy"] is True


async def test_documents_queued_past_lag_documents_make_the_index_lag_until_they_are_indexed(
    root: Path, sink: FakeSink, embedder: FakeEmbedder
) -> None:
    """Issue #17 item 4: no index worker runs here, so the queued documents stay waiting."""
    doc_dirs = [write_document(root, f"Guide {n}", GUIDE) for n in range(3)]
    async with open_cascade(root, sink, embedder, lag_documents=2) as cascade:
        for doc_dir in doc_dirs[:2]:
            await cascade.enqueue_document(doc_dir)
        await cascade.refresh_status()
        assert cascade.index_lag() is None and cascade.status_block()["waiting_documents"] == 2
        await cascade.enqueue_document(doc_dirs[2])
        assert cascade.index_lag() is None  # the block is what the last refresh saw
        await cascade.refresh_status()
        assert cascade.index_lag() == {"documents": 3, "bound": 2}
        block = cascade.status_block()
        assert block["lagging"] and block["healthy"] and block["depth"]["queued"] == 3
        await cascade.drain()
        await cascade.refresh_status()
        assert cascade.index_lag() is None and cascade.status_block()["waiting_documents"] == 0


async def test_documents_ahead_counts_the_rows_leased_before_a_documents_own(
    root: Path, sink: FakeSink, embedder: FakeEmbedder
) -> None:
    """What a task in phase ``indexing`` says: oldest first, a vector pass after every other row,
    none ahead once the row runs, nothing for a document that does not wait."""
    doc_dirs = [write_document(root, f"Guide {n}", GUIDE) for n in range(4)]
    first, second, third, vectors = (locate_document(d).doc_id for d in doc_dirs)
    async with open_cascade(root, sink, embedder) as cascade:
        await cascade.enqueue_document(doc_dirs[3])
        await cascade.ledger.enqueue_for_vectors([doc_dirs[3]])  # its row now waits as a vector pass
        for doc_dir in doc_dirs[:3]:
            await cascade.enqueue_document(doc_dir)
        assert await cascade.documents_ahead([first, second, third, vectors, "d_000000000000"]) == {
            first: 0, second: 1, third: 2, vectors: 3}
        [leased] = await cascade.queue.lease("test", 1, 60, later_kinds=("knowledge_document_vectors",))
        assert leased.key == doc_dirs[0]
        assert await cascade.documents_ahead([first, second, third]) == {first: 0, second: 0, third: 1}


async def wait_until(predicate, timeout_s: float = 15) -> None:
    with trio.fail_after(timeout_s):
        while not predicate():
            await trio.sleep(0.02)


async def test_running_cascade_follows_hand_edits_and_deletes(
    root: Path, sink: FakeSink, embedder: FakeEmbedder
) -> None:
    """With its workers running (as in the server): the first scan indexes what is on disk, the
    watcher brings a hand edit and a deletion to the index, and /health's block stays current."""
    doc_dir = write_document(root, "Trio guide", GUIDE)
    doc_id = locate_document(doc_dir).doc_id
    async with open_cascade(root, sink, embedder, watch_debounce_ms=50, scan_interval_seconds=3600) as cascade:
        board = StatusBoard()
        async with trio.open_nursery() as nursery:
            cascade.start_workers(Supervisor(nursery, board, restart_limit=3, restart_window_s=60))
            await wait_until(lambda: doc_id in sink.topics and cascade.watcher.watching)
            topic_file = root / doc_dir / "3_Threads.md"
            topic_file.write_text(topic_file.read_text().replace("worker threads", "goblin threads"))
            await wait_until(lambda: "goblin" in sink.topics[doc_id][f"{doc_id}_3"].content_tokens)
            shutil.rmtree(root / doc_dir)
            await wait_until(lambda: doc_id not in sink.topics)
            await wait_until(lambda: cascade.status_block()["depth"]["succeeded"] == 1)
            assert cascade.status_block()["healthy"] and board.workers["cascade-watcher"]["restarts"] == 0
            nursery.cancel_scope.cancel()
        assert await cascade.db.read(repo.get_document, doc_id) is None
