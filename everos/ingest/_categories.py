"""A scope's categories: its ``.taxonomy.md`` (EverOS's 20 defaults, written on first use), the
listing with document counts, and the check of a requested ``category_id`` against them.

The parsed taxonomy is kept per file and parsed again only when the file's mtime or size changes
(a user may edit it while the server runs), so a job costs one ``stat``, not a read and a parse.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from everos.errors import InvalidInput
from everos.ingest import _repository as repo
from everos.ingest._context import IngestContext
from everos.knowledge._layout import taxonomy_path
from everos.knowledge._taxonomy import DEFAULT_CATEGORIES, Category, parse_taxonomy_md, render_taxonomy_md
from everos.store import atomic_write_text_sync

__all__ = ["Categories"]


class Categories:
    """The taxonomy of each scope under the root."""

    def __init__(self, ctx: IngestContext) -> None:
        self._ctx = ctx
        # path -> ((mtime_ns, size), categories): the last parse of each scope's taxonomy file.
        self._parsed: dict[Path, tuple[tuple[int, int], tuple[Category, ...]]] = {}

    async def read(self, app_id: str, project_id: str) -> tuple[Category, ...]:
        """The scope's taxonomy, written with EverOS's 20 defaults on first use."""
        path = taxonomy_path(self._ctx.root, app_id, project_id)

        def read_or_create() -> tuple[Category, ...]:
            try:
                st = path.stat()
            except FileNotFoundError:
                st = None
            if st is not None:
                stamp = (st.st_mtime_ns, st.st_size)
                cached = self._parsed.get(path)
                if cached is not None and cached[0] == stamp:
                    return cached[1]
                parsed = parse_taxonomy_md(path.read_text(encoding="utf-8"))
                if parsed:
                    self._parsed[path] = (stamp, parsed)
                    return parsed
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text_sync(path, render_taxonomy_md(DEFAULT_CATEGORIES))
            return DEFAULT_CATEGORIES

        return await self._ctx.files(read_or_create)

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
