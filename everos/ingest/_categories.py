"""A scope's categories: its ``.taxonomy.md`` (EverOS's 20 defaults, written on first use), the
listing with document counts, and the check of a requested ``category_id`` against them.

The parsed taxonomy is kept per file, keyed by the file's device, inode, mtime and size, and parsed
again only when one of them changes (a user may edit it while the server runs, in place or by
replacing it; another process may write it), so a job costs one ``stat`` (8 us), not a read and a
parse (5 ms for the 20 defaults). A parse is kept only when the file's mtime was at least
:data:`SETTLED_AFTER_S` old at the ``stat`` before the read: a second edit within the tick of a
young mtime could leave the same size and mtime (git's "racy" entries), so a young file is read
and parsed again each time until it settles. The ``stat`` comes before the read, so what was read
is never older than its key; when it is newer, the key is already out of date and the next read
parses again; a file that changed while it was read is read again (up to three times, then the
defaults stand in for that read). One lock guards the map (the reads run in worker threads);
parses run outside it.

A file that exists but gives no usable category (malformed YAML, an empty list, a save caught
half-way) is left as it is, the user's to fix: the 20 defaults stand in, with a warning once per
change of the file. Only a missing file is written, with the defaults.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from everos.errors import InvalidInput
from everos.ingest import _repository as repo
from everos.ingest._context import IngestContext
from everos.knowledge._layout import taxonomy_path
from everos.knowledge._taxonomy import DEFAULT_CATEGORIES, Category, parse_taxonomy_md, render_taxonomy_md
from everos.store import atomic_write_text_sync

__all__ = ["SETTLED_AFTER_S", "Categories"]

log = logging.getLogger(__name__)

SETTLED_AFTER_S: Final = 2.0
"""A taxonomy file whose mtime is at least this old when it is stat'ed is trusted until its stamp
moves: a filesystem keeps times to a tick (ext4: milliseconds; FAT: 2 s)."""

_READ_ATTEMPTS: Final = 3  # reads of a file that changed while it was read, before the defaults stand in
_Stamp = tuple[int, int, int, int]  # st_dev, st_ino, st_mtime_ns, st_size


def _stamp(st: os.stat_result) -> _Stamp:
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class Categories:
    """The taxonomy of each scope under the root."""

    def __init__(self, ctx: IngestContext, *, clock: Callable[[], float] = time.time) -> None:
        self._ctx = ctx
        self._clock = clock  # seconds since the epoch: the filesystem's clock
        self._lock = threading.Lock()
        # path -> (stamp, categories): the last settled parse of each scope's taxonomy file.
        self._parsed: dict[Path, tuple[_Stamp, tuple[Category, ...]]] = {}

    async def read(self, app_id: str, project_id: str) -> tuple[Category, ...]:
        """The scope's taxonomy, written with EverOS's 20 defaults on first use."""
        path = taxonomy_path(self._ctx.root, app_id, project_id)
        return await self._ctx.files(self._read_or_create_sync, path)

    def _read_or_create_sync(self, path: Path) -> tuple[Category, ...]:
        for _ in range(_READ_ATTEMPTS):
            try:
                st = path.stat()
            except FileNotFoundError:
                break
            stamp = _stamp(st)
            with self._lock:
                cached = self._parsed.get(path)
            if cached is not None and cached[0] == stamp:
                return cached[1] or DEFAULT_CATEGORIES
            settled = st.st_mtime_ns <= int((self._clock() - SETTLED_AFTER_S) * 1e9)
            try:
                parsed = parse_taxonomy_md(path.read_text(encoding="utf-8"))
                unchanged = _stamp(path.stat()) == stamp
            except FileNotFoundError:
                parsed, unchanged = (), False
            with self._lock:
                if settled and unchanged:
                    self._parsed[path] = (stamp, parsed)
                else:  # young, or changed while it was read: nothing kept
                    self._parsed.pop(path, None)
            if parsed and unchanged:
                return parsed
            if unchanged:  # unusable as it stands (malformed, no category): the user's to fix
                log.warning("%s has no usable category; using the 20 defaults", path)
                return DEFAULT_CATEGORIES
        else:  # written to at every read (a save in progress)
            return DEFAULT_CATEGORIES
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text_sync(path, render_taxonomy_md(DEFAULT_CATEGORIES))
        return DEFAULT_CATEGORIES

    async def listing(self, app_id: str, project_id: str) -> list[dict[str, Any]]:
        """``GET /categories``: each category with its description and document count."""
        categories = await self.read(app_id, project_id)
        counts = await self._ctx.db.read(repo.category_counts, app_id, project_id)
        return [{"category_id": c.id, "description": c.description, "document_count": counts.get(c.id, 0)}
                for c in categories]

    async def check(self, category_id: str | None, app_id: str, project_id: str) -> str | None:
        """``category_id`` when the scope knows it (None stays None).

        Raises:
            InvalidInput: the scope has no such category.
        """
        if category_id is None:
            return None
        known = {c.id for c in await self.read(app_id, project_id)}
        if category_id not in known:
            raise InvalidInput(f"unknown category_id {category_id!r}; known: {', '.join(sorted(known))}",
                               field="category_id")
        return category_id
