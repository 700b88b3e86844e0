"""The allocator settings the server starts with (issue #17 item 5). Nothing here asserts on
memory figures: those are bench/index_scale.py's."""

from __future__ import annotations

import functools
import gc
import sys
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
import trio

from everos import allocator
from everos.config import Config, load_config


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


def test_freeze_startup_heap_takes_what_lives_out_of_full_collections() -> None:
    """G2: a started server's long-lived objects are frozen, so a full collection (which holds
    the GIL for its whole walk) no longer walks them while /health waits."""
    def walked() -> set[int]:
        return {id(obj) for generation in range(3) for obj in gc.get_objects(generation=generation)}

    kept = [[i] for i in range(1000)]  # lists: always tracked by the collector
    ids = {id(obj) for obj in kept}
    assert ids <= walked()
    try:
        frozen = allocator.freeze_startup_heap()
        assert frozen >= len(kept)
        assert gc.get_freeze_count() == frozen
        assert not walked() & ids
    finally:
        gc.unfreeze()  # this is a test process, not a server's: give its objects back
    assert gc.get_freeze_count() == 0


def test_the_server_command_owns_its_process_and_a_test_server_does_not(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    """Only a process that is the server's freezes its heap and sets the GIL's switch interval
    (frozen cyclic garbage is never collected, so a test process that starts many servers must
    not)."""
    import inspect

    from everos import server

    started: list[dict] = []
    monkeypatch.setattr(server.trio, "run", lambda fn: started.append(dict(fn.keywords)))
    server.run(load_config(tmp_path, require_file=False), services=lambda runtime: None)
    assert started and started[0]["own_process"] is True
    assert inspect.signature(server.serve).parameters["own_process"].default is False


async def test_a_server_that_owns_its_process_freezes_its_heap_and_shortens_the_gil_switch(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """G2: a thread computing in Python (rendering, YAML, row building) gives the GIL back to the
    event loop after ``[limits] gil_switch_interval_ms`` (Python's default: 5 ms, waited after each
    of the loop's system calls), and startup's objects leave the full collections."""
    from everos import server

    calls: list[object] = []
    runtimes: list = []
    monkeypatch.setattr(allocator, "freeze_startup_heap", lambda: calls.append("freeze") or 0)
    monkeypatch.setattr(sys, "setswitchinterval", calls.append)
    loaded = load_config(tmp_path, require_file=False, environ={},
                         overrides={("api", "port"): 0, ("limits", "gil_switch_interval_ms"): 0.5})
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(functools.partial(
            server.serve, loaded, own_process=True, runtime_ready=runtimes.append))
        assert calls == ["freeze", 0.0005]  # before the listener answered
        async with httpx.AsyncClient(base_url=binds[0], timeout=10) as client:
            assert (await client.get("/livez")).status_code == 200
        runtimes[0].request_stop()
