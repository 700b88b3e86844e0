"""What every service is opened with, and what the root nursery needs of the services once open.

::

    Runtime      the loaded config, the status board (/health), the thread budgets, the stop event
    Service      an open part of the server, as the root nursery sees it: its workers (and mounts)
    ServiceSet   what a services opener yields to ``serve()``: the services and their routes
    OpenServices ``opener(runtime)`` -> an async context manager of a ServiceSet

The services themselves are named and wired in one place only, ``everos.services``; this module
sits in the lowest layer so that every layer above can type what it is given (tests/test_layers.py).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import trio

from everos.config import Config, LoadedConfig
from everos.status import StatusBoard
from everos.supervisor import Supervisor

if TYPE_CHECKING:
    from quart import Blueprint

__all__ = ["CLOSE_TIMEOUT_S", "Limiters", "OpenServices", "Runtime", "Service", "ServiceSet", "is_loopback"]

# How long the services of a process get to close at a stop (shielded: a stop cannot cut it short).
CLOSE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Limiters:
    """The named thread budgets (guarantee G5): every thread call takes one of these."""

    sqlite: trio.CapacityLimiter
    lancedb: trio.CapacityLimiter
    files: trio.CapacityLimiter
    cpu: trio.CapacityLimiter

    @classmethod
    def from_config(cls, loaded: LoadedConfig) -> Limiters:
        limits = loaded.config.limits
        return cls(
            sqlite=trio.CapacityLimiter(limits.sqlite_threads),
            lancedb=trio.CapacityLimiter(limits.lancedb_threads),
            files=trio.CapacityLimiter(limits.file_threads),
            cpu=trio.CapacityLimiter(limits.cpu_threads),
        )


@dataclass
class Runtime:
    """What every service receives: the config, the status board, the thread budgets."""

    loaded: LoadedConfig
    board: StatusBoard
    limiters: Limiters
    stop: trio.Event = field(default_factory=trio.Event)

    @classmethod
    def for_config(cls, loaded: LoadedConfig) -> Runtime:
        """A fresh runtime for ``loaded``: an empty board and the configured thread budgets."""
        return cls(loaded=loaded, board=StatusBoard(), limiters=Limiters.from_config(loaded))

    @property
    def config(self) -> Config:
        return self.loaded.config

    @property
    def root(self) -> Path:
        return self.loaded.root

    def request_stop(self) -> None:
        """Begin an orderly stop, as SIGTERM would. Not a checkpoint; idempotent."""
        self.stop.set()


class Service(Protocol):
    """An open part of the server (ingest, the index writer, the cascade, MCP) as the root nursery
    sees it. A service is constructed open, from the services opened before it, and closed by
    whoever opened it (``everos.services.open_services``).

    A service may also carry ``mounts``, a dict of ASGI apps by path prefix (``{"/mcp": app}``):
    the path router sends those paths to them, before Quart and its request layer.
    """

    def start_workers(self, supervisor: Supervisor) -> None:
        """Start long-lived workers under supervision. Not a checkpoint."""


class ServiceSet(Protocol):
    """The open services of one process, in the order their workers start, and their routes."""

    @property
    def services(self) -> Sequence[Service]: ...

    @property
    def blueprints(self) -> Sequence[Blueprint]: ...


OpenServices = Callable[[Runtime], AbstractAsyncContextManager[ServiceSet]]
"""``async with opener(runtime) as opened:`` opens services (under the caller's startup deadline)
and closes them on exit, shielded and bounded."""


def is_loopback(host: str) -> bool:
    """True for a loopback bind address (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
