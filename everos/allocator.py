"""What the process keeps of the memory it freed, and giving it back (issue #17 item 5).

Measured with ``bench/index_scale.py`` (10,000 topics uploaded over HTTP, the hashing embedder, 2
cores): once ingest had settled the server held 783 MiB, 290 MiB after a restart on the same data.
Python's objects were not it (glibc counted 50-80 MiB in use), nor LanceDB's caches (its session
held 2-4 MiB: the writer swaps in a fresh one after each optimize). The rest was memory freed and
kept by two allocators:

- glibc's malloc, which LanceDB's Rust code uses: its tokio threads each got an arena of their own
  (up to 8 per core) and kept what they freed: 330 MiB of arenas, 250 MiB of them free;
- the default Arrow memory pool (mimalloc, inside libarrow), which builds the Arrow table of every
  index commit: a 1 GiB reservation with about 195 MiB resident while the pool had nothing
  allocated.

So :func:`limit_arenas` lets glibc make at most ``[limits] malloc_arenas`` arenas (``mallopt
M_ARENA_MAX``, before the first thread that would make one), :func:`configure` has pyarrow
allocate from the system allocator too (``ARROW_DEFAULT_MEMORY_POOL=system`` had the same
effect), and the index writer
calls :func:`release_free_memory` (``malloc_trim``) once it has been idle for ``[cascade]
release_memory_after_seconds``. The same benchmark then: 404 MiB settled, 288 MiB after a restart
(with the two limits set from the environment instead, and no trim: 431-450 MiB). What is left is
mostly clean file pages of LanceDB's library that writing touched (``_lancedb.abi3.so``: about 80
MiB resident while indexing, which the kernel can drop) and Python's own heap.

Nothing here is needed for correctness: on a libc that is not glibc each step does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import logging
import os
import platform

__all__ = ["configure", "freeze_startup_heap", "limit_arenas", "release_free_memory", "resident_bytes"]

log = logging.getLogger("everos.allocator")

_M_ARENA_MAX = -8  # mallopt parameter (malloc.h)


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def limit_arenas(malloc_arenas: int) -> None:
    """Cap glibc's malloc arenas at ``malloc_arenas`` (0 leaves glibc's default). glibc fixes its
    limit when a second thread first needs an arena, so this counts only before that: before
    ``lancedb`` is imported (it starts a thread) or anything else starts threads that allocate.
    ``everos server start`` calls it as soon as it has read the settings. Idempotent."""
    libc = _glibc()
    if libc is not None and malloc_arenas > 0 and not libc.mallopt(_M_ARENA_MAX, malloc_arenas):
        log.warning("mallopt(M_ARENA_MAX, %d) failed", malloc_arenas)


def configure(malloc_arenas: int) -> None:
    """:func:`limit_arenas` (too late to count if threads have allocated already) and pyarrow on
    the system allocator, so :func:`release_free_memory` reaches what Arrow frees. Idempotent."""
    limit_arenas(malloc_arenas)
    import pyarrow as pa

    if pa.default_memory_pool().backend_name != "system":
        pa.set_memory_pool(pa.system_memory_pool())


def resident_bytes() -> int | None:
    """The process's resident set size in bytes (None where ``/proc`` does not say)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def release_free_memory() -> int | None:
    """Give the memory malloc holds free back to the system (``malloc_trim(0)``: every arena, not
    only the top of the heap) and ask the Arrow pool to do the same. Returns how many resident
    bytes that took off (None when not measurable). Blocks for milliseconds to a few tens of them
    (it walks every arena's free lists) without the GIL: call it in a thread."""
    before = resident_bytes()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    after = resident_bytes()
    return None if before is None or after is None else before - after


def freeze_startup_heap() -> int:
    """Collect once, then move every object alive now into the collector's permanent generation
    (``gc.freeze``), so later full collections no longer walk them. Returns how many were frozen.

    A started server holds objects it keeps for its whole life (its modules, pydantic's schemas,
    the routes, LanceDB's and pyarrow's Python parts: about 230,000 on a fresh root). Every full
    collection walked them all while holding the GIL: 120 to 155 ms under load in the
    ``local-llm`` replay, the longest /health answers of that run; none took over 5 ms once they
    were frozen.

    Only for a process that does one thing for its whole life (``everos server start``,
    ``everos mcp``, the replay's /health probe): frozen objects that later become cyclic garbage
    are never collected, which a test process starting many servers would feel."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
