"""The memory-root lock: one process owns a root at a time, and says where it can be reached.

An ``flock`` on ``<root>/.lock`` (EverOS's lock anchor), held for the life of the server or of a
CLI command that writes. The kernel drops it when the process dies, even by SIGKILL, so a crash
never leaves a stale lock. The file says who holds it: the owner's pid on the first line (so the
refusal can name it), then one JSON line with what the owner is doing (``purpose``) and, once a
server listens, the URLs it bound (``urls``). ``everos mcp`` reads those URLs to reach the server
that owns the root, never the port a config file names (the server may have been started with
``--port``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from everos.errors import RootLocked

__all__ = ["LockOwner", "RootLock", "hold_root_lock", "reachable_url", "read_lock_owner"]

LOCK_FILENAME = ".lock"
_MAX_LOCK_BYTES = 4096


@dataclass(frozen=True)
class LockOwner:
    """Who holds a root's lock: a pid (-1 when the file does not say), a purpose, bound URLs."""

    pid: int
    purpose: str = ""
    urls: tuple[str, ...] = field(default_factory=tuple)


_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def reachable_url(bind: str) -> str:
    """Where a client on this machine reaches a server that bound ``bind`` (``http://HOST:PORT``,
    as hypercorn reports it): a wildcard bind is reached on loopback. Pure."""
    url = httpx.URL(bind)
    return str(url.copy_with(host=_WILDCARDS.get(url.host, url.host))).rstrip("/")


def _parse(text: str) -> LockOwner:
    first, _, rest = text.partition("\n")
    pid = int(first.strip()) if first.strip().isdigit() else -1
    try:
        info = json.loads(rest) if rest.strip() else {}
    except ValueError:  # a write in progress, or a foreign file: the pid is still worth naming
        info = {}
    if not isinstance(info, dict):
        info = {}
    urls = info.get("urls")
    return LockOwner(pid=pid, purpose=str(info.get("purpose", "")),
                     urls=tuple(u for u in urls if isinstance(u, str)) if isinstance(urls, list) else ())


def read_lock_owner(root: Path) -> LockOwner | None:
    """Who holds the root's lock, or None when it is free (or the root does not exist). Does not
    take the lock, and creates nothing."""
    path = root / LOCK_FILENAME
    try:
        handle = open(path, "r+b")  # noqa: SIM115 - closed below; "r+" never creates
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _parse(os.pread(handle.fileno(), _MAX_LOCK_BYTES, 0).decode(errors="replace"))
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None


class RootLock:
    """The held lock: :meth:`record` tells later readers where this process listens."""

    def __init__(self, fd: int, purpose: str) -> None:
        self._fd = fd
        self.purpose = purpose
        self._write(())

    def record(self, urls: list[str] | tuple[str, ...]) -> None:
        """Write the URLs this process serves on into the lock file. Blocking, but one small write."""
        self._write(tuple(urls))

    def _write(self, urls: tuple[str, ...]) -> None:
        data = f"{os.getpid()}\n{json.dumps({'purpose': self.purpose, 'urls': list(urls)})}\n".encode()
        # Overwrite, then cut: a reader never sees an empty file while the lock is held.
        os.pwrite(self._fd, data, 0)
        os.ftruncate(self._fd, len(data))


@contextlib.contextmanager
def hold_root_lock(root: Path, purpose: str = "server") -> Iterator[RootLock]:
    """Hold the root's lock for the duration of the block. Blocking, but only for a syscall.

    The root must exist: a lock never creates a memory root on its own (``everos init`` does).

    Raises:
        RootLocked: another process (or another open of the lock in this one) holds it.
        FileNotFoundError: the root does not exist.
    """
    fd = os.open(root / LOCK_FILENAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _parse(os.pread(fd, _MAX_LOCK_BYTES, 0).decode(errors="replace"))
            held_by = f"pid {owner.pid}" if owner.pid > 0 else "pid unknown"
            if owner.purpose:
                held_by += f", {owner.purpose}"
            raise RootLocked(
                f"another everos process ({held_by}) owns the root {root}; stop it first "
                f"or use another --root ({purpose} refused)"
            ) from None
        lock = RootLock(fd, purpose)
        try:
            yield lock
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
