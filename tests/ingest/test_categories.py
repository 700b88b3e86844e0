"""A scope's taxonomy is parsed once per change of its file, not once per job (#17 item 6), and a
change is always seen: edited in place, replaced by another process, or edited twice within the
tick of a young mtime."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from everos.ingest import _categories
from everos.ingest._categories import Categories
from everos.knowledge._layout import taxonomy_path


def _categories_at(root: Path, clock: Any = None) -> Categories:
    async def files(fn: Any, *args: Any) -> Any:
        return await trio.to_thread.run_sync(fn, *args)

    ctx = SimpleNamespace(root=root, files=files)
    # By default the clock runs 10 s ahead: every file is settled (SETTLED_AFTER_S) at once.
    return Categories(ctx, clock=clock or (lambda: time.time() + 10))  # type: ignore[arg-type]


def _count_parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    parses: list[int] = []
    real_parse = _categories.parse_taxonomy_md

    def counting_parse(text: str) -> Any:
        parses.append(1)
        return real_parse(text)

    monkeypatch.setattr(_categories, "parse_taxonomy_md", counting_parse)
    return parses


def _taxonomy(*ids: str) -> str:
    entries = "".join(f"- id: {i}\n  description: {i}\n" for i in ids)
    return f"---\nkind: knowledge_taxonomy\ncategories:\n{entries}---\n"


def _set_mtime(path: Path, mtime_ns: int) -> None:
    os.utime(path, ns=(mtime_ns, mtime_ns))


async def test_the_taxonomy_is_parsed_again_only_when_its_file_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parses = _count_parses(monkeypatch)
    categories = _categories_at(tmp_path)
    first = await categories.read("app", "proj")  # written with the defaults on first use
    assert len(first) == 20
    for _ in range(5):
        assert await categories.read("app", "proj") == first
    assert len(parses) == 1

    # A user edits the file while the server runs: the next read sees it.
    path = taxonomy_path(tmp_path, "app", "proj")
    path.write_text("---\nkind: knowledge_taxonomy\ncategories:\n- id: Only\n  description: One\n---\n",
                    encoding="utf-8")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    edited = await categories.read("app", "proj")
    assert [c.id for c in edited] == ["Only"]
    assert len(parses) == 2
    await categories.read("app", "proj")
    assert len(parses) == 2


async def test_a_file_replaced_by_another_process_with_the_same_size_and_mtime_is_read_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process (a second server, an editor that saves by rename) writes the file anew:
    same size, same mtime, a new inode; the next read parses it."""
    parses = _count_parses(monkeypatch)
    categories = _categories_at(tmp_path)
    path = taxonomy_path(tmp_path, "app", "proj")
    path.parent.mkdir(parents=True)
    path.write_text(_taxonomy("Alpha"), encoding="utf-8")
    mtime_ns = path.stat().st_mtime_ns
    assert [c.id for c in await categories.read("app", "proj")] == ["Alpha"]
    assert [c.id for c in await categories.read("app", "proj")] == ["Alpha"]
    assert len(parses) == 1
    subprocess.run([sys.executable, "-c", (
        "import os, sys; from pathlib import Path; from everos.store import atomic_write_text_sync; "
        "p = Path(sys.argv[1]); atomic_write_text_sync(p, sys.argv[2]); "
        "os.utime(p, ns=(int(sys.argv[3]), int(sys.argv[3])))"),
        str(path), _taxonomy("Gamma"), str(mtime_ns)], check=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert path.stat().st_mtime_ns == mtime_ns and len(_taxonomy("Gamma")) == len(_taxonomy("Alpha"))
    assert [c.id for c in await categories.read("app", "proj")] == ["Gamma"]
    assert len(parses) == 2


async def test_a_young_file_is_parsed_each_time_until_it_settles(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two in-place edits within one tick of the mtime leave the same stamp (size, mtime,
    inode): a file whose mtime is younger than SETTLED_AFTER_S is not kept, so the second edit
    is seen; once it is older, one parse is kept."""
    parses = _count_parses(monkeypatch)
    now = [time.time()]
    categories = _categories_at(tmp_path, clock=lambda: now[0])
    path = taxonomy_path(tmp_path, "app", "proj")
    path.parent.mkdir(parents=True)
    path.write_text(_taxonomy("Alpha"), encoding="utf-8")
    stamp = path.stat()
    now[0] = stamp.st_mtime_ns / 1e9 + _categories.SETTLED_AFTER_S / 2
    assert [c.id for c in await categories.read("app", "proj")] == ["Alpha"]
    with open(path, "r+", encoding="utf-8") as handle:  # in place: same inode, same size
        handle.write(_taxonomy("Gamma"))
    _set_mtime(path, stamp.st_mtime_ns)
    assert (path.stat().st_ino, path.stat().st_size) == (stamp.st_ino, stamp.st_size)
    assert [c.id for c in await categories.read("app", "proj")] == ["Gamma"]
    assert len(parses) == 2
    now[0] = stamp.st_mtime_ns / 1e9 + _categories.SETTLED_AFTER_S + 0.01
    for _ in range(3):
        assert [c.id for c in await categories.read("app", "proj")] == ["Gamma"]
    assert len(parses) == 3


async def test_reads_from_many_threads_while_the_file_changes_end_on_its_last_content(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads run in worker threads side by side (the files limiter): while the file is edited
    they return one of its versions, never a mix or an error, and the first read after the last
    edit returns the last version; then reads parse nothing more."""
    parses = _count_parses(monkeypatch)
    categories = _categories_at(tmp_path)
    path = taxonomy_path(tmp_path, "app", "proj")
    path.parent.mkdir(parents=True)
    versions = [_taxonomy(f"V{n}", "Common") for n in range(30)]
    path.write_text(versions[0], encoding="utf-8")
    seen: list[str] = []

    async def reader() -> None:
        for _ in range(20):
            seen.append((await categories.read("app", "proj"))[0].id)
            await trio.sleep(0)

    def edit() -> None:
        from everos.store import atomic_write_text_sync
        for n, text in enumerate(versions[1:], 1):
            if n % 2:
                atomic_write_text_sync(path, text)
            else:
                path.write_text(text, encoding="utf-8")  # in place: the next version has another size
            _set_mtime(path, path.stat().st_mtime_ns + n * 1_000_000)

    async with trio.open_nursery() as nursery:
        for _ in range(6):
            nursery.start_soon(reader)
        nursery.start_soon(trio.to_thread.run_sync, edit)
    # A read may catch an in-place save half-way, and the defaults stand in for it; it never
    # writes them over the file.
    assert set(seen) <= {f"V{n}" for n in range(30)} | {"Technology"}
    assert path.read_text(encoding="utf-8") == versions[-1]
    assert (await categories.read("app", "proj"))[0].id == "V29"
    count = len(parses)
    assert [(await categories.read("app", "proj"))[0].id for _ in range(5)] == ["V29"] * 5
    assert len(parses) == count


async def test_a_malformed_file_is_left_as_it_is_and_the_defaults_stand_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """G10: a taxonomy the user broke is not overwritten (before, the defaults replaced it and
    their edits were lost); it is parsed once per change, with one warning, and a fix is seen."""
    parses = _count_parses(monkeypatch)
    categories = _categories_at(tmp_path)
    path = taxonomy_path(tmp_path, "app", "proj")
    path.parent.mkdir(parents=True)
    broken = "---\nkind: knowledge_taxonomy\ncategories: [unclosed\n---\n"
    path.write_text(broken, encoding="utf-8")
    for _ in range(3):
        assert len(await categories.read("app", "proj")) == 20
    assert path.read_text(encoding="utf-8") == broken
    assert len(parses) == 1
    assert sum("no usable category" in r.getMessage() for r in caplog.records) == 1
    path.write_text(_taxonomy("Fixed"), encoding="utf-8")
    assert [c.id for c in await categories.read("app", "proj")] == ["Fixed"]
