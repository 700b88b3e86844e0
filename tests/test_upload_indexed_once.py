"""One upload, through the full server with the watcher on: its markdown is written once and never
read back, its rows are written once, and it is queued into the cascade and indexed once (issue
#14; before, the cascade parsed it and wrote its rows again, and the watcher queued it a second
time)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import trio

import everos.knowledge._markdown as markdown
from everos.cascade import CascadeService
from everos.providers import BuiltinEmbedder
from everos.store import STAGING_DIRNAME, LeasedQueue

from .conftest import knowledge_server

API = "/api/v1/knowledge"


def big_markdown(target_bytes: int = 80_000) -> bytes:
    parts, n = ["# Big notes\n\n"], 0
    while sum(map(len, parts)) < target_bytes:
        n += 1
        parts.append(f"## Section {n}\n\n"
                     + " ".join(f"Sentence {i} of section {n} is about topic {n % 7}." for i in range(12)) + "\n\n")
    return "".join(parts).encode()


async def wait_indexed(client, doc_id: str) -> None:
    with trio.fail_after(60):
        while (await client.get(f"{API}/documents/{doc_id}")).json()["data"].get("index_status") != "indexed":
            await trio.sleep(0.05)


def count_cascade_work(monkeypatch, watched_dirs: list[str] | None = None) -> dict[str, int]:
    """Counts, from now on: markdown files parsed, rows queued into the cascade, index attempts,
    and directories the watcher looked at (``enqueue_if_changed``; each added to ``watched_dirs``
    once the call is over)."""
    counts = {"parsed": 0, "queued": 0, "attempts": 0, "watched": 0}
    real_parse, real_enqueue, real_lease = markdown.parse_markdown, LeasedQueue.enqueue, LeasedQueue.lease
    real_watched = CascadeService.enqueue_if_changed

    def parse(text):
        counts["parsed"] += 1
        return real_parse(text)

    async def enqueue(self, *args, **kwargs):
        counts["queued"] += self._t == "md_change_state"
        return await real_enqueue(self, *args, **kwargs)

    async def lease(self, *args, **kwargs):
        jobs = await real_lease(self, *args, **kwargs)
        counts["attempts"] += len(jobs) if self._t == "md_change_state" else 0
        return jobs

    async def watched(self, doc_dir, *args, **kwargs):
        counts["watched"] += 1
        try:
            return await real_watched(self, doc_dir, *args, **kwargs)
        finally:
            if watched_dirs is not None:
                watched_dirs.append(doc_dir)  # once whatever it queued is queued

    monkeypatch.setattr(markdown, "parse_markdown", parse)
    monkeypatch.setattr(CascadeService, "enqueue_if_changed", watched)
    monkeypatch.setattr(LeasedQueue, "enqueue", enqueue)
    monkeypatch.setattr(LeasedQueue, "lease", lease)
    return counts


async def test_an_80_kb_upload_is_never_read_back_and_is_written_queued_and_indexed_once(root: Path, monkeypatch) -> None:
    counts = count_cascade_work(monkeypatch)
    async with knowledge_server(root, cascade__watch_debounce_ms=300) as server:
        # A first document makes the category directory, so the watcher sees the next one's files.
        first = await server.client.post(f"{API}/documents", files={"file": ("a.md", b"# A\n\nA first note.\n")},
                                         data={"title": "First", "category_id": "Technology"})
        await wait_indexed(server.client, first.json()["data"]["doc_id"])
        db = root / ".index" / "sqlite" / "everos.db"
        with sqlite3.connect(db) as conn:
            conn.executescript("""
                CREATE TABLE row_writes (doc_id TEXT);
                CREATE TRIGGER row_insert AFTER INSERT ON knowledge_documents
                    BEGIN INSERT INTO row_writes VALUES (new.doc_id); END;
                CREATE TRIGGER row_update AFTER UPDATE ON knowledge_documents
                    BEGIN INSERT INTO row_writes VALUES (new.doc_id); END;
            """)
        counts.update(dict.fromkeys(counts, 0))
        body = big_markdown()
        response = await server.client.post(f"{API}/documents", files={"file": ("big.md", body)},
                                            data={"title": "Big notes", "category_id": "Technology"})
        assert response.status_code == 201, response.text
        doc_id = response.json()["data"]["doc_id"]
        await wait_indexed(server.client, doc_id)
        with trio.fail_after(30):
            while not counts["watched"]:  # the watcher saw the upload's files
                await trio.sleep(0.05)
        await trio.sleep(1.0)  # and whatever it would do about them is done
        with sqlite3.connect(db) as conn:
            writes = [row[0] for row in conn.execute("SELECT doc_id FROM row_writes")]
            topics = conn.execute("SELECT count(*) FROM knowledge_topics WHERE doc_id = ?", (doc_id,)).fetchone()[0]
        assert len(body) >= 80_000 and topics > 100
        assert {k: counts[k] for k in ("parsed", "queued", "attempts")} == {"parsed": 0, "queued": 1, "attempts": 1}
        assert writes == [doc_id]
        hits = (await server.client.post(f"{API}/search", json={"query": "Sentence section topic"})).json()
        assert hits["data"]["hits"]


async def test_with_a_slow_embedder_an_upload_is_queued_for_its_vectors_once_and_the_watcher_adds_nothing(
    root: Path, monkeypatch
) -> None:
    """With an embedder that makes vectors in a pass of their own (the built-in e5), the upload's
    row is queued again for its vectors right after its keyword pass, before the watcher's event
    for its files (the debounce) comes. That row keeps the upload's receipt, so the watcher
    queues nothing (IndexLedger.handled) and the vector pass reads no markdown either; before,
    the watcher queued it a third time and the vector pass parsed it."""
    monkeypatch.setattr(BuiltinEmbedder, "defers_vectors", True, raising=False)
    watched: list[str] = []
    counts = count_cascade_work(monkeypatch, watched)

    async def settled(client) -> bool:
        cascade = (await client.get("/health")).json()["cascade"]
        return not (cascade["pending"] or cascade["vectors_pending"])

    async with knowledge_server(root, cascade__watch_debounce_ms=2000) as server:
        first = await server.client.post(f"{API}/documents", files={"file": ("a.md", b"# A\n\nA first note.\n")},
                                         data={"title": "First", "category_id": "Technology"})
        first_dir = Path(first.json()["data"]["md_path"]).relative_to(root).as_posix()
        with trio.fail_after(30):  # the first document is done with, watcher event included
            while first_dir not in watched or not await settled(server.client):
                await trio.sleep(0.05)
        counts.update(dict.fromkeys(counts, 0))
        response = await server.client.post(f"{API}/documents", files={"file": ("notes.md", big_markdown(8_000))},
                                            data={"title": "Notes", "category_id": "Technology"})
        assert response.status_code == 201, response.text
        doc_dir = Path(response.json()["data"]["md_path"]).relative_to(root).as_posix()
        with trio.fail_after(30):
            # its keyword pass, its vector pass and the watcher's event for its files (the debounce)
            while doc_dir not in watched or not await settled(server.client):
                await trio.sleep(0.05)
        assert counts == {"parsed": 0, "queued": 2, "attempts": 2, "watched": 1}


async def test_a_patch_is_indexed_from_the_rows_it_wrote_which_are_its_markdown(root: Path, monkeypatch) -> None:
    """PATCH reads the document's markdown once (to rewrite it) and writes its projection; the
    cascade indexes the moved document from those rows, which are the new files' rows."""
    from everos.cascade import DocumentFiles, parse_document
    from everos.ingest import _repository as repo

    async with knowledge_server(root) as server:
        created = (await server.client.post(f"{API}/documents", files={"file": ("g.md", b"# Guide\n\n## A\nAlpha.\n")},
                                            data={"title": "Guide"})).json()["data"]
        doc_id = created["doc_id"]
        await wait_indexed(server.client, doc_id)
        parsed: list[str] = []
        real_parse = markdown.parse_markdown

        def parse(text):
            meta, body = real_parse(text)
            parsed.append(meta.get("type"))
            return meta, body

        monkeypatch.setattr(markdown, "parse_markdown", parse)
        response = await server.client.patch(f"{API}/documents/{doc_id}", json={"title": "Moved guide"})
        assert response.status_code == 200, response.text
        await wait_indexed(server.client, doc_id)
        with trio.fail_after(30):
            while (await server.client.get("/health")).json()["cascade"]["pending"]:
                await trio.sleep(0.05)
        assert parsed.count("knowledge_document") == 1  # the PATCH's own read of index.md
        monkeypatch.undo()
        with sqlite3.connect(root / ".index" / "sqlite" / "everos.db") as conn:
            conn.row_factory = sqlite3.Row
            stored = repo.load_rows(conn, doc_id)
        new_dir = (root / stored.md_path).parent
        texts = {p.name: p.read_text(encoding="utf-8") for p in new_dir.glob("*.md")}
        relative = new_dir.relative_to(root).as_posix()
        from_files = parse_document(DocumentFiles(relative, "fp", texts, "g.md")).rows
        assert new_dir.name.startswith("Moved_guide_")
        assert (stored.content, stored.topic_paths, stored.original_path) == (
            from_files.content, from_files.topic_paths, from_files.original_path)


async def test_an_80_kb_upload_costs_one_fsync_per_file_it_writes(root: Path, monkeypatch) -> None:
    """G6 without waste (#17): the inbox copy, each published file and each directory it enters are
    fsynced once; staged files are not written through a temporary file and rename each."""
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    async with knowledge_server(root) as server:
        first = await server.client.post(f"{API}/documents", files={"file": ("a.md", b"# A\n\nA first note.\n")},
                                         data={"title": "First", "category_id": "Technology"})
        await wait_indexed(server.client, first.json()["data"]["doc_id"])
        monkeypatch.setattr(os, "fsync", recording_fsync)
        response = await server.client.post(f"{API}/documents", files={"file": ("big.md", big_markdown())},
                                            data={"title": "Big notes", "category_id": "Technology"})
        assert response.status_code == 201, response.text
        doc_id = response.json()["data"]["doc_id"]
        await wait_indexed(server.client, doc_id)
        monkeypatch.setattr(os, "fsync", real_fsync)
        doc_dir = Path(response.json()["data"]["md_path"])
    published = [p for p in doc_dir.rglob("*") if p.is_file()]
    assert len(published) > 60  # index.md, one file per section, the original
    assert len(synced) == len(set(synced)), "something was fsynced twice"
    staged = [Path(p) for p in synced if Path(p).is_relative_to(root / STAGING_DIRNAME)]
    staged_files = [p for p in staged if p.suffix]  # stage-*/name.md and stage-*/_original/big.md
    assert sorted(p.name for p in staged_files) == sorted(p.name for p in published)
    # Besides the published files: the inbox copy and its directory, the two staging directories
    # and the category directory the document moved into (not .tmp, which it left).
    others = sorted(set(synced) - set(map(str, staged_files)))
    assert len(others) == 5 and str(root / STAGING_DIRNAME) not in others, others


async def test_a_replace_in_place_is_queued_and_indexed_once_and_the_watcher_adds_nothing(
        root: Path, monkeypatch) -> None:
    """PUT with the same title and category publishes over the document's directory (one atomic
    exchange): the watcher sees every file of it rewritten, and the old tree leave through .tmp;
    the ledger's receipt (IndexLedger.handled) still makes it one queued row, one attempt, no
    markdown read back (#17 item 6)."""
    watched: list[str] = []
    counts = count_cascade_work(monkeypatch, watched)
    async with knowledge_server(root, cascade__watch_debounce_ms=300) as server:
        created = await server.client.post(f"{API}/documents", files={"file": ("notes.md", big_markdown(8_000))},
                                           data={"title": "Notes", "category_id": "Technology"})
        assert created.status_code == 201, created.text
        doc_id = created.json()["data"]["doc_id"]
        doc_dir = Path(created.json()["data"]["md_path"]).relative_to(root).as_posix()
        await wait_indexed(server.client, doc_id)
        with trio.fail_after(30):
            while doc_dir not in watched:
                await trio.sleep(0.05)
        await trio.sleep(1.0)
        counts.update(dict.fromkeys(counts, 0))
        watched.clear()
        replaced = await server.client.put(f"{API}/documents/{doc_id}",
                                           files={"file": ("notes.md", big_markdown(12_000).replace(b"topic", b"theme"))},
                                           data={"title": "Notes", "category_id": "Technology"})
        assert replaced.status_code == 200, replaced.text
        assert Path(replaced.json()["data"]["md_path"]).relative_to(root).as_posix() == doc_dir
        await wait_indexed(server.client, doc_id)
        with trio.fail_after(30):
            while doc_dir not in watched:  # the watcher saw the new files
                await trio.sleep(0.05)
        await trio.sleep(1.0)  # and whatever it would do about them is done
        assert {k: counts[k] for k in ("parsed", "queued", "attempts")} == {"parsed": 0, "queued": 1, "attempts": 1}
        hits = (await server.client.post(f"{API}/search", json={"query": "theme"})).json()["data"]["hits"]
        assert hits and all(h["topic_id"].startswith(doc_id) for h in hits)
