"""The watcher: which paths matter, the debounce, and real file events under Trio.

The last tests watch a real directory (inotify or polling, through watchfiles and anyio) with
real time, bounded by ``fail_after``; they assert what arrives, never how fast.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import trio

from everos.cascade import TREE_CHANGED, ChangeBatcher, Watcher, classify_change

from .conftest import GUIDE, write_document

DOC = "default_app/default_project/knowledge/Technology/Guide_d_0123456789ab"


@pytest.mark.parametrize(("relpath", "meaning"), [
    (DOC, DOC),
    (f"{DOC}/index.md", DOC),
    (f"{DOC}/3_Threads.md", DOC),
    (f"{DOC}/notes.txt", None),
    (f"{DOC}/_original/source.md", None),
    (f"{DOC}/_original", None),
    (".index/lancedb/knowledge_topic.lance/data/1.lance", None),
    (".tmp/stage-1/index.md", None),
    ("default_app/default_project/knowledge/.taxonomy.md", None),
    ("default_app/default_project/knowledge/Technology/.Guide_d_0123456789ab.backup/index.md", None),
    ("default_app/default_project/knowledge/Technology/Guide/index.md", None),
    ("default_app/default_project/users/u1/user.md", None),
    ("default_app/default_project/knowledge/Technology", TREE_CHANGED),
    ("default_app", TREE_CHANGED),
])
def test_classify_change(relpath: str, meaning: str | None) -> None:
    assert classify_change(relpath) == meaning


def test_batcher_waits_for_quiet_per_directory() -> None:
    batcher = ChangeBatcher(0.5)
    batcher.add("a", 0.0)
    batcher.add("b", 0.2)
    batcher.add("a", 0.4)  # another write to "a": its quiet period starts again
    assert batcher.next_due_at() == pytest.approx(0.7)
    assert batcher.due(0.7) == ["b"]
    assert batcher.due(0.85) == []
    assert batcher.due(0.9) == ["a"]
    assert batcher.next_due_at() is None and len(batcher) == 0


class Recorder:
    def __init__(self) -> None:
        self.queued: list[tuple[str, str]] = []
        self.tree_changes = self.watches = 0
        self.changed = trio.Event()

    async def enqueue(self, doc_dir: str, reason: str) -> None:
        self.queued.append((doc_dir, reason))
        self.changed.set()

    def on_tree_change(self) -> None:
        self.tree_changes += 1
        self.changed.set()

    def on_watching(self) -> None:
        self.watches += 1

    async def wait_for(self, predicate) -> None:
        with trio.fail_after(15):
            while not predicate():
                self.changed = trio.Event()
                await self.changed.wait()


async def start_watcher(nursery: trio.Nursery, root: Path, recorder: Recorder) -> None:
    watcher = Watcher(root=root, enqueue=recorder.enqueue, on_tree_change=recorder.on_tree_change,
                      on_watching=recorder.on_watching, debounce_ms=50, rust_timeout_ms=100)
    with trio.fail_after(15):
        await nursery.start(watcher.run)


async def test_watcher_queues_an_edited_document_once_quiet(root: Path) -> None:
    doc_dir = write_document(root, "Trio guide", GUIDE)
    log = root / "server.log"  # an operator's log in the root: its writes are no tree change
    log.write_text("started\n")
    recorder = Recorder()
    async with trio.open_nursery() as nursery:
        await start_watcher(nursery, root, recorder)
        for n in range(3):
            with log.open("a") as lines:
                lines.write(f"line {n}\n")
        (root / ".index").mkdir()
        (root / ".index" / "noise.db").write_bytes(b"x")
        (root / doc_dir / "_original" / "source.md").write_text("changed original")
        topic = root / doc_dir / "1_Cancel_scopes.md"
        for n in range(3):
            topic.write_text(topic.read_text() + f"\nEdit {n}.\n")
        await recorder.wait_for(lambda: recorder.queued)
        await trio.sleep(0.3)  # anything else would have arrived by now
        nursery.cancel_scope.cancel()
    assert recorder.queued == [(doc_dir, "watch")]
    assert recorder.tree_changes == 0
    assert recorder.watches == 1  # told once its watch was in place (the scanner's full scan)


async def test_watcher_queues_a_removed_document_and_reports_tree_changes(root: Path) -> None:
    doc_dir = write_document(root, "Trio guide", GUIDE)
    other = write_document(root, "Other", GUIDE, category="Science")
    recorder = Recorder()
    async with trio.open_nursery() as nursery:
        await start_watcher(nursery, root, recorder)
        shutil.rmtree(root / doc_dir)
        await recorder.wait_for(lambda: (doc_dir, "watch") in recorder.queued)
        (root / other).parent.rename(root / "moved-away")
        await recorder.wait_for(lambda: recorder.tree_changes)
        nursery.cancel_scope.cancel()
