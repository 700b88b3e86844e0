"""The topic cache keeps what was derived for a topic's content (facts, and whose vectors the
index holds), not the vectors: those are read back from the index (issue #17 item 5). Against the
in-memory sink, which stands for LanceDB; the migration test writes a root the way everos did
before (a ``vectors`` blob per topic) and opens it with this code."""

from __future__ import annotations

import dataclasses
import json
from array import array
from pathlib import Path

import pytest

from everos.cascade import _state as state
from everos.cascade._indexer import embedder_identity
from everos.cascade._rows import locate_document
from everos.store import MigrationSet

from .conftest import GUIDE, FakeEmbedder, FakeSink, open_cascade, write_document


def _vector_bytes(conn) -> dict[str, int]:
    """``{topic_id: bytes in its vectors column}`` (the column old roots filled)."""
    return dict(conn.execute("SELECT topic_id, length(vectors) FROM cascade_topic_cache"))


def _vectors_by_name(sink: FakeSink, doc_id: str) -> dict[str, tuple[float, ...]]:
    return {row.topic_name: row.vector for row in sink.topics[doc_id].values()}


async def test_unchanged_topics_take_their_vectors_from_the_index_not_from_sqlite(
    root: Path, sink: FakeSink, embedder: FakeEmbedder
) -> None:
    """G8: an edited document embeds only the edited topic; the others keep the vectors the index
    holds (read once, for that attempt), and SQLite stores no vector at all."""
    doc_dir = write_document(root, "Trio guide", GUIDE)
    doc_id = locate_document(doc_dir).doc_id
    async with open_cascade(root, sink, embedder) as cascade:
        await cascade.sync()
        assert sink.vector_reads == []  # a new document has nothing to reuse: the index is not asked
        before = _vectors_by_name(sink, doc_id)
        embedded = len(embedder.texts)
        topic_file = root / doc_dir / "2_Nurseries.md"
        topic_file.write_text(topic_file.read_text().replace("owns its child tasks", "supervises goblins"))
        assert (await cascade.sync())["outcomes"] == {"indexed": 1}
        assert len(embedder.texts) - embedded == 1 + 2  # the edited topic and its two facts
        assert sink.vector_reads == [doc_id]
        after = _vectors_by_name(sink, doc_id)
        assert after["Threads"] == before["Threads"] and after["Cancel scopes"] == before["Cancel scopes"]
        assert after["Nurseries"] != before["Nurseries"]
        assert all(f.vector for f in sink.facts[doc_id])
        assert set((await cascade.db.read(_vector_bytes)).values()) == {0}
        cached = await cascade.db.read(state.load_cache, doc_id)
    assert {entry.embedder for entry in cached.values()} == {embedder_identity(embedder)}


@pytest.mark.parametrize("damage", ["digest", "vector", "fact"])
async def test_a_vector_the_index_does_not_hold_is_made_again(
    root: Path, sink: FakeSink, embedder: FakeEmbedder, damage: str
) -> None:
    """G8: the cache names an embedder, but the index's row of an unchanged topic has another
    digest, no vector, or lost a fact: that topic is embedded again rather than indexed without."""
    doc_dir = write_document(root, "Trio guide", GUIDE)
    doc_id = locate_document(doc_dir).doc_id
    async with open_cascade(root, sink, embedder) as cascade:
        await cascade.sync()
        threads = next(r for r in sink.topics[doc_id].values() if r.topic_name == "Threads")
        if damage == "digest":
            sink.topics[doc_id][threads.id] = dataclasses.replace(threads, content_sha256="other")
        elif damage == "vector":
            sink.topics[doc_id][threads.id] = dataclasses.replace(threads, vector=())
        else:
            sink.facts[doc_id] = [f for f in sink.facts[doc_id] if f.id != f"{threads.id}_f1"]
        embedded = len(embedder.texts)
        topic_file = root / doc_dir / "2_Nurseries.md"
        topic_file.write_text(topic_file.read_text().replace("owns its child tasks", "supervises goblins"))
        assert (await cascade.sync())["outcomes"] == {"indexed": 1}
        assert len(embedder.texts) - embedded == 2 * (1 + 2)  # Nurseries and Threads, with their facts
    assert all(r.vector for r in sink.topics[doc_id].values()) and len(sink.facts[doc_id]) == 6
    assert all(f.vector for f in sink.facts[doc_id])


async def test_a_failed_commit_keeps_the_fresh_facts_but_names_no_embedder(
    root: Path, sink: FakeSink, embedder: FakeEmbedder
) -> None:
    """G7/G8: facts derived afresh are cached before the index write (a model's facts are not asked
    for twice); an entry names its embedder only once the index holds its vectors, so the attempt
    after a failed commit embeds again instead of trusting vectors that never landed."""
    doc_dir = write_document(root, "Trio guide", GUIDE)
    doc_id = locate_document(doc_dir).doc_id
    sink.fail_replace = 10
    async with open_cascade(root, sink, embedder, max_attempts=1) as cascade:
        summary = await cascade.sync()
        assert summary["failures"] and sink.replaced == []
        cached = await cascade.db.read(state.load_cache, doc_id)
        assert {entry.embedder for entry in cached.values()} == {state.KEYWORD_ONLY}
        assert sum(len(entry.facts) for entry in cached.values()) == 6
        sink.fail_replace = 0
        embedded = len(embedder.texts)
        await cascade.fix(apply=True)
        assert await cascade.index_statuses([doc_id]) == {doc_id: "indexed"}
        assert len(embedder.texts) - embedded == 3 * (1 + 2)
        cached = await cascade.db.read(state.load_cache, doc_id)
    assert {entry.embedder for entry in cached.values()} == {embedder_identity(embedder)}


def _old_store_cache(conn, doc_id: str, entries) -> None:
    """``store_cache`` as everos wrote it before issue #17: every vector in a blob."""
    def pack(entry) -> bytes:
        packed = array("f", entry.vector)
        for vector in entry.fact_vectors:
            packed.extend(vector)
        return packed.tobytes()

    conn.executemany(
        "INSERT OR REPLACE INTO cascade_topic_cache (topic_id, doc_id, content_sha256, embedder, facts_source,"
        " facts, vectors, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(e.topic_id, doc_id, e.content_sha256, e.embedder, e.facts_source, json.dumps(list(e.facts)), pack(e),
          e.created_at) for e in entries])


async def test_a_root_whose_cache_held_vectors_opens_and_reindexes_correctly(
    root: Path, sink: FakeSink, embedder: FakeEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """G8 across the upgrade: a root indexed by the old layout opens (no table rewrite: the blobs
    stay until their rows are written again; the facts stay); a fully indexed document's unchanged
    topics take their vectors from the index; a document that was not fully indexed is embedded
    again (its cached embedder could name vectors that never reached the index), with its cached
    facts."""
    done_dir = write_document(root, "Trio guide", GUIDE)
    half_dir = write_document(root, "Other guide", GUIDE.replace("Trio guide", "Other guide"))
    done_id, half_id = locate_document(done_dir).doc_id, locate_document(half_dir).doc_id
    with monkeypatch.context() as old:
        old.setattr(state, "MIGRATIONS", MigrationSet("cascade", state.MIGRATIONS.steps[:3]))
        old.setattr(state, "store_cache", _old_store_cache)
        async with open_cascade(root, sink, embedder) as cascade:
            await cascade.sync()
            assert min((await cascade.db.read(_vector_bytes)).values()) > 0
            await cascade.db.write(lambda conn: conn.execute(
                "UPDATE cascade_index_state SET vectors_pending = 'the embedder failed' WHERE doc_id = ?", (half_id,)))
    before = _vectors_by_name(sink, done_id)
    async with open_cascade(root, sink, embedder) as cascade:
        blobs = await cascade.db.read(_vector_bytes)
        assert all(blobs[t] == 0 for t in blobs if t.startswith(half_id))  # not trusted: cleared
        done = await cascade.db.read(state.load_cache, done_id)
        half = await cascade.db.read(state.load_cache, half_id)
        assert {e.embedder for e in done.values()} == {embedder_identity(embedder)}
        assert {e.embedder for e in half.values()} == {state.KEYWORD_ONLY}
        assert sum(len(e.facts) for e in half.values()) == 6
        embedded = len(embedder.texts)
        topic_file = root / done_dir / "2_Nurseries.md"
        topic_file.write_text(topic_file.read_text().replace("owns its child tasks", "supervises goblins"))
        assert (await cascade.sync(done_dir))["outcomes"] == {"indexed": 1}
        assert len(embedder.texts) - embedded == 1 + 2
        assert _vectors_by_name(sink, done_id)["Threads"] == before["Threads"]
        embedded = len(embedder.texts)
        assert await cascade.reembed() == 1
        [result] = await cascade.drain()
        assert result.outcome.action == "indexed" and result.outcome.vectors_pending is None
        assert len(embedder.texts) - embedded == 3 * (1 + 2)
        assert await cascade.index_statuses([done_id, half_id]) == {done_id: "indexed", half_id: "indexed"}
        blobs = await cascade.db.read(_vector_bytes)
        assert blobs[f"{done_id}_2"] == 0 and blobs[f"{done_id}_3"] > 0  # rewritten / left as it was
    assert all(r.vector for r in sink.topics[half_id].values()) and all(f.vector for f in sink.facts[half_id])
