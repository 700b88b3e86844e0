"""A scope's taxonomy is parsed once per change of its file, not once per job (#17)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from everos.ingest import _categories
from everos.ingest._categories import Categories
from everos.knowledge._layout import taxonomy_path


def _categories_at(root: Path) -> Categories:
    async def files(fn: Any, *args: Any) -> Any:
        return await trio.to_thread.run_sync(fn, *args)

    return Categories(SimpleNamespace(root=root, files=files))  # type: ignore[arg-type]


async def test_the_taxonomy_is_parsed_again_only_when_its_file_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parses: list[int] = []
    real_parse = _categories.parse_taxonomy_md

    def counting_parse(text: str) -> Any:
        parses.append(1)
        return real_parse(text)

    monkeypatch.setattr(_categories, "parse_taxonomy_md", counting_parse)
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
