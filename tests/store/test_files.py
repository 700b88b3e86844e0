"""Atomic writes, directory publishing and path checks under the root (G6, G8, G10)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import trio

from everos.errors import PathTraversal
from everos.store import (
    STAGING_DIRNAME,
    _files,
    atomic_write_bytes,
    atomic_write_bytes_sync,
    atomic_write_text,
    clean_staging,
    ensure_within,
    ensure_within_sync,
    publish_directory,
    publish_directory_sync,
    remove_tree,
    safe_join,
    staging_dir,
    staging_dir_sync,
)


@pytest.fixture
def limiter() -> trio.CapacityLimiter:
    return trio.CapacityLimiter(2)


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative path -> text)."""
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def write_tree(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)
    return directory


# -- atomic writes ---------------------------------------------------------------------------------


async def test_atomic_write_creates_parents_and_replaces_content(tmp_path: Path, limiter: trio.CapacityLimiter) -> None:
    target = tmp_path / "a" / "b" / "note.md"
    await atomic_write_text(target, "first\n", limiter=limiter)
    await atomic_write_bytes(target, b"second\r\n", limiter=limiter)
    assert target.read_bytes() == b"second\r\n"
    assert os.listdir(target.parent) == ["note.md"]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failed_atomic_write_keeps_old_content_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """G10: a failed write changes nothing."""
    target = tmp_path / "note.md"
    target.write_text("old")

    def boom(*args: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(OSError, match="disk on fire"):
        atomic_write_bytes_sync(target, b"new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["note.md"]


async def test_cancelled_write_returns_at_once_and_lands_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancellation stops the waiting, not the write: the file appears whole, later."""
    limiter = trio.CapacityLimiter(1)
    entered, gate = threading.Event(), threading.Event()
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        entered.set()
        gate.wait(30)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    target = tmp_path / "note.md"
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def writer() -> None:
                with scope:
                    await atomic_write_bytes(target, b"whole", limiter=limiter)

            nursery.start_soon(writer)
            await trio.to_thread.run_sync(entered.wait, 30)
            scope.cancel()
        assert scope.cancelled_caught
        assert not target.exists()
        gate.set()
        async with limiter:  # the token is free again: the abandoned thread has finished
            pass
    assert target.read_bytes() == b"whole"


# -- publishing directories ----------------------------------------------------------------------


async def test_publish_moves_staging_into_place(tmp_path: Path, limiter: trio.CapacityLimiter) -> None:
    root = tmp_path / "root"
    staging = write_tree(await staging_dir(root, limiter=limiter), {"index.md": "new", "1_Topic.md": "t"})
    final = root / "app" / "proj" / "knowledge" / "Cat" / "Doc_1"
    await publish_directory(staging, final, limiter=limiter)
    assert tree(final) == {"1_Topic.md": "t", "index.md": "new"}
    assert not staging.exists()


@pytest.mark.parametrize("exchange", ["renameat2", "two renames"])
def test_publish_replaces_an_existing_directory_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: str
) -> None:
    if exchange == "two renames":
        monkeypatch.setattr(_files, "_exchange", lambda a, b: False)
    root = tmp_path / "root"
    final = write_tree(root / "Doc", {"index.md": "old", "2_Gone.md": "x"})
    staging = write_tree(staging_dir_sync(root), {"index.md": "new"})
    publish_directory_sync(staging, final)
    assert tree(final) == {"index.md": "new"}
    assert sorted(p.name for p in root.iterdir()) == [STAGING_DIRNAME, "Doc"]
    assert list((root / STAGING_DIRNAME).iterdir()) == []


def test_publish_that_fails_keeps_the_old_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """G10: the second rename fails, the backup is put back, nothing else is left."""
    monkeypatch.setattr(_files, "_exchange", lambda a, b: False)
    root = tmp_path / "root"
    final = write_tree(root / "Doc", {"index.md": "old"})
    staging = write_tree(staging_dir_sync(root), {"index.md": "new"})
    real_rename = os.rename

    def rename(src: object, dst: object) -> None:
        if Path(src) == staging:
            raise OSError("no space left")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="no space left"):
        publish_directory_sync(staging, final)
    assert tree(final) == {"index.md": "old"}
    assert sorted(p.name for p in root.iterdir()) == [STAGING_DIRNAME, "Doc"]


def test_publish_that_fails_to_exchange_keeps_the_old_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def exchange(a: Path, b: Path) -> bool:
        raise OSError("device busy")

    monkeypatch.setattr(_files, "_exchange", exchange)
    root = tmp_path / "root"
    final = write_tree(root / "Doc", {"index.md": "old"})
    staging = write_tree(staging_dir_sync(root), {"index.md": "new"})
    with pytest.raises(OSError, match="device busy"):
        publish_directory_sync(staging, final)
    assert tree(final) == {"index.md": "old"}


def test_publish_of_a_missing_staging_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        publish_directory_sync(tmp_path / "nope", tmp_path / "Doc")


# -- staging and removal ------------------------------------------------------------------------


async def test_staging_dirs_are_unique_under_root_tmp_and_cleaned_at_startup(
    tmp_path: Path, limiter: trio.CapacityLimiter
) -> None:
    first = await staging_dir(tmp_path, limiter=limiter)
    second = await staging_dir(tmp_path, limiter=limiter)
    assert first != second
    assert first.parent == second.parent == tmp_path / STAGING_DIRNAME
    write_tree(first, {"half.md": "half written"})
    assert await clean_staging(tmp_path, limiter=limiter) == 2
    assert list((tmp_path / STAGING_DIRNAME).iterdir()) == []
    assert await clean_staging(tmp_path / "empty", limiter=limiter) == 0


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_a_published_directory_has_the_umask_mode_not_0700(tmp_path: Path, umask: int) -> None:
    """Issue: document folders came out 0700 (``mkdtemp``), unlike what an editor or git makes."""
    previous = os.umask(umask)
    try:
        staging = staging_dir_sync(tmp_path)
        write_tree(staging, {"index.md": "# Doc\n"})
        final = tmp_path / "knowledge" / "Doc_d_0123456789ab"
        final.parent.mkdir()
        publish_directory_sync(staging, final)
    finally:
        os.umask(previous)
    assert final.stat().st_mode & 0o777 == 0o777 & ~umask


async def test_remove_tree_through_staging_leaves_nothing(tmp_path: Path, limiter: trio.CapacityLimiter) -> None:
    doc = write_tree(tmp_path / "Doc", {"index.md": "x", "sub/1.md": "y"})
    assert await remove_tree(doc, root=tmp_path, limiter=limiter) is True
    assert not doc.exists()
    assert list((tmp_path / STAGING_DIRNAME).iterdir()) == []
    assert await remove_tree(doc, limiter=limiter) is False


async def test_remove_tree_in_place_removes_files_and_symlinks(tmp_path: Path, limiter: trio.CapacityLimiter) -> None:
    target = write_tree(tmp_path / "outside", {"keep.md": "keep"})
    link = tmp_path / "link"
    link.symlink_to(target)
    assert await remove_tree(link, limiter=limiter) is True
    assert tree(target) == {"keep.md": "keep"}
    doc = write_tree(tmp_path / "Doc", {"a.md": "a"})
    assert await remove_tree(doc, limiter=limiter) is True
    assert not doc.exists()


# -- path checks (G10) -----------------------------------------------------------------------------


async def test_ensure_within_accepts_paths_inside_the_root(tmp_path: Path, limiter: trio.CapacityLimiter) -> None:
    (tmp_path / "a").mkdir()
    assert await ensure_within(tmp_path, "a/b.md", limiter=limiter) == tmp_path.resolve() / "a" / "b.md"
    assert ensure_within_sync(tmp_path, tmp_path / "a" / ".." / "c") == tmp_path.resolve() / "c"


@pytest.mark.parametrize("name", ["../escape.md", "a/../../escape.md", "/etc/passwd", "a\x00b"])
def test_ensure_within_rejects_paths_leaving_the_root(tmp_path: Path, name: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(PathTraversal):
        ensure_within_sync(root, name)


def test_ensure_within_rejects_a_symlink_pointing_out(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "link").symlink_to(tmp_path)
    with pytest.raises(PathTraversal):
        ensure_within_sync(root, "docs/link/secret.md")


def test_safe_join_joins_relative_names() -> None:
    assert safe_join(Path("/r"), "app/proj", "./Doc_1", "index.md") == Path("/r/app/proj/Doc_1/index.md")


@pytest.mark.parametrize("name", ["", "/etc/passwd", "..", "a/../b", "a\x00b", "..\\x", ".", "./"])
def test_safe_join_rejects_hostile_names(name: str) -> None:
    with pytest.raises(PathTraversal):
        safe_join(Path("/r"), name)


def test_staged_files_are_written_once_each_and_every_directory_synced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """G6: each staged file's data is fsynced, then every directory holding a new entry, deepest
    first; no temporary files or renames inside the private staging directory."""
    staging = staging_dir_sync(tmp_path)
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    _files.write_staged_files_sync(staging, {"index.md": "# Tí\n", "1_A.md": "a", "_original/x.pdf": b"%PDF"})
    assert (staging / "index.md").read_text(encoding="utf-8") == "# Tí\n"
    assert (staging / "_original" / "x.pdf").read_bytes() == b"%PDF"
    assert sorted(p.name for p in staging.iterdir()) == ["1_A.md", "_original", "index.md"]
    files, dirs = synced[:3], synced[3:]
    assert sorted(Path(f).name for f in files) == ["1_A.md", "index.md", "x.pdf"]
    assert dirs == [str(staging / "_original"), str(staging)]


def test_staged_files_refuse_names_that_leave_staging_or_exist(tmp_path: Path) -> None:
    staging = staging_dir_sync(tmp_path)
    with pytest.raises(PathTraversal):
        _files.write_staged_files_sync(staging, {"../escape.md": "x"})
    assert not (tmp_path / STAGING_DIRNAME / "escape.md").exists()
    _files.write_staged_files_sync(staging, {"a.md": "1"})
    with pytest.raises(FileExistsError):
        _files.write_staged_files_sync(staging, {"a.md": "2"})
    assert (staging / "a.md").read_text() == "1"


def _fsync_recorder(monkeypatch: pytest.MonkeyPatch, on_file=None) -> list[str]:
    """Records the path of every fsync (any thread); ``on_file(path)`` runs before a file's."""
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if on_file is not None and not Path(path).is_dir():
            on_file(path)
        synced.append(path)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return synced


def test_staged_files_are_fsynced_side_by_side_each_directory_after_all_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """G6 at less cost (#17 item 6): the files' fsyncs run in more than one thread at once (two of
    them meet at a barrier, which one thread alone could never pass), every one of them returns
    before the first directory is fsynced, and no more than SYNC_THREADS files are open at once
    (G5b)."""
    staging = staging_dir_sync(tmp_path)
    barrier, lock = threading.Barrier(2, timeout=30), threading.Lock()
    met: list[str] = []
    open_counts: list[int] = []

    opened = [0]
    real_create, real_close = _files._create_and_write, _files._sync_and_close

    def create(*args: object) -> int:
        fd = real_create(*args)
        with lock:
            opened[0] += 1
            open_counts.append(opened[0])
        return fd

    def sync_and_close(fd: int) -> None:
        try:
            real_close(fd)
        finally:
            with lock:
                opened[0] -= 1

    monkeypatch.setattr(_files, "_create_and_write", create)
    monkeypatch.setattr(_files, "_sync_and_close", sync_and_close)

    def on_file(path: str) -> None:
        with lock:
            meets = len(met) < 2
            if meets:
                met.append(path)
        if meets:
            barrier.wait()  # returns only once a second fsync is under way in another thread

    synced = _fsync_recorder(monkeypatch, on_file)
    files = {f"{n}_Topic.md": f"topic {n}\n" for n in range(40)} | {"index.md": "# T\n", "_original/x.md": b"x"}
    _files.write_staged_files_sync(staging, files)
    assert len(met) == 2
    assert sorted(Path(p).name for p in synced[:42]) == sorted(Path(n).name for n in files)
    assert synced[42:] == [str(staging / "_original"), str(staging)]
    assert max(open_counts) <= _files.SYNC_THREADS
    assert {n: (staging / n).read_bytes() for n in files} == {
        n: c.encode() if isinstance(c, str) else c for n, c in files.items()}


def test_a_staged_file_whose_fsync_fails_fails_the_write_and_leaves_no_descriptor_open(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """G6: a file the disk could not make durable is an error of the call (raised after every
    other fsync ended, no directory fsynced, so nothing is published from it); every descriptor
    it opened is closed."""
    staging = staging_dir_sync(tmp_path)
    before = len(os.listdir("/proc/self/fd"))

    def on_file(path: str) -> None:
        if path.endswith("/7_Topic.md"):
            raise OSError(5, "Input/output error")

    synced = _fsync_recorder(monkeypatch, on_file)
    with pytest.raises(OSError, match="Input/output error"):
        _files.write_staged_files_sync(staging, {f"{n}_Topic.md": "t" for n in range(20)})
    assert not any(Path(p).is_dir() for p in synced)
    assert len(os.listdir("/proc/self/fd")) == before


def test_publishing_from_the_staging_root_fsyncs_the_new_place_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """G6: the directory that receives the tree is fsynced; ``.tmp`` is not (a crash that kept
    the staging name too leaves an entry clean_staging removes). A staging directory elsewhere
    still has its parent fsynced."""
    root = tmp_path / "root"
    final = root / "Cat" / "Doc"
    final.parent.mkdir(parents=True)
    staging = write_tree(staging_dir_sync(root), {"index.md": "new"})
    synced = _fsync_recorder(monkeypatch)
    publish_directory_sync(staging, final)
    assert synced == [str(final.parent)]
    synced.clear()
    elsewhere = write_tree(tmp_path / "elsewhere" / "stage", {"index.md": "newer"})
    publish_directory_sync(elsewhere, final)
    assert synced == [str(final.parent), str(elsewhere.parent)]
    assert tree(final) == {"index.md": "newer"}
