"""``DocumentDirs``: a walk that looks into a directory only when its mtime moved (issue #17 item
6). Counted in calls: document directories listed (each a listing and a stat per markdown file)
and category directories listed; an unchanged directory costs only its own stat."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

import everos.cascade._snapshot as snapshot
from everos.cascade import walk_document_dirs
from everos.cascade._snapshot import SETTLED_AFTER_S, DocumentDirs

from .conftest import GUIDE, write_document


class Clock:
    """The filesystem's clock as the walk reads it: ``ahead`` seconds after the real one."""

    def __init__(self, ahead: float = 60.0) -> None:
        self.ahead = ahead

    def __call__(self) -> float:
        return time.time() + self.ahead


@pytest.fixture
def file_stats(monkeypatch) -> list[Path]:
    """Every document directory whose files are stat'ed (``stat_document_files``), in order."""
    calls: list[Path] = []
    real = snapshot.stat_document_files

    def counting(path: Path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(snapshot, "stat_document_files", counting)
    return calls


def tree_of(root: Path, count: int) -> list[str]:
    return sorted(write_document(root, f"Guide {n}", GUIDE) for n in range(count))


def test_a_walk_of_an_unchanged_tree_lists_no_directory_and_stats_no_file(root: Path, file_stats: list[Path]) -> None:
    doc_dirs = tree_of(root, 5)
    tree = DocumentDirs(root, clock=Clock())
    first = tree.walk()
    assert sorted(first) == doc_dirs and len(file_stats) == 5 and tree.categories_listed == 1
    file_stats.clear()
    assert tree.walk() == first
    assert file_stats == [] and (tree.documents_listed, tree.categories_listed) == (0, 0)


def test_a_full_walk_stats_every_file_again(root: Path, file_stats: list[Path]) -> None:
    tree_of(root, 3)
    tree = DocumentDirs(root, clock=Clock())
    tree.walk()
    file_stats.clear()
    tree.walk(full=True)
    assert len(file_stats) == 3 and tree.categories_listed == 1


def test_a_new_a_removed_and_a_renamed_document_are_found_without_a_full_walk(
    root: Path, file_stats: list[Path]
) -> None:
    kept, removed, renamed = tree_of(root, 3)
    tree = DocumentDirs(root, clock=Clock())
    tree.walk()
    file_stats.clear()
    added = write_document(root, "Guide new", GUIDE)
    shutil.rmtree(root / removed)
    moved = renamed.replace("Guide_", "Moved_guide_")
    (root / renamed).rename(root / moved)
    found = tree.walk()
    assert sorted(found) == sorted([kept, added, moved])
    assert sorted(file_stats) == sorted([root / added, root / moved])  # only the directories it had not seen
    assert found == walk_document_dirs(root)


def test_a_topic_file_added_or_removed_is_found_without_a_full_walk(root: Path, file_stats: list[Path]) -> None:
    doc_dir, other = tree_of(root, 2)
    tree = DocumentDirs(root, clock=Clock())
    before = tree.walk()
    file_stats.clear()
    (root / doc_dir / "9_Extra.md").write_text("---\ntype: knowledge_topic\n---\nMore.\n", encoding="utf-8")
    found = tree.walk()
    assert file_stats == [root / doc_dir] and found[doc_dir] != before[doc_dir] and found[other] == before[other]
    (root / doc_dir / "9_Extra.md").unlink()
    assert tree.walk()[doc_dir] == before[doc_dir]


def test_a_file_rewritten_in_place_is_found_by_the_full_walk_only(root: Path, file_stats: list[Path]) -> None:
    """The trade-off: a directory's mtime does not move when a file in it is rewritten in place,
    so only the watcher (running) or a full walk sees that edit."""
    [doc_dir] = tree_of(root, 1)
    tree = DocumentDirs(root, clock=Clock())
    before = tree.walk()
    topic = next((root / doc_dir).glob("1_*.md"))
    with topic.open("a", encoding="utf-8") as handle:
        handle.write("\nAn edit in place.\n")
    assert tree.walk() == before  # the incremental walk cannot tell
    assert tree.walk(full=True)[doc_dir] != before[doc_dir]
    assert tree.walk() == walk_document_dirs(root)  # and what it found is remembered


def test_a_directory_listed_within_the_mtime_tick_is_listed_again(root: Path, file_stats: list[Path]) -> None:
    """A change in the same filesystem tick as the listing would leave the same mtime: a
    directory younger than SETTLED_AFTER_S when listed is not trusted until it is older."""
    tree_of(root, 2)
    clock = Clock(ahead=0.0)  # the tree was written just now
    tree = DocumentDirs(root, clock=clock)
    tree.walk()
    tree.walk()
    assert tree.documents_listed == 2 and tree.categories_listed == 1  # still young: listed again
    clock.ahead = SETTLED_AFTER_S + 1
    tree.walk()  # listed once more, now settled
    file_stats.clear()
    tree.walk()
    assert file_stats == [] and tree.categories_listed == 0
