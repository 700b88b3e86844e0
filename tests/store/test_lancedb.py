"""The LanceDB index: tables, the one writer, the reads search needs, and the open-file budget.

LanceDB runs in real threads here, so these tests use real time (no ``autojump_clock``: a clock
that jumps while a thread works would fire deadlines that never passed).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import lancedb
from lancedb.index import FTS
import pytest
import trio
import trio.testing

from everos.config import CascadeSettings, LanceDBSettings
from everos.errors import ConfigError, ServiceUnavailable, StoreBusy
from everos.store.index import FACT_TABLE, TOPIC_TABLE, IndexStore, IndexWriter
from everos.store._index_rows import FactRow, TopicRow

DIM = 8


def vector(seed: int) -> tuple[float, ...]:
    return tuple(1.0 if i == seed % DIM else 0.1 for i in range(DIM))


def topic(doc_id: str, index: int, text: str, *, app_id: str = "app", project_id: str = "proj",
          sha: str = "h") -> TopicRow:
    tokens = text.lower()
    return TopicRow(
        id=f"{doc_id}_{index}", doc_id=doc_id, app_id=app_id, project_id=project_id, category_id="Technology",
        topic_name=f"Topic {index}", topic_path=f"Doc > Topic {index}", depth=1 if index else 0,
        parent_node_id="", summary=text, summary_tokens=tokens, content_tokens=tokens, content_labels=("note",),
        md_path=f"app/proj/knowledge/Technology/Doc_{doc_id}/{index}.md", content_sha256=f"{sha}{index}",
        vector=vector(index), created_at=1.0, updated_at=2.0,
    )


def fact(doc_id: str, topic_index: int, fact_index: int, text: str, *, app_id: str = "app") -> FactRow:
    return FactRow(
        id=f"{doc_id}_{topic_index}_f{fact_index}", topic_id=f"{doc_id}_{topic_index}", doc_id=doc_id,
        app_id=app_id, project_id="proj", fact_index=fact_index, text=text, text_tokens=text.lower(),
        md_path="m.md", vector=vector(fact_index),
    )


def document(doc_id: str, topics: int = 2, facts_per_topic: int = 2, sha: str = "h") -> tuple[list, list]:
    return (
        [topic(doc_id, i, f"subject{i} of {doc_id}", sha=sha) for i in range(topics)],
        [fact(doc_id, i, j, f"fact{j} about subject{i}") for i in range(topics) for j in range(facts_per_topic)],
    )


async def open_store(path: Path, dim: int = DIM, **changes: object) -> IndexStore:
    settings = dataclasses.replace(LanceDBSettings(), **changes)
    return await IndexStore.open(path, dim=dim, settings=settings, limiter=trio.CapacityLimiter(2))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[IndexStore]:
    index = await open_store(tmp_path / "lancedb")
    yield index
    await index.aclose()


@pytest.fixture
async def writer(store: IndexStore, nursery: trio.Nursery) -> IndexWriter:
    index_writer = IndexWriter(store, CascadeSettings())
    await nursery.start(index_writer.run)
    return index_writer


async def all_ids(store: IndexStore, table: str) -> set[str]:
    def read() -> set[str]:
        return set(lancedb.connect(store.path).open_table(table).to_arrow().column("id").to_pylist())
    return await trio.to_thread.run_sync(read)


# -- opening ----------------------------------------------------------------------------------------


def index_kinds(path: Path) -> dict[str, dict[str, str]]:
    db = lancedb.connect(path)
    return {name: {i.columns[0]: i.index_type for i in db.open_table(name).list_indices()}
            for name in (TOPIC_TABLE, FACT_TABLE)}


async def test_open_creates_both_tables_with_full_text_and_scalar_indexes(store: IndexStore) -> None:
    """The topics' token columns have full-text indexes; the keys the writes and reads filter
    on have scalar ones; nothing indexes the facts' text, which no query searches."""
    assert await store.count_rows() == {TOPIC_TABLE: 0, FACT_TABLE: 0}
    assert await trio.to_thread.run_sync(index_kinds, store.path) == {
        TOPIC_TABLE: {"summary_tokens": "FTS", "content_tokens": "FTS", "id": "BTree", "doc_id": "BTree",
                      "app_id": "Bitmap", "project_id": "Bitmap"},
        FACT_TABLE: {"id": "BTree", "doc_id": "BTree", "topic_id": "BTree"},
    }


async def test_open_drops_the_full_text_index_earlier_versions_made_on_facts(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "lancedb")
    await store.aclose()

    def add_old_index() -> None:
        table = lancedb.connect(store.path).open_table(FACT_TABLE)
        table.create_index("text_tokens", config=FTS(base_tokenizer="whitespace", with_position=False))

    await trio.to_thread.run_sync(add_old_index)
    assert "text_tokens" in (await trio.to_thread.run_sync(index_kinds, store.path))[FACT_TABLE]
    again = await open_store(store.path)
    assert "text_tokens" not in (await trio.to_thread.run_sync(index_kinds, store.path))[FACT_TABLE]
    await again.aclose()


async def test_reopen_keeps_rows_and_reset_drops_them(tmp_path: Path, store: IndexStore, writer: IndexWriter) -> None:
    await writer.replace_document("d_1", *document("d_1"))
    again = await open_store(store.path)
    assert await again.count_rows() == {TOPIC_TABLE: 2, FACT_TABLE: 4}
    reset = await IndexStore.open(store.path, dim=DIM, settings=LanceDBSettings(), limiter=trio.CapacityLimiter(1),
                                  reset=True)
    assert await reset.count_rows() == {TOPIC_TABLE: 0, FACT_TABLE: 0}


async def test_width_mismatch_with_existing_table_is_a_clear_error_at_open(store: IndexStore) -> None:
    with pytest.raises(ConfigError, match=r"stores 8-wide vectors but \[embedding\] dim is 16"):
        await open_store(store.path, dim=16)


# -- writing ----------------------------------------------------------------------------------------


async def test_replace_document_converges_to_exactly_the_given_rows(store: IndexStore, writer: IndexWriter) -> None:
    """G8: a replace removes the document's rows that are not given (a deleted topic never lingers)."""
    await writer.replace_document("d_1", *document("d_1", topics=3))
    await writer.replace_document("d_2", *document("d_2", topics=1))
    await writer.replace_document("d_1", *document("d_1", topics=2, facts_per_topic=1))
    assert await all_ids(store, TOPIC_TABLE) == {"d_1_0", "d_1_1", "d_2_0"}
    assert await all_ids(store, FACT_TABLE) == {"d_1_0_f0", "d_1_1_f0", "d_2_0_f0", "d_2_0_f1"}


async def test_replace_document_twice_is_harmless(store: IndexStore, writer: IndexWriter) -> None:
    """G8: running the same step twice leaves the same index."""
    await writer.replace_document("d_1", *document("d_1"))
    await writer.replace_document("d_1", *document("d_1"))
    assert await store.count_rows() == {TOPIC_TABLE: 2, FACT_TABLE: 4}


async def test_delete_document_removes_its_topics_and_facts_and_counts_them(
    store: IndexStore, writer: IndexWriter
) -> None:
    await writer.replace_document("d_1", *document("d_1", topics=3))
    await writer.replace_document("d_2", *document("d_2"))
    assert await writer.delete_document("d_1") == 3
    assert await writer.delete_document("d_1") == 0
    assert await all_ids(store, TOPIC_TABLE) == {"d_2_0", "d_2_1"}
    assert all(fact_id.startswith("d_2_") for fact_id in await all_ids(store, FACT_TABLE))


async def test_topic_hashes_map_each_indexed_topic_to_its_digest(writer: IndexWriter) -> None:
    assert await writer.topic_hashes("d_1") == {}
    await writer.replace_document("d_1", *document("d_1", sha="x"))
    assert await writer.topic_hashes("d_1") == {"d_1_0": "x0", "d_1_1": "x1"}


async def test_queued_operations_coalesce_and_the_last_one_per_document_wins(
    store: IndexStore, nursery: trio.Nursery
) -> None:
    writer = IndexWriter(store, CascadeSettings())
    removed: list[int] = []

    async def delete(doc_id: str) -> None:
        removed.append(await writer.delete_document(doc_id))

    nursery.start_soon(writer.replace_document, "d_1", *document("d_1", topics=3))
    await trio.testing.wait_all_tasks_blocked()
    nursery.start_soon(delete, "d_1")
    await trio.testing.wait_all_tasks_blocked()
    nursery.start_soon(writer.replace_document, "d_2", *document("d_2"))
    # Each operation is checked in a thread before it is queued; a task waiting on a thread counts
    # as blocked, so wait for all three to be in the channel before the writer starts.
    while writer.statistics()["pending_operations"] < 3:
        await trio.sleep(0.01)
    await nursery.start(writer.run)
    while writer.statistics()["operations"] < 3:
        await trio.sleep(0.01)
    assert writer.statistics()["writes"] == 1  # one commit per table for the three operations
    assert removed == [3]
    assert await all_ids(store, TOPIC_TABLE) == {"d_2_0", "d_2_1"}


async def test_a_full_channel_makes_callers_wait(store: IndexStore, nursery: trio.Nursery) -> None:
    """G9: the writer's queue is bounded; callers past it wait instead of buffering."""
    writer = IndexWriter(store, CascadeSettings(writer_queue_batches=2))
    done: list[str] = []

    async def replace(doc_id: str) -> None:
        await writer.replace_document(doc_id, *document(doc_id))
        done.append(doc_id)

    for doc_id in ("d_1", "d_2", "d_3"):
        nursery.start_soon(replace, doc_id)
    await trio.testing.wait_all_tasks_blocked()
    assert writer.statistics()["pending_operations"] == 2
    assert done == []
    await nursery.start(writer.run)
    while len(done) < 3:
        await trio.sleep(0.01)
    assert await store.count_rows() == {TOPIC_TABLE: 6, FACT_TABLE: 12}


async def test_a_queue_that_stays_full_or_a_commit_that_never_comes_raises_store_busy(tmp_path: Path) -> None:
    """G3: waiting for a slot and waiting for the commit have deadlines too."""
    store = await open_store(tmp_path / "lancedb", call_timeout_seconds=0.2)
    writer = IndexWriter(store, CascadeSettings(writer_queue_batches=1))  # and never run

    async def first() -> None:
        with pytest.raises(StoreBusy, match="not committed within 0.2 s"):
            await writer.delete_document("d_1")  # takes the only slot

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(StoreBusy, match="queue stayed full"):
            await writer.delete_document("d_2")


async def test_rows_that_do_not_fit_are_refused_before_anything_is_queued(writer: IndexWriter) -> None:
    """G10: a bad row changes nothing."""
    topics, facts = document("d_1")
    with pytest.raises(ValueError, match="8"):
        await writer.replace_document("d_1", [dataclasses.replace(topics[0], vector=(1.0, 2.0))], [])
    with pytest.raises(ValueError, match="belongs to d_1"):
        await writer.replace_document("d_2", topics, [])
    with pytest.raises(ValueError, match="repeat"):
        await writer.replace_document("d_1", [topics[0], topics[0]], [])
    assert writer.statistics()["operations"] == 0


async def test_rows_without_vectors_are_stored_and_found_by_keyword_only(
    store: IndexStore, writer: IndexWriter
) -> None:
    await writer.replace_document("d_1", [dataclasses.replace(topic("d_1", 0, "plain words"), vector=())], [])
    assert [row["id"] for row, _ in await store.keyword_topics(["plain"], "app", "proj", 5)] == ["d_1_0"]
    assert await store.vector_topics(vector(0), "app", "proj", 5) == []


async def test_a_cancelled_caller_still_gets_its_write_landed_whole(store: IndexStore, nursery: trio.Nursery) -> None:
    """G5a/G8: once handed to the writer, a write lands whole whatever happens to its caller."""
    writer = IndexWriter(store, CascadeSettings())
    topics, facts = document("d_1", topics=50, facts_per_topic=4)
    with trio.move_on_after(0.05):
        await writer.replace_document("d_1", topics, facts)  # queued; the writer is not running yet
    await nursery.start(writer.run)
    while writer.statistics()["writes"] < 1:
        await trio.sleep(0.01)
    assert await store.count_rows() == {TOPIC_TABLE: 50, FACT_TABLE: 200}


async def test_a_writer_cancelled_mid_batch_finishes_the_batch(store: IndexStore) -> None:
    writer = IndexWriter(store, CascadeSettings())
    topics, facts = document("d_1", topics=100, facts_per_topic=4)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        nursery.start_soon(writer.replace_document, "d_1", topics, facts)
        await trio.testing.wait_all_tasks_blocked()  # the writer waits on its thread now
        assert writer.statistics()["writes"] == 0
        nursery.cancel_scope.cancel()
    assert await store.count_rows() == {TOPIC_TABLE: 100, FACT_TABLE: 400}


async def test_a_failed_commit_reaches_the_caller_and_the_statistics(store: IndexStore, writer: IndexWriter) -> None:
    await store.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await writer.replace_document("d_1", *document("d_1"))
    assert "ClosedResourceError" in writer.statistics()["last_error"]


async def test_operations_left_in_the_queue_fail_when_the_writer_stops(store: IndexStore) -> None:
    writer = IndexWriter(store, CascadeSettings())
    failures: list[BaseException] = []

    async def delete() -> None:
        try:
            await writer.delete_document("d_1")
        except ServiceUnavailable as exc:
            failures.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(delete)
        await trio.testing.wait_all_tasks_blocked()
        with trio.CancelScope() as scope:
            scope.cancel()
            await writer.run()  # cancelled at once: fails what is queued
    assert len(failures) == 1


async def test_statistics_report_rows_versions_and_optimizations(tmp_path: Path, nursery: trio.Nursery) -> None:
    store = await open_store(tmp_path / "lancedb")
    writer = IndexWriter(store, CascadeSettings(optimize_interval_seconds=0.05, optimize_after_commits=1000))
    await nursery.start(writer.run)
    await writer.replace_document("d_1", *document("d_1"))
    while writer.statistics()["optimizations"] < 1:  # the periodic optimize, not the count
        await trio.sleep(0.02)
    stats = writer.statistics()
    assert stats["rows"] == {TOPIC_TABLE: 2, FACT_TABLE: 4}
    assert stats["versions"][TOPIC_TABLE] > 1
    assert stats["last_optimize_at"] is not None and stats["last_error"] is None
    assert stats["pending_operations"] == 0 and stats["queue_capacity"] == 16


async def test_optimize_runs_on_its_thresholds_of_commits_and_rows(tmp_path: Path, nursery: trio.Nursery) -> None:
    """G5b: the tables are optimized after optimize_after_commits commits or optimize_after_rows
    rows written, whichever comes first, and not before."""
    store = await open_store(tmp_path / "lancedb")
    quiet = {"optimize_interval_seconds": 3600.0}
    by_rows = IndexWriter(store, CascadeSettings(optimize_after_commits=1000, optimize_after_rows=10, **quiet))
    await nursery.start(by_rows.run)
    await by_rows.replace_document("d_1", *document("d_1"))  # 6 rows
    assert by_rows.statistics()["optimizations"] == 0
    await by_rows.replace_document("d_2", *document("d_2"))  # 12 rows in all
    while by_rows.statistics()["optimizations"] < 1:
        await trio.sleep(0.02)
    other = await open_store(tmp_path / "other")
    by_commits = IndexWriter(other, CascadeSettings(optimize_after_commits=3, optimize_after_rows=10_000, **quiet))
    await nursery.start(by_commits.run)
    for n in range(2):
        await by_commits.replace_document(f"d_{n}", *document(f"d_{n}"))
    assert by_commits.statistics()["optimizations"] == 0
    await by_commits.replace_document("d_9", *document("d_9"))
    while by_commits.statistics()["optimizations"] < 1:
        await trio.sleep(0.02)
    assert by_commits.statistics()["writes"] == 3


# -- reading ----------------------------------------------------------------------------------------


async def test_keyword_and_vector_reads_never_leave_their_scope(store: IndexStore, writer: IndexWriter) -> None:
    await writer.replace_document("d_1", [topic("d_1", 0, "shared words", app_id="app")], [])
    await writer.replace_document("d_2", [topic("d_2", 0, "shared words", app_id="other")], [])
    for app_id, expected in (("app", ["d_1_0"]), ("other", ["d_2_0"]), ("x' OR '1'='1", [])):
        assert [r["id"] for r, _ in await store.keyword_topics(["shared"], app_id, "proj", 10)] == expected
        assert [r["id"] for r, _ in await store.vector_topics(vector(0), app_id, "proj", 10)] == expected


async def test_keyword_topics_keep_the_better_of_summary_and_content_scores(
    store: IndexStore, writer: IndexWriter
) -> None:
    only_content = dataclasses.replace(topic("d_1", 0, "alpha"), content_tokens="alpha beta beta")
    await writer.replace_document("d_1", [only_content, topic("d_1", 1, "gamma")], [])
    hits = await store.keyword_topics(["beta"], "app", "proj", 10)
    assert hits[0][0] == {"id": "d_1_0", "doc_id": "d_1"} and len(hits) == 1  # recall reads ids only
    assert hits[0][1] > 0
    assert await store.keyword_topics([], "app", "proj", 10) == []


async def test_the_one_keyword_query_scores_each_topic_by_its_better_column(
    store: IndexStore, writer: IndexWriter
) -> None:
    """EverOS runs a query per column and keeps a topic's higher score; the one query over both
    columns gives the same scores."""
    topics = [
        dataclasses.replace(topic("d_1", 0, "x"), summary_tokens="river delta", content_tokens="plain words here"),
        dataclasses.replace(topic("d_1", 1, "x"), summary_tokens="plain", content_tokens="river river delta mouth"),
        dataclasses.replace(topic("d_1", 2, "x"), summary_tokens="river", content_tokens="delta of a river"),
        dataclasses.replace(topic("d_1", 3, "x"), summary_tokens="mountain", content_tokens="snow"),
    ]
    await writer.replace_document("d_1", topics, [])
    table = store._table(TOPIC_TABLE)
    for text in ("river", "delta", "river delta", "mouth plain"):
        best: dict[str, float] = {}
        for column in ("summary_tokens", "content_tokens"):
            found = table.search(text, query_type="fts", fts_columns=column).select(["id", "_score"]).limit(10)
            for row in found.to_list():
                best[row["id"]] = max(best.get(row["id"], 0.0), row["_score"])
        hits = await store.keyword_topics(text.split(), "app", "proj", 10)
        assert {row["id"]: pytest.approx(score) for row, score in hits} == best
        assert [score for _, score in hits] == sorted(best.values(), reverse=True)


async def test_topic_rows_give_what_a_hit_shows_for_the_indexed_topics(store: IndexStore, writer: IndexWriter) -> None:
    await writer.replace_document("d_1", *document("d_1"))
    rows = await store.topic_rows(["d_1_1", "d_1_0", "d_9_9", "d_1_1"])
    assert set(rows) == {"d_1_0", "d_1_1"}
    assert rows["d_1_1"]["topic_name"] == "Topic 1" and "vector" not in rows["d_1_1"]
    assert "content_tokens" not in rows["d_1_1"] and await store.topic_rows([]) == {}


async def test_vector_topics_score_cosine_similarity(store: IndexStore, writer: IndexWriter) -> None:
    await writer.replace_document("d_1", *document("d_1"))
    hits = await store.vector_topics(vector(1), "app", "proj", 10)
    assert [row["id"] for row, _ in hits] == ["d_1_1", "d_1_0"]
    assert hits[0][1] == pytest.approx(1.0, abs=1e-5)


async def test_facts_for_topics_rank_by_vector_or_by_shared_tokens(store: IndexStore, writer: IndexWriter) -> None:
    await writer.replace_document("d_1", *document("d_1", facts_per_topic=3))
    by_vector = await store.facts_for_topics(["d_1_0", "d_1_1"], vector(2), [], 2)
    assert [f["id"] for f, _ in by_vector["d_1_0"]] == ["d_1_0_f2", "d_1_0_f0"]
    assert by_vector["d_1_0"][0][1] == pytest.approx(1.0, abs=1e-5)
    by_tokens = await store.facts_for_topics(["d_1_1"], None, ["fact1"], 3)
    assert [(f["id"], s) for f, s in by_tokens["d_1_1"]] == [("d_1_1_f1", 1.0)]
    assert set(by_tokens["d_1_1"][0][0]) == {"id", "topic_id", "fact_index", "text"}


async def test_a_read_that_cannot_get_a_thread_in_time_raises_store_busy(tmp_path: Path) -> None:
    """G3: a read waits for the LanceDB limiter no longer than call_timeout_seconds."""
    limiter = trio.CapacityLimiter(1)
    store = await IndexStore.open(tmp_path / "lancedb", dim=DIM, limiter=limiter,
                                  settings=dataclasses.replace(LanceDBSettings(), call_timeout_seconds=0.1))
    async with limiter:
        with pytest.raises(StoreBusy, match="0.1 s"):
            await store.keyword_topics(["word"], "app", "proj", 5)


async def test_a_cancelled_read_returns_at_once(store: IndexStore, writer: IndexWriter) -> None:
    await writer.replace_document("d_1", *document("d_1"))
    with trio.move_on_after(0) as scope:
        await store.vector_topics(vector(0), "app", "proj", 5)
    assert scope.cancelled_caught


# -- the file budget (G5b) --------------------------------------------------------------------------


@pytest.mark.slow
async def test_optimize_keeps_files_bounded_after_2000_single_document_writes(tmp_path: Path) -> None:
    """G5b: 2,000 replace_document calls of one document each; optimize keeps the files bounded."""
    store = await open_store(tmp_path / "lancedb")
    writer = IndexWriter(store, CascadeSettings(cleanup_older_than_seconds=0.0))
    most_files = 0
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)

        async def caller(first: int) -> None:
            nonlocal most_files
            for n in range(first, 2000, 16):
                doc_id = f"d_{n % 200:012x}"
                await writer.replace_document(doc_id, *document(doc_id, sha=str(n)))
                if n % 100 == 0:
                    most_files = max(most_files, await store.file_count())

        async with trio.open_nursery() as callers:
            for first in range(16):
                callers.start_soon(caller, first)
        # The writer is the store's one writer: stopped (an optimize of its own still running is
        # waited for) before this test optimizes itself, else two compactions race (a commit
        # conflict, seen once in CI).
        nursery.cancel_scope.cancel()
    await store.optimize(0.0)
    files = await store.file_count()
    print(f"\nlancedb files: at most {most_files} during 2,000 writes, {files} after optimize; "
          f"{writer.statistics()['writes']} commits, {writer.statistics()['optimizations']} optimizations")
    assert await store.count_rows() == {TOPIC_TABLE: 400, FACT_TABLE: 800}
    assert files <= 90  # the data files and each index's files (two full-text, seven scalar)
    assert most_files <= 600


_ULIMIT_SCRIPT = textwrap.dedent("""
    import json, os, resource, sys, threading
    from pathlib import Path
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    sys.path.insert(0, sys.argv[2])
    import trio
    from tests.store.test_lancedb import document, open_store, vector
    from everos.config import CascadeSettings
    from everos.store.index import IndexWriter

    peak = 0
    stop = threading.Event()

    def sample():  # every millisecond, to catch descriptors opened and closed inside LanceDB calls
        global peak
        while not stop.is_set():
            peak = max(peak, len(os.listdir("/proc/self/fd")))
            stop.wait(0.001)

    async def main():
        store = await open_store(Path(sys.argv[1]))
        writer = IndexWriter(store, CascadeSettings())
        searches = 0
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            for n in range(200):
                doc_id = f"d_{n:012x}"
                await writer.replace_document(doc_id, *document(doc_id, topics=4, facts_per_topic=3))
                hits = await store.keyword_topics(["subject1"], "app", "proj", 20)
                near = await store.vector_topics(vector(n), "app", "proj", 20)
                await store.facts_for_topics([r["id"] for r, _ in hits], vector(n), ["fact1"], 3)
                searches += 3 if hits and near else 0
            stats = writer.statistics()
            nursery.cancel_scope.cancel()
        return {"searches": searches, "stats": stats, "files": await store.file_count()}

    threading.Thread(target=sample, daemon=True).start()
    result = trio.run(main)
    stop.set()
    print(json.dumps({**result, "peak_fds": peak}, default=str))
""")


@pytest.mark.slow
def test_200_writes_and_searches_run_within_an_open_file_limit_of_256(tmp_path: Path) -> None:
    """G5b: EverOS 1.1 failed with "Too many open files" under ``ulimit -n 256``; everos does not."""
    repo = Path(__file__).resolve().parents[2]
    completed = subprocess.run(
        [sys.executable, "-c", _ULIMIT_SCRIPT, str(tmp_path / "lancedb"), str(repo)],
        capture_output=True, text=True, timeout=300, cwd=repo, env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    print(f"\nulimit -n 256: peak open fds {result['peak_fds']}, {result['files']} files on disk, "
          f"{result['stats']['writes']} commits, {result['stats']['optimizations']} optimizations")
    assert result["searches"] == 600
    assert result["stats"]["last_error"] is None
    assert result["peak_fds"] < 128


async def test_indexed_vectors_give_each_topics_vector_and_its_facts_in_order(writer: IndexWriter) -> None:
    """What the cascade reuses for unchanged topics: the index's digest and vectors per topic,
    facts by ``fact_index``; a keyword-only row has empty vectors, a topic missing a fact row is
    left out (there is nothing whole to reuse)."""
    topics, facts = document("d_1", topics=3, facts_per_topic=3)
    topics[1] = dataclasses.replace(topics[1], vector=())
    facts = [dataclasses.replace(f, vector=()) if f.topic_id == "d_1_1" else f for f in facts]
    facts = [f for f in reversed(facts) if f.id != "d_1_2_f1"]
    await writer.replace_document("d_1", topics, facts)
    await writer.replace_document("d_2", *document("d_2"))
    found = await writer.indexed_vectors("d_1")
    assert sorted(found) == ["d_1_0", "d_1_1"]
    assert found["d_1_0"].content_sha256 == "h0" and found["d_1_0"].vector == pytest.approx(vector(0))
    assert [list(v) for v in found["d_1_0"].fact_vectors] == [pytest.approx(vector(j)) for j in range(3)]
    assert found["d_1_1"].vector == () and found["d_1_1"].fact_vectors == ((), (), ())
    assert await writer.indexed_vectors("d_9") == {}


async def test_the_writer_gives_freed_memory_back_once_idle_after_writing(
    tmp_path: Path, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """G5b: release_memory_after_seconds after its last write the writer gives the memory it
    freed back to the system, once per busy spell; with 0 it never does."""
    releases: list[float] = []
    monkeypatch.setattr("everos.store._index_writer.release_free_memory", lambda: releases.append(1) or 4 << 20)
    store = await open_store(tmp_path / "lancedb")
    quiet = {"optimize_interval_seconds": 3600.0, "optimize_after_commits": 1000}
    writer = IndexWriter(store, CascadeSettings(release_memory_after_seconds=0.05, **quiet))
    never = IndexWriter(await open_store(tmp_path / "other"), CascadeSettings(release_memory_after_seconds=0, **quiet))
    await nursery.start(writer.run)
    await nursery.start(never.run)
    await trio.sleep(0.2)
    assert releases == [] and writer.statistics()["memory_releases"] == 0  # nothing written, nothing freed
    await writer.replace_document("d_1", *document("d_1"))
    with trio.fail_after(10):
        while writer.statistics()["memory_releases"] < 1:
            await trio.sleep(0.01)
    await trio.sleep(0.2)
    assert len(releases) == 1 and writer.statistics()["last_memory_release_mib"] == 4.0
    await writer.replace_document("d_2", *document("d_2"))
    with trio.fail_after(10):
        while writer.statistics()["memory_releases"] < 2:
            await trio.sleep(0.01)
    await never.replace_document("d_3", *document("d_3"))
    await trio.sleep(0.2)
    assert len(releases) == 2 and never.statistics()["memory_releases"] == 0
