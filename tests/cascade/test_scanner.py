"""The scanner queues what changed, and never what is in hand or dead (the EverOS 1.1 livelock)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from everos.cascade import GONE, plan_scan
from everos.knowledge._fingerprint import DirStat
from everos.store import Job, JobStatus

from .conftest import GUIDE, FakeEmbedder, FakeSink, open_cascade, write_document

A, B = "app/proj/knowledge/Cat/A_d_aaaaaaaaaaaa", "app/proj/knowledge/Cat/B_d_bbbbbbbbbbbb"


def job(status: JobStatus, *, started_at: float | None = None, finished_at: float | None = None) -> Job:
    return Job(id="j", kind="knowledge_document", key=A, payload=None, status=status, attempts=1, max_attempts=5,
               rerun=False, lease_owner=None, lease_expires_at=None, available_at=0.0, error=None, result=None,
               created_at=0.0, updated_at=50.0, started_at=started_at, finished_at=finished_at)


def test_plan_queues_new_and_changed_directories() -> None:
    disk = {A: DirStat("f1", 10.0), B: DirStat("f2", 10.0)}
    assert plan_scan(disk, {}, {}) == [(A, "new"), (B, "new")]
    assert plan_scan(disk, {A: "f1", B: "old"}, {}) == [(B, "changed")]


def test_plan_queues_a_vanished_directory_once() -> None:
    assert plan_scan({}, {A: "f1"}, {}) == [(A, "gone")]
    assert plan_scan({A: None}, {A: "f1"}, {}) == [(A, "gone")]  # no index.md: gone too
    assert plan_scan({}, {A: GONE}, {}) == []  # its attempt saw it gone already
    assert plan_scan({}, {}, {}) == []


def test_plan_leaves_queued_rows_alone() -> None:
    assert plan_scan({A: DirStat("f2", 10.0)}, {A: "f1"}, {A: job(JobStatus.QUEUED)}) == []


def test_plan_leaves_a_row_in_flight_alone_unless_its_files_changed_after_the_lease() -> None:
    running = {A: job(JobStatus.RUNNING, started_at=100.0)}
    assert plan_scan({A: DirStat("f2", 99.0)}, {A: "f1"}, running) == []
    assert plan_scan({A: DirStat("f2", 99.0)}, {}, running) == []  # before its attempt recorded anything
    assert plan_scan({}, {A: "f1"}, running) == []
    assert plan_scan({A: DirStat("f2", 101.0)}, {A: "f1"}, running) == [(A, "changed during attempt")]


def test_plan_revives_dead_rows_only_when_their_files_changed() -> None:
    for status in (JobStatus.DEAD, JobStatus.FAILED):
        dead = {A: job(status, finished_at=100.0)}
        assert plan_scan({A: DirStat("f1", 200.0)}, {A: "f1"}, dead) == []
        assert plan_scan({A: DirStat("f2", 200.0)}, {A: "f1"}, dead) == [(A, "changed")]
        # Dead before any attempt recorded what it saw: only a change after it died counts.
        assert plan_scan({A: DirStat("f1", 90.0)}, {A: None}, dead) == []
        assert plan_scan({A: DirStat("f1", 110.0)}, {A: None}, dead) == [(A, "changed")]


async def test_scanner_never_requeues_a_row_in_flight(root: Path, sink: FakeSink, embedder: FakeEmbedder) -> None:
    """G7, EverOS #334: a long attempt keeps its row; sweeps do not yank it back or mark it."""
    doc_dir = write_document(root, "Trio guide", GUIDE)
    async with open_cascade(root, sink, embedder) as cascade:
        await cascade.enqueue_document(doc_dir)
        [leased] = await cascade.queue.lease("slow-worker", 1, 600)
        for _ in range(5):
            assert await cascade.scanner.scan_once() == []
        row = await cascade.queue.get(leased.id)
        assert (row.status, row.rerun, row.attempts, row.lease_owner) == (JobStatus.RUNNING, False, 1, "slow-worker")
        # An edit after the lease started is different: the row runs again once this attempt ends.
        topic = root / doc_dir / "1_Cancel_scopes.md"
        topic.write_text(topic.read_text() + "\nMore.\n")
        os.utime(topic, (time.time() + 5, time.time() + 5))
        assert await cascade.scanner.scan_once() == [(doc_dir, "changed during attempt")]
        row = await cascade.queue.get(leased.id)
        assert (row.status, row.rerun, row.lease_owner) == (JobStatus.RUNNING, True, "slow-worker")


async def test_scanner_does_not_loop_on_a_dead_deletion(root: Path, sink: FakeSink, embedder: FakeEmbedder) -> None:
    doc_dir = write_document(root, "Trio guide", GUIDE)
    async with open_cascade(root, sink, embedder, max_attempts=1) as cascade:
        await cascade.sync()
        shutil.rmtree(root / doc_dir)
        original_delete = sink.delete_document

        async def failing_delete(doc_id: str) -> int:
            raise OSError("index unavailable")

        sink.delete_document = failing_delete
        summary = await cascade.sync()
        assert summary["queued"] == [doc_dir] and "index unavailable" in summary["failures"][0]["error"]
        assert await cascade.scanner.scan_once() == []
        sink.delete_document = original_delete
        assert (await cascade.fix(apply=True))["outcomes"] == {"deleted": 1}
        assert await cascade.scanner.scan_once() == []


# -- incremental scans (issue #17 item 6) ----------------------------------------------------------


def settle(root: Path) -> None:
    """Date every file and directory of the documents ten seconds back: past the mtime tick
    (SETTLED_AFTER_S), so a scan trusts a directory whose mtime did not move."""
    past = time.time() - 10
    for path in [*root.rglob("*"), root]:
        if ".index" not in path.parts:
            os.utime(path, (past, past), follow_symlinks=False)


def edit_in_place(path: Path) -> None:
    """Rewrite a file where it is (its directory's mtime stays), a little later than it was."""
    later = path.stat().st_mtime + 5
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\nAn edit in place.\n")
    os.utime(path, (later, later))


async def test_scans_between_full_scans_miss_only_edits_in_place_and_the_full_scan_finds_them(
    root: Path, sink: FakeSink, embedder: FakeEmbedder, mock_clock
) -> None:
    """A scan looks into directories whose mtime moved; every full_scan_interval_seconds it
    stats every file, so an edit in place the watcher missed reaches the index within that time."""
    edited, _ = [write_document(root, f"Guide {n}", GUIDE) for n in range(2)]
    settle(root)
    async with open_cascade(root, sink, embedder, full_scan_interval_seconds=600) as cascade:
        scanner = cascade.scanner
        assert len(await scanner.scan_once()) == 2 and scanner.last_scan_full  # the first scan is full
        await cascade.drain()
        edit_in_place(next((root / edited).glob("1_*.md")))
        added = write_document(root, "Guide new", GUIDE)
        mock_clock.jump(300)
        assert await scanner.scan_once() == [(added, "new")] and not scanner.last_scan_full
        mock_clock.jump(300)
        assert await scanner.scan_once() == [(edited, "changed")] and scanner.last_scan_full


async def test_the_scan_after_the_watch_started_is_full(root: Path, sink: FakeSink, embedder: FakeEmbedder,
                                                        mock_clock) -> None:
    """What was edited in place before the watch was in place was reported by nobody."""
    doc_dir = write_document(root, "Trio guide", GUIDE)
    settle(root)
    async with open_cascade(root, sink, embedder, full_scan_interval_seconds=600) as cascade:
        await cascade.sync()
        edit_in_place(next((root / doc_dir).glob("1_*.md")))
        assert await cascade.scanner.scan_once() == []  # incremental: cannot tell
        cascade.scanner.watch_started()
        assert await cascade.scanner.scan_once() == [(doc_dir, "changed")] and cascade.scanner.last_scan_full
        assert not (await cascade.scanner.scan_once() or cascade.scanner.last_scan_full)
