"""The allocator settings the server starts with (issue #17 item 5). Nothing here asserts on
memory figures: those are bench/index_scale.py's."""

from __future__ import annotations

import pyarrow as pa

from everos import allocator
from everos.config import Config


def test_configure_has_arrow_allocate_from_the_system_allocator() -> None:
    """G5b: Arrow's tables come from the allocator release_free_memory trims, not from a pool
    that keeps what it frees."""
    allocator.configure(Config().limits.malloc_arenas)
    allocator.configure(0)  # idempotent; 0 leaves glibc's arenas as they are
    assert pa.default_memory_pool().backend_name == "system"
    table = pa.table({"x": list(range(1000))})
    assert pa.default_memory_pool().bytes_allocated() > 0
    del table


def test_release_free_memory_reports_what_it_took_off() -> None:
    freed = allocator.release_free_memory()
    assert freed is None or isinstance(freed, int)
    assert allocator.resident_bytes() is None or allocator.resident_bytes() > 0
