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
