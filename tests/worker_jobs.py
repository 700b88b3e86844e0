"""Work for the worker-pool tests to run in a spawned process: module-level, and light to import."""

from __future__ import annotations

import mmap
import os
import signal

from everos.errors import ConversionFailed

_initialised = 0  # how often count_init ran in this process
_reserved: list[mmap.mmap] = []  # address space held, never touched (as lancedb's runtime does)


def pid() -> int:
    return os.getpid()


def add(a: int, b: int) -> int:
    return a + b


def refuse(name: str) -> None:
    raise ConversionFailed(f"'{name}' could not be read as PDF: broken")


def spin() -> None:
    while True:
        pass


def hog() -> int:
    return len(bytearray(8 << 30))  # 8 GiB: past any limit the tests set


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def count_init() -> None:
    global _initialised
    _initialised += 1


def times_initialised() -> int:
    return _initialised


def reserve_address_space() -> None:
    _reserved.append(mmap.mmap(-1, 2 << 30))  # 2 GiB mapped, none of it used


def fill(mib: int) -> bytes:
    work = bytearray(mib << 20)
    return bytes(work[: len(work) // 4])


def pid_tokens(text: str) -> list[str]:
    """A tokenizer that says which process ran it."""
    return [f"pid{os.getpid()}", *text.lower().split()]


def spinning_tokens(text: str) -> list[str]:
    """A tokenizer that never ends (as a native segmenter stuck on hostile text would)."""
    spin()
    return []
