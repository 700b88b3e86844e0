"""Worker processes for CPU work: each call under a deadline and a memory limit (issue #12, G5a).

A thread cannot be cancelled and shares the GIL with the event loop; a process can be killed. So
CPU-bound work on untrusted input (document conversion; later the built-in extractor and embedder)
runs in a small pool of warm worker processes (``trio-parallel``, spawn start method)::

    async with open_cpu_workers(workers=2, init=warm_up_converter) as pool:
        converted = await pool.run_cpu(convert_to_markdown, data, name, deadline_s=30, memory_mb=2048)

- **Deadline.** A call past ``deadline_s`` kills its worker (``kill_on_cancel``) and raises
  :class:`~everos.errors.WorkerTimeout`; a cancelled caller kills it the same way. Waiting for a
  free worker is not part of the deadline: the caller's own scope bounds that (G1).
- **Memory.** Each call may map ``memory_mb`` more address space than its worker held before it
  (``RLIMIT_AS``, set for the call and lifted after it); Python code that runs out raises
  ``MemoryError``, reported as :class:`~everos.errors.WorkerOutOfMemory`, and the worker retires.
  A native library that aborts instead is :class:`~everos.errors.WorkerCrashed`.
- **Replacement.** A killed, crashed or retired worker is replaced in the background, so the next
  call finds a warm one. Every worker runs ``init`` once when it starts (imports, dictionaries).
- **Health.** :meth:`CpuWorkers.snapshot` counts workers alive and busy, and the ones killed.

The exceptions a call raises in the worker come back as they are (everos errors pickle).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import resource
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import trio
import trio_parallel

from everos.errors import ServiceUnavailable, WorkerCrashed, WorkerOutOfMemory, WorkerTimeout

__all__ = ["CpuWorkers", "WorkerSnapshot", "open_cpu_workers"]

T = TypeVar("T")

# Idle workers wait this long for their pipe to close at shutdown before they are killed.
_SHUTDOWN_GRACE_S = 2.0
_CLOSED = "the worker processes are shutting down"


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerSnapshot:
    """The pool for /health: ``alive`` processes (idle or running), ``busy`` calls in flight,
    and since it opened: ``killed`` at a deadline or cancel, ``crashed``, ``out_of_memory``."""

    workers: int
    alive: int
    busy: int
    killed: int
    crashed: int
    out_of_memory: int


class CpuWorkers:
    """A pool of worker processes; made by :func:`open_cpu_workers`, usable until it closes.

    Each worker lives in its own one-process trio-parallel context (a *slot*), so a killed worker
    is replaced in its slot and nowhere else: a fresh process is started there at once, and the
    slot is free again when that process has run ``init``.
    """

    def __init__(self, slots: list[Any], nursery: trio.Nursery) -> None:
        self._slots = slots
        self._nursery = nursery
        self._free_send, self._free = trio.open_memory_channel[Any](len(slots))
        self._busy = 0
        self._killed = 0
        self._crashed = 0
        self._out_of_memory = 0
        self._closed = False

    async def run_cpu(self, fn: Callable[..., T], *args: Any, deadline_s: float, memory_mb: int,
                      task: str | None = None) -> T:
        """Run ``fn(*args)`` in a worker process and return its result.

        ``fn`` and ``args`` must pickle (a module-level function; bytes, str, dataclasses).
        ``task`` names the work in error messages ("converting 'report.pdf'"), else the
        function's name. Waits for a free worker first: cancel the caller to stop waiting.

        Raises:
            WorkerTimeout: ``fn`` ran past ``deadline_s``; its worker was killed.
            WorkerOutOfMemory: ``fn`` needed more than ``memory_mb`` MiB of address space over
                what its worker held before the call; its worker was retired.
            WorkerCrashed: the worker process died during the call (a native library that runs
                out of memory aborts: SIGABRT).
            ServiceUnavailable: the pool is closed (the server is stopping).
            Any exception ``fn`` raised, as it was raised.

        If cancelled while ``fn`` runs, the worker is killed (counted in ``killed``) and
        ``trio.Cancelled`` propagates.
        """
        if deadline_s <= 0 or memory_mb <= 0:
            raise ValueError("deadline_s and memory_mb must be positive")
        what = task or getattr(fn, "__qualname__", "the work")
        if self._closed:
            raise ServiceUnavailable(_CLOSED)
        try:
            slot = await self._free.receive()
        except (trio.ClosedResourceError, trio.EndOfChannel):
            raise ServiceUnavailable(_CLOSED) from None
        lost = None
        self._busy += 1
        try:
            with trio.move_on_after(deadline_s):
                return await slot.run_sync(_run_limited, memory_mb << 20, fn, *args, kill_on_cancel=True,
                                           limiter=_uncontended())
            lost = "killed"
            raise WorkerTimeout(f"{what} did not finish within {deadline_s:g} s; its worker process was stopped")
        except trio.Cancelled:
            lost = "killed"
            raise
        except MemoryError:
            lost = "out_of_memory"
            raise WorkerOutOfMemory(f"{what} needed more than {memory_mb:,} MiB of memory; its worker "
                                    "process was replaced") from None
        except trio_parallel.BrokenWorkerError as exc:
            lost = "crashed"
            raise WorkerCrashed(f"{what} crashed its worker process ({_how_it_died(exc, memory_mb)}); it was "
                                "replaced") from None
        except trio.ClosedResourceError:
            raise ServiceUnavailable(_CLOSED) from None
        finally:
            self._busy -= 1
            self._release(slot, lost)

    def snapshot(self) -> WorkerSnapshot:
        """The pool's state now (cheap: no I/O, reaps exited workers)."""
        alive = 0
        for slot in self._slots:
            stats = slot.statistics()
            alive += stats.idle_workers + stats.running_workers
        return WorkerSnapshot(workers=len(self._slots), alive=alive, busy=self._busy, killed=self._killed,
                              crashed=self._crashed, out_of_memory=self._out_of_memory)

    def _release(self, slot: Any, lost: str | None) -> None:
        if lost is not None:
            setattr(self, f"_{lost}", getattr(self, f"_{lost}") + 1)
        if self._closed:
            return
        if lost is None:
            self._free_send.send_nowait(slot)
        else:
            self._nursery.start_soon(self._refill, slot)

    async def _refill(self, slot: Any) -> None:
        """Start a fresh worker in ``slot`` (it runs ``init``), then free the slot. A worker that
        fails to start leaves the slot free anyway: the next call reports the failure."""
        with contextlib.suppress(trio_parallel.BrokenWorkerError, trio.ClosedResourceError):
            await slot.run_sync(_ready, kill_on_cancel=True, limiter=_uncontended())
        if not self._closed:
            self._free_send.send_nowait(slot)


@contextlib.asynccontextmanager
async def open_cpu_workers(*, workers: int = 2, init: Callable[[], object] | None = None) -> AsyncIterator[CpuWorkers]:
    """Open a pool of ``workers`` processes, each started with ``init()`` (a picklable callable,
    run once per process), and start them all before returning, so the first call is warm.

    On exit, calls still running are waited for (trio-parallel's close is not cancellable): open
    the pool outside the nursery whose tasks use it, so those are cancelled (their workers killed)
    first. Idle workers then get ``_SHUTDOWN_GRACE_S`` to exit before they are killed.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    async with contextlib.AsyncExitStack() as stack:
        slots = [await stack.enter_async_context(trio_parallel.open_worker_context(
            idle_timeout=math.inf,  # a warm worker stays warm: respawning costs the init again
            init=functools.partial(_init_worker, init),
            retire=_retire_after_call,
            grace_period=_SHUTDOWN_GRACE_S,
        )) for _ in range(workers)]
        async with trio.open_nursery() as nursery:
            pool = CpuWorkers(slots, nursery)
            async with trio.open_nursery() as warming:
                for slot in slots:
                    warming.start_soon(pool._refill, slot)
            try:
                yield pool
            finally:
                pool._closed = True
                pool._free_send.close()
                nursery.cancel_scope.cancel()


def _uncontended() -> trio.CapacityLimiter:
    # A slot runs one call at a time (the free-slot channel sees to it), so trio-parallel's own
    # limiter must never make a call wait: each call gets a fresh one.
    return trio.CapacityLimiter(1)


# -- in the worker process ------------------------------------------------------------------------

_retire = False  # set when a call ran out of memory: the process may be in no state to go on


def _init_worker(init: Callable[[], object] | None) -> None:
    # Ctrl-C in a terminal reaches the whole process group: the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if init is not None:
        init()


def _run_limited(memory_bytes: int, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` with ``memory_bytes`` more address space than the worker holds now.

    Relative, because what a worker has mapped before any call is not the work's: one that
    imported lancedb (its runtime's threads) holds 1.7 GB of address space it never touches. The
    limit is lifted again after the call, so pickling the answer cannot fail the worker itself.
    """
    global _retire
    before, hard = resource.getrlimit(resource.RLIMIT_AS)
    wanted = _address_space() + memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard), hard))
    try:
        return fn(*args)
    except MemoryError:
        _retire = True
        raise
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (before, hard))


def _address_space() -> int:
    """Bytes of address space this process has mapped (0 where /proc does not say)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


def _retire_after_call() -> bool:
    return _retire


def _ready() -> None:
    """The no-op a new worker runs to prove it started."""


def _how_it_died(exc: BaseException, memory_mb: int) -> str:
    for arg in exc.args:
        code = getattr(arg, "exitcode", None)
        if isinstance(code, int):
            if code == -signal.SIGABRT:
                # Rust and C++ abort when an allocation fails: the likeliest cause under a limit.
                return f"killed by SIGABRT: a native library aborted, often on reaching the {memory_mb:,} MiB limit"
            if code < 0:
                with contextlib.suppress(ValueError):
                    return f"killed by {signal.Signals(-code).name}"
            return f"exit code {code}"
    return "it exited"
