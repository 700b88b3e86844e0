"""The memory-root lock: one process owns a root at a time.

An ``flock`` on ``<root>/.lock`` (EverOS's lock anchor), held for the life of the server or of a
CLI command that writes. The kernel drops it when the process dies, even by SIGKILL, so a crash
never leaves a stale lock. The owner's pid is written into the file so the refusal can name it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from everos.errors import RootLocked

__all__ = ["hold_root_lock", "root_lock_owner"]

LOCK_FILENAME = ".lock"


def root_lock_owner(root: Path) -> int | None:
    """The pid that holds the root's lock, or None when it is free. Does not take the lock."""
    path = root / LOCK_FILENAME
    if not path.exists():
        return None
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            text = handle.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None


@contextlib.contextmanager
def hold_root_lock(root: Path, purpose: str = "server") -> Iterator[None]:
    """Hold the root's lock for the duration of the block. Blocking, but only for a syscall.

    Raises:
        RootLocked: another process (or another open of the lock in this one) holds it.
    """
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_FILENAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RootLocked(
                f"another everos process (pid {owner}) owns the root {root}; stop it first "
                f"or use another --root ({purpose} refused)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
