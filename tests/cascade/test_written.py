"""A document its writer queued with the receipt of its files is indexed from the rows the writer
saved: not read back, not parsed, not written again, not queued again by the watcher. Any change
to its files brings the markdown back in."""

from __future__ import annotations

from pathlib import Path

import pytest

from everos.cascade import CascadeService
from everos.knowledge import DEFAULT_CATEGORIES, document_dir, extract_structure, new_doc_id, render_document_files
from everos.ingest import _repository as repo
from everos.knowledge._fingerprint import WrittenFiles, written_files
from everos.knowledge._projection import content_from_extraction, project

from .conftest import GUIDE, FakeEmbedder, FakeSink, open_cascade


async def publish(cascade: CascadeService, root: Path, title: str, text: str) -> tuple[str, str, WrittenFiles]:
    """Publish a document as ingest does: files staged, their receipt taken, one rename, the
    projection saved. Returns its directory (relative), doc id and receipt."""
    doc_id = new_doc_id()
    extracted = extract_structure(text, title, DEFAULT_CATEGORIES, category_id="Technology")
    final = document_dir(root, "default", "default", "Technology", title, doc_id)
    relative = final.relative_to(root).as_posix()
    staging = root / ".tmp" / doc_id
    staging.mkdir(parents=True)
    files = render_document_files(doc_id, title, extracted, source_name="source.md")
    for name, content in files.items():
        (staging / name).write_text(content, encoding="utf-8")
    content = content_from_extraction(doc_id, title, extracted, source_name="source.md")
    written = written_files(staging, relative, content, files)
    assert written is not None
    final.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(final)
    rows = project(content, doc_dir=relative, app_id="default", project_id="default", content_sha256="sha")
    await cascade.db.write(repo.save_rows, rows, 1.0)
    return relative, doc_id, written


@pytest.fixture
def parses(monkeypatch) -> list[str]:
    """The directories the indexer parses."""
    import everos.cascade._indexer as indexer

    seen: list[str] = []
    real = indexer.parse_document

    def counting(files):
        seen.append(files.doc_dir)
        return real(files)

    monkeypatch.setattr(indexer, "parse_document", counting)
    return seen


@pytest.fixture
def row_writes(monkeypatch) -> list[str]:
    """The documents whose rows are written (the one repository call)."""
    seen: list[str] = []
    real = repo.save_rows

    def counting(conn, rows, now):
        seen.append(rows.content.doc_id)
        return real(conn, rows, now)

    monkeypatch.setattr(repo, "save_rows", counting)
    return seen


async def test_a_document_queued_with_its_receipt_is_indexed_from_its_rows(
    root: Path, sink: FakeSink, embedder: FakeEmbedder, parses: list[str], row_writes: list[str]
) -> None:
    async with open_cascade(root, sink, embedder) as cascade:
        doc_dir, doc_id, written = await publish(cascade, root, "Trio guide", GUIDE)
        row_writes.clear()
        await cascade.enqueue_document(doc_dir, written=written)
        [result] = await cascade.drain()
        assert result.outcome.action == "indexed" and result.outcome.topics == 3
        assert parses == [] and row_writes == []
        assert sink.topic_names(doc_id) == ["Cancel scopes", "Nurseries", "Threads"]
        assert await cascade.index_statuses([doc_id]) == {doc_id: "indexed"}
        # The receipt's signature is the files': read back, they are what was indexed.
        assert (await cascade.sync(doc_dir))["outcomes"] == {"unchanged": 1}
        assert parses == [doc_dir] and row_writes == []
        assert (await cascade.db.read(repo.get_document, doc_id)).content_sha256 == "sha"


async def test_a_hand_edit_after_the_receipt_is_read_from_the_files(
    root: Path, sink: FakeSink, embedder: FakeEmbedder, parses: list[str], row_writes: list[str]
) -> None:
    async with open_cascade(root, sink, embedder) as cascade:
        doc_dir, doc_id, written = await publish(cascade, root, "Trio guide", GUIDE)
        topic_file = next((root / doc_dir).glob("2_*.md"))
        topic_file.write_text(topic_file.read_text().replace("child tasks", "child tasks and zucchini"))
        row_writes.clear()
        await cascade.enqueue_document(doc_dir, written=written)
        [result] = await cascade.drain()
        assert result.outcome.action == "indexed" and parses == [doc_dir] and row_writes == [doc_id]
        assert "zucchini" in (await cascade.db.read(repo.get_topic, f"{doc_id}_2"))["content"]


async def test_rows_saved_for_another_directory_are_not_trusted(
    root: Path, sink: FakeSink, embedder: FakeEmbedder, parses: list[str]
) -> None:
    async with open_cascade(root, sink, embedder) as cascade:
        doc_dir, doc_id, written = await publish(cascade, root, "Trio guide", GUIDE)
        await cascade.db.execute("UPDATE knowledge_documents SET md_path = 'elsewhere/index.md' WHERE doc_id = ?",
                                 (doc_id,))
        await cascade.enqueue_document(doc_dir, written=written)
        [result] = await cascade.drain()
        assert result.outcome.action == "indexed" and parses == [doc_dir]
        assert (await cascade.db.read(repo.get_document, doc_id)).md_path == f"{doc_dir}/index.md"


async def test_the_watcher_does_not_queue_again_what_a_writer_queued(
    root: Path, sink: FakeSink, embedder: FakeEmbedder
) -> None:
    async with open_cascade(root, sink, embedder) as cascade:
        doc_dir, doc_id, written = await publish(cascade, root, "Trio guide", GUIDE)
        assert await cascade.enqueue_if_changed(doc_dir, "watch") == doc_dir  # nobody queued it
        await cascade.enqueue_document(doc_dir, written=written)
        assert await cascade.enqueue_if_changed(doc_dir, "watch") is None  # queued
        assert [r.outcome.action for r in await cascade.drain()] == ["indexed"]
        assert await cascade.enqueue_if_changed(doc_dir, "watch") is None  # done
        assert await cascade.drain() == []
        topic_file = next((root / doc_dir).glob("1_*.md"))
        topic_file.write_text(topic_file.read_text() + "\nMore.\n")
        assert await cascade.enqueue_if_changed(doc_dir, "watch") == doc_dir  # a hand edit
        [job] = await cascade.queue.list()
        assert job.payload == {"doc_dir": doc_dir, "reason": "watch"}
        assert [r.outcome.action for r in await cascade.drain()] == ["indexed"]


class DeferringEmbedder(FakeEmbedder):
    """A slow model (like the built-in e5): its vectors come in a second attempt of their own."""

    defers_vectors = True


async def test_the_vector_pass_of_a_writer_s_document_keeps_its_receipt(
    root: Path, sink: FakeSink, parses: list[str], row_writes: list[str]
) -> None:
    """With a slow embedder an upload is queued again for its vectors right after its keyword
    pass. That row keeps the writer's receipt: the vector pass indexes the writer's rows (no read
    back, no parse, no row write), and the watcher, whose event for the upload's files comes
    after it (the debounce), still knows them (IndexLedger.handled) and queues nothing."""
    async with open_cascade(root, sink, DeferringEmbedder()) as cascade:
        doc_dir, doc_id, written = await publish(cascade, root, "Trio guide", GUIDE)
        row_writes.clear()
        await cascade.enqueue_document(doc_dir, written=written)
        jobs = await cascade.queue.lease("w", 1, 60)
        keyword_pass = await cascade.workers.attempt(jobs[0], "w")
        assert keyword_pass.outcome.vectors_pending is not None  # deferred: queued for its vectors
        assert await cascade.enqueue_if_changed(doc_dir, "watch") is None
        [vector_pass] = await cascade.drain()
        assert vector_pass.outcome.action == "indexed" and vector_pass.outcome.vectors_pending is None
        assert await cascade.enqueue_if_changed(doc_dir, "watch") is None
        assert parses == [] and row_writes == [] and await cascade.drain() == []
