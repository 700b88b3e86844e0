"""The server process: the root nursery, its wiring and its orderly stop.

::

    serve()
    └─ root nursery
       ├─ signal watcher (SIGINT/SIGTERM -> stop)           when handle_signals
       ├─ loop-lag probe -> status board
       ├─ supervised workers (each service's long-lived tasks)
       └─ HTTP: hypercorn.trio.serve(PathRouter, shutdown_trigger=stop)
                 /health /livez /readyz -> HealthApp (snapshot only)
                 /mcp (services' mounts) -> the MCP streamable-HTTP app
                 everything else        -> RequestLayer (id, deadline, log) -> Quart app

Stopping: ``stop`` is set (a signal, or ``Runtime.request_stop()``); the board says ``stopping``
(``/readyz`` 503); hypercorn stops accepting, gives in-flight requests ``graceful_timeout_seconds``
and returns; then the nursery is cancelled, which stops every worker; services close their stores.
A worker in a crash loop cancels the nursery too, and :func:`serve` raises.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import logging
import resource
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import hypercorn.config
import hypercorn.trio
import trio
from quart import Blueprint
from quart_trio import QuartTrio

from everos import __version__
from everos.config import LoadedConfig
from everos.errors import CommandError, ExitCode
from everos.metrics import LOOP_LAG, MetricsApp
from everos.rootlock import hold_root_lock
from everos.status import LoopLagProbe, StatusBoard
from everos.supervisor import Supervisor
from everos.web import HealthApp, PathRouter, RequestLayer, create_app

__all__ = ["Limiters", "Runtime", "Service", "raise_open_file_limit", "serve"]

log = logging.getLogger("everos.server")


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

    @property
    def config(self):
        return self.loaded.config

    def request_stop(self) -> None:
        """Begin an orderly stop, as SIGTERM would. Not a checkpoint; idempotent."""
        self.stop.set()


class Service(Protocol):
    """A part of the server (ingest, cascade, search...) as the root nursery sees it.

    A service may also carry ``mounts``, a dict of ASGI apps by path prefix (``{"/mcp": app}``):
    the path router sends those paths to them, before Quart and its request layer.
    """

    async def open(self, runtime: Runtime) -> None:
        """Open stores and recover state; runs under the startup deadline before serving."""

    def start_workers(self, supervisor: Supervisor) -> None:
        """Start long-lived workers under supervision. Not a checkpoint."""

    async def aclose(self) -> None:
        """Close stores. Idempotent; runs shielded under a short deadline at stop."""


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft open-file limit to the hard one where allowed; return (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft, hard


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_BIND_ADVICE = {
    errno.EADDRINUSE: "another process listens there; stop it or pass another --port",
    errno.EACCES: "ports below 1024 need privileges; pass --port 1024 or above",
    errno.EADDRNOTAVAIL: "that address is not one of this machine's; pass --host 127.0.0.1",
}


def check_bindable(host: str, port: int) -> None:
    """Fail fast, before any store opens, when ``host:port`` cannot be listened on. Blocking, but
    only for a bind syscall (and a name lookup when ``host`` is a name).

    Raises:
        CommandError: the address is in use, privileged, not local or not a name (``CANNOT_LISTEN``).
    """
    where = f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise CommandError(f"cannot listen on {where}: {host!r} is not an address or a known name ({exc}); "
                           "pass --host 127.0.0.1", exit_code=ExitCode.CANNOT_LISTEN) from None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as hypercorn binds
            try:
                sock.bind(address)
            except OSError as exc:
                advice = _BIND_ADVICE.get(exc.errno, "pass another --host or --port")
                raise CommandError(f"cannot listen on {where}: {exc.strerror or exc}; {advice}",
                                   exit_code=ExitCode.CANNOT_LISTEN) from None


CORS_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "Prefer", "X-Request-Id")
CORS_EXPOSED = ("Location", "Retry-After", "X-Request-Id")


def with_cors(app: Any, origins: list[str]) -> Any:
    """``app`` answering browsers from ``origins`` only (``[api] cors_origins``; none by default).

    Starlette's ``CORSMiddleware`` (plain ASGI, already installed with the MCP SDK) answers the
    preflight and adds the headers; an origin not in the list gets no CORS header, so the browser
    refuses the answer. The health, metrics and MCP paths are not behind it (MCP checks origins
    itself).
    """
    if not origins:
        return app
    from starlette.middleware.cors import CORSMiddleware

    return CORSMiddleware(app, allow_origins=list(origins), allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                          allow_headers=list(CORS_HEADERS), expose_headers=list(CORS_EXPOSED), max_age=600)


async def _watch_signals(stop: trio.Event, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            log.info("received %s, stopping", signal.Signals(signum).name)
            stop.set()
            return


SHUTDOWN_CLOSE_TIMEOUT_S = 10.0


async def serve(
    loaded: LoadedConfig,
    *,
    services: list[Service] | None = None,
    blueprints: list[Blueprint] | None = None,
    handle_signals: bool = False,
    configure_app: Callable[[QuartTrio], None] | None = None,
    runtime_ready: Callable[[Runtime], Any] | None = None,
    http: bool = True,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the server on ``loaded.config.api.host``/``port`` until stopped.

    ``task_status.started()`` reports the bound addresses (``http://127.0.0.1:PORT``) once the
    server answers and ``/readyz`` says ready. Returns after an orderly stop. With ``http=False``
    nothing listens (``everos mcp`` over stdio): the services and their workers run until stopped,
    and ``task_status.started()`` reports ``[]``.

    Raises:
        RootLocked: another process owns the root.
        CommandError: the address cannot be listened on (checked before any store opens).
        WorkerCrashLoop: a worker kept crashing; the server stopped.
    """
    config = loaded.config
    services = services or []
    with hold_root_lock(loaded.root, purpose="everos server" if http else "everos mcp (stdio, no HTTP)") as lock:
        if http:
            check_bindable(config.api.host, config.api.port)
        soft, hard = raise_open_file_limit()
        log.info("everos %s starting", __version__,
                 extra={"fields": {"root": loaded.root, "open_files_soft": soft, "open_files_hard": hard}})
        if not is_loopback(config.api.host):
            log.warning("binding to %s: everos has no authentication yet; anyone who can reach this address "
                        "can read and change the knowledge base", config.api.host)
        for item in loaded.ignored:
            log.info("config ignored: %s", item)
        board = StatusBoard()
        runtime = Runtime(loaded=loaded, board=board, limiters=Limiters.from_config(loaded))
        try:
            async with trio.open_nursery() as nursery:
                if handle_signals:
                    await nursery.start(_watch_signals, runtime.stop)
                nursery.start_soon(LoopLagProbe(board, config.limits.loop_lag_probe_interval_seconds,
                                                observe=LOOP_LAG.observe).run)
                with trio.fail_after(config.api.startup_timeout_seconds):
                    for service in services:
                        await service.open(runtime)
                supervisor = Supervisor(nursery, board, restart_limit=config.limits.worker_restart_limit,
                                        restart_window_s=config.limits.worker_restart_window_seconds)
                for service in services:
                    service.start_workers(supervisor)

                app = create_app(
                    max_upload_bytes=config.knowledge.max_upload_bytes,
                    blueprints=blueprints or [],
                    configure=configure_app,
                )
                mounts: dict[str, Any] = {}
                for service in services:
                    mounts.update(getattr(service, "mounts", None) or {})
                api = with_cors(RequestLayer(app, config.api.request_timeout_seconds), config.api.cors_origins)
                asgi = PathRouter(api, HealthApp(board), mounts, metrics=MetricsApp(board))
                hconfig = hypercorn.config.Config()
                hconfig.bind = [f"{config.api.host}:{config.api.port}"]
                hconfig.accesslog = None
                hconfig.errorlog = logging.getLogger("hypercorn.error")
                hconfig.graceful_timeout = config.api.graceful_timeout_seconds
                hconfig.keep_alive_timeout = 30

                async def shutdown_trigger() -> None:
                    await runtime.stop.wait()
                    board.set_state("stopping")
                    log.info("stopping: draining in-flight requests (up to %g s)",
                             config.api.graceful_timeout_seconds)

                async def run_http(*, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
                    await hypercorn.trio.serve(asgi, hconfig, shutdown_trigger=shutdown_trigger,
                                               task_status=task_status)
                    nursery.cancel_scope.cancel()

                async def run_until_stop() -> None:
                    await runtime.stop.wait()
                    board.set_state("stopping")
                    nursery.cancel_scope.cancel()

                if http:
                    binds = await nursery.start(run_http)
                    lock.record(binds)  # `everos mcp` and the CLI reach this server here
                else:
                    binds = []
                    nursery.start_soon(run_until_stop)
                board.set_state("ready")
                log.info("ready", extra={"fields": {"listening": " ".join(binds)}})
                if runtime_ready is not None:
                    runtime_ready(runtime)
                task_status.started(binds)
        finally:
            # Workers are all cancelled by now; close the stores they used.
            with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_CLOSE_TIMEOUT_S):
                for service in reversed(services):
                    await service.aclose()
    log.info("stopped")


def run(loaded: LoadedConfig, *, services: list[Service], blueprints: list[Blueprint]) -> None:
    """Blocking entry point for the CLI: run until SIGINT/SIGTERM."""
    trio.run(functools.partial(serve, loaded, services=services, blueprints=blueprints, handle_signals=True))
