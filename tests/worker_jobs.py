"""Work for the worker-pool tests to run in a spawned process: module-level, and light to import."""

from __future__ import annotations

import os
import signal

from everos.errors import ConversionFailed

_initialised = 0  # how often count_init ran in this process


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
