"""The server process: the root nursery and its orderly stop.

::

    serve()
    └─ root nursery
       ├─ signal watcher (SIGINT/SIGTERM -> stop)           when handle_signals
       ├─ loop-lag probe -> status board
       ├─ supervised workers (each service's long-lived tasks)
       └─ HTTP: hypercorn.trio.serve(PathRouter, shutdown_trigger=stop)
                 /health /livez /readyz -> HealthApp (snapshot only)
                 /openapi.json /docs    -> DocsApp (the OpenAPI document, Swagger UI; from memory)
                 /mcp (services' mounts) -> the MCP streamable-HTTP app
                 everything else        -> RequestLayer (id, deadline, log) -> Quart app

Which services run is the caller's: ``serve()`` is given an opener (``everos.services.open_services``),
enters it under the startup deadline with a fresh :class:`~everos.runtime.Runtime`, starts the
services' workers and serves their routes and mounts.

Stopping: ``stop`` is set (a signal, or ``Runtime.request_stop()``); the board says ``stopping``
(``/readyz`` 503); hypercorn stops accepting, gives in-flight requests ``graceful_timeout_seconds``
and returns; then the nursery is cancelled, which stops every worker; the opener closes the
services' stores. A worker in a crash loop cancels the nursery too, and :func:`serve` raises.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import math
import resource
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

import hypercorn.trio
import trio
from quart_trio import QuartTrio

from everos import __version__, allocator
from everos.auth import KeyRing, check_bind_auth
from everos.config import LoadedConfig
from everos.errors import CommandError, ExitCode
from everos.key_limits import USAGE_FLUSH_INTERVAL_S, KeyUsage, RateLimit, RateLimiter
from everos.metrics import LOOP_LAG, MetricsApp
from everos.rootlock import hold_root_lock
from everos.runtime import CLOSE_TIMEOUT_S, OpenServices, Runtime, ServiceSet, is_loopback
from everos.status import LoopLagProbe
from everos.supervisor import Supervisor
from everos.web import (AuthLayer, BodyDeadline, ConnectionCap, DocsApp, HealthApp, PathRouter, RequestLayer,
                        create_app, hypercorn_config, use_prompt_close)

__all__ = ["check_bindable", "is_loopback", "raise_open_file_limit", "run", "serve", "with_cors"]

log = logging.getLogger("everos.server")


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


async def serve(
    loaded: LoadedConfig,
    *,
    services: OpenServices | None = None,
    handle_signals: bool = False,
    configure_app: Callable[[QuartTrio], None] | None = None,
    runtime_ready: Callable[[Runtime], Any] | None = None,
    http: bool = True,
    insecure_no_auth: bool = False,
    own_process: bool = False,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the server on ``loaded.config.api.host``/``port`` until stopped.

    ``services`` opens the services to run (see :data:`~everos.runtime.OpenServices`); without it
    the server answers health, metrics and nothing else. ``task_status.started()`` reports the bound addresses (``http://127.0.0.1:PORT``) once the
    server answers and ``/readyz`` says ready. Returns after an orderly stop. With ``http=False``
    nothing listens (``everos mcp`` over stdio): the services and their workers run until stopped,
    and ``task_status.started()`` reports ``[]``. ``own_process``: the process is this server's
    (the CLI): once started, the objects it keeps are frozen out of the garbage collector's full
    collections (:func:`everos.allocator.freeze_startup_heap`), and a thread running Python gives
    the GIL up after ``[limits] gil_switch_interval_ms`` when another wants it.

    API keys (``<root>/.keys.json``, :mod:`everos.auth`): once one exists, every route but the
    health paths needs one. A bind beyond loopback with no key refuses to start unless
    ``insecure_no_auth``.

    Raises:
        RootLocked: another process owns the root.
        CommandError: the address cannot be listened on (checked before any store opens).
        ConfigError: the bind is not loopback and no API key exists (without ``insecure_no_auth``).
        WorkerCrashLoop: a worker kept crashing; the server stopped.
    """
    config = loaded.config
    with hold_root_lock(loaded.root, purpose="everos server" if http else "everos mcp (stdio, no HTTP)") as lock:
        keys = KeyRing(loaded.root)
        if http:
            check_bindable(config.api.host, config.api.port)
            check_bind_auth(config.api.host, keys, insecure_no_auth=insecure_no_auth)
        soft, hard = raise_open_file_limit()
        allocator.configure(config.limits.malloc_arenas)  # before LanceDB starts its threads
        log.info("everos %s starting", __version__,
                 extra={"fields": {"root": loaded.root, "open_files_soft": soft, "open_files_hard": hard}})
        if http and not is_loopback(config.api.host) and not keys.required:
            log.warning("binding to %s with no API key (--insecure-no-auth): anyone who can reach this address "
                        "can read and change the knowledge base", config.api.host)
        for item in loaded.ignored:
            log.info("config ignored: %s", item)
        runtime = Runtime.for_config(loaded)
        board = runtime.board
        stack = contextlib.AsyncExitStack()
        rates = RateLimit(config.api.key_requests_per_second, config.api.key_burst, config.api.key_concurrent_uploads)
        usage = KeyUsage(loaded.root)
        async with trio.open_nursery() as nursery:
            if handle_signals:
                await nursery.start(_watch_signals, runtime.stop)
            nursery.start_soon(_write_key_usage, usage)
            nursery.start_soon(LoopLagProbe(board, config.limits.loop_lag_probe_interval_seconds,
                                            observe=LOOP_LAG.observe).run)
            # One scope around the services' whole life (the CPU worker pool holds a nursery, which
            # must close in the scope it was opened in): the startup deadline while they open, none
            # while they run, shielded and CLOSE_TIMEOUT_S while they close.
            opened_in_time = False
            with trio.CancelScope(deadline=trio.current_time() + config.api.startup_timeout_seconds) as scope:
                try:
                    opened: ServiceSet | None = None
                    if services is not None:
                        opened = await stack.enter_async_context(services(runtime))
                    opened_in_time = True
                    scope.deadline = math.inf
                    # The workers' own nursery, inside the services: they are all cancelled before the
                    # services they use close (the CPU worker pool waits for calls still running).
                    async with trio.open_nursery() as workers:
                        running = list(opened.services) if opened is not None else []
                        supervisor = Supervisor(workers, board, restart_limit=config.limits.worker_restart_limit,
                                                restart_window_s=config.limits.worker_restart_window_seconds)
                        for service in running:
                            service.start_workers(supervisor)

                        app = create_app(
                            max_upload_bytes=config.knowledge.max_upload_bytes,
                            blueprints=list(opened.blueprints) if opened is not None else [],
                            configure=configure_app,
                        )
                        mounts: dict[str, Any] = {}
                        for service in running:
                            mounts.update(getattr(service, "mounts", None) or {})
                        api = with_cors(RequestLayer(app, config.api.request_timeout_seconds), config.api.cors_origins)
                        asgi = PathRouter(
                            api, HealthApp(board), mounts, metrics=MetricsApp(board), docs=DocsApp(),
                            auth=AuthLayer(keys, RateLimiter(rates), usage),
                            body_deadline=BodyDeadline(config.api.body_timeout_seconds,
                                                       config.api.body_min_rate_bytes))
                        cap = ConnectionCap.for_setting(config.api.max_connections)
                        board.blocks["http"] = cap.snapshot
                        hconfig = hypercorn_config(config.api, cap)
                        use_prompt_close()
                        if own_process:  # before the listener opens: the one collection is startup's
                            frozen = allocator.freeze_startup_heap()
                            log.debug("froze %d startup objects out of full collections", frozen)
                            sys.setswitchinterval(config.limits.gil_switch_interval_ms / 1000)

                        async def shutdown_trigger() -> None:
                            await runtime.stop.wait()
                            board.set_state("stopping")
                            log.info("stopping: draining in-flight requests (up to %g s)",
                                     config.api.graceful_timeout_seconds)

                        async def run_http(*, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
                            await hypercorn.trio.serve(asgi, hconfig, shutdown_trigger=shutdown_trigger,
                                                       task_status=task_status)
                            workers.cancel_scope.cancel()

                        async def run_until_stop() -> None:
                            await runtime.stop.wait()
                            board.set_state("stopping")
                            workers.cancel_scope.cancel()

                        if http:
                            binds = await workers.start(run_http)
                            lock.record(binds)  # `everos mcp` and the CLI reach this server here
                        else:
                            binds = []
                            workers.start_soon(run_until_stop)
                        board.set_state("ready")
                        log.info("ready", extra={"fields": {"listening": " ".join(binds)}})
                        if runtime_ready is not None:
                            runtime_ready(runtime)
                        task_status.started(binds)
                finally:
                    # Workers are all cancelled by now; close the stores they used.
                    scope.shield = True
                    scope.deadline = trio.current_time() + CLOSE_TIMEOUT_S
                    await stack.aclose()
            if scope.cancelled_caught and not opened_in_time:
                raise trio.TooSlowError(f"startup took longer than {config.api.startup_timeout_seconds:g} s")
            nursery.cancel_scope.cancel()  # the signal watcher, the lag probe, the key usage writer
        await _flush_key_usage(usage)
    log.info("stopped")


async def _write_key_usage(usage: KeyUsage) -> None:
    """Write when the keys were last used, every ``USAGE_FLUSH_INTERVAL_S`` while it changes."""
    while True:
        await trio.sleep(USAGE_FLUSH_INTERVAL_S)
        await _flush_key_usage(usage)


async def _flush_key_usage(usage: KeyUsage) -> None:
    """One write of ``usage`` in a thread, bounded (shielded: it also runs at stop); a failure is
    logged, never raised: it is a hint for ``everos keys list``."""
    with trio.move_on_after(5.0, shield=True):
        try:
            await trio.to_thread.run_sync(usage.flush, abandon_on_cancel=True)
        except OSError as exc:
            log.warning("could not write when the API keys were last used: %s", exc)


def run(loaded: LoadedConfig, *, services: OpenServices, insecure_no_auth: bool = False) -> None:
    """Blocking entry point for the CLI: run until SIGINT/SIGTERM."""
    trio.run(functools.partial(serve, loaded, services=services, handle_signals=True,
                               insecure_no_auth=insecure_no_auth, own_process=True))
