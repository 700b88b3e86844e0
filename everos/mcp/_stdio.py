"""``everos mcp``: the knowledge tools over stdio, for MCP clients that launch a command.

Which everos answers (one process owns a root at a time; the root lock says whether one does):

- ``--url URL``: a proxy to the server at ``URL`` (its ``/mcp`` endpoint). No root is opened.
- no ``--url``, the root's lock is free: this process opens the root itself and runs the ingest
  workers, like ``everos server start`` without HTTP, until the client closes stdin (or
  SIGINT/SIGTERM). While it runs, ``everos server start`` on that root is refused.
- no ``--url``, the root is locked (a server runs): a proxy to that server, at the address that
  server recorded in the root's lock file when it bound (not the port of the root's config: the
  server may run with ``--port``). An owner that serves no HTTP (another ``everos mcp``, a
  cascade command), or a server that does not answer, stops the command with one line and a
  non-zero exit instead of proxying anywhere else.

The proxy publishes the same catalog and forwards each call over streamable HTTP, one short MCP
session per call (a server restart between calls costs nothing), under the deadline of
``[api] request_timeout_seconds`` plus ``PROXY_GRACE_S`` so the server's own bounded answer
arrives first. An unreachable server answers ``SERVICE_UNAVAILABLE`` as a tool error.

stdin is read in a thread that is abandoned on cancel, so SIGTERM stops the process even while no
line arrives (the SDK's reader would wait for one). Logs go to stderr: stdout is the protocol.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import trio
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server
from mcp.types import CallToolResult

from everos.config import Config, load_config, resolve_root
from everos.errors import CommandError, ExitCode
from everos.mcp._catalog import build_server
from everos.mcp._render import error_result
from everos.client import ApiClient, server_base_url
from everos.rootlock import read_lock_owner

__all__ = ["RemoteDispatch", "check_reachable", "choose_target", "run", "serve_stdio", "stdio_line_limit"]

log = logging.getLogger("everos.mcp")

PROXY_GRACE_S = 5.0
MIB = 1024 * 1024
READ_CHUNK_BYTES = 65536


def stdio_line_limit(config: Config) -> int:
    """The longest stdio message read: room for the largest content, JSON-escaped."""
    return 2 * config.knowledge.max_upload_bytes + MIB


class _StdinLines:
    """The lines of a file descriptor for ``stdio_server``, read in a thread abandoned on cancel.

    ``os.read`` on the bare descriptor, not ``sys.stdin.buffer``: an abandoned thread blocked in
    a buffered read holds the buffer's lock, and the interpreter aborts at exit when it finds it
    held. A line longer than ``max_line_bytes`` is dropped to its end and handed on as an empty
    line, which the SDK reports as a parse error; memory stays bounded. After a cancel the
    stream must not be iterated again (the abandoned read may still consume a chunk).
    """

    def __init__(self, fd: int, max_line_bytes: int) -> None:
        self._fd = fd
        self._max_line_bytes = max_line_bytes
        self._buffer = bytearray()
        self._skipping = False
        self._eof = False

    def __aiter__(self) -> _StdinLines:
        return self

    async def __anext__(self) -> str:
        line = await trio.to_thread.run_sync(self._read_line, abandon_on_cancel=True)
        if line is None:
            raise StopAsyncIteration
        return line

    def _read_line(self) -> str | None:
        while True:
            end = self._buffer.find(b"\n")
            if end != -1 or self._eof:
                cut = end + 1 if end != -1 else len(self._buffer)
                raw = bytes(self._buffer[:cut])
                del self._buffer[:cut]
                dropped = self._skipping or len(raw) > self._max_line_bytes
                self._skipping = False
                if dropped:
                    log.warning("dropped a stdio message over %d bytes", self._max_line_bytes)
                    return "\n"
                return raw.decode("utf-8", errors="replace") if raw else None
            if len(self._buffer) > self._max_line_bytes:
                self._skipping = True  # keep reading to the end of the line, holding none of it
                self._buffer.clear()
            chunk = os.read(self._fd, READ_CHUNK_BYTES)
            if chunk:
                self._buffer += chunk
            else:
                self._eof = True


async def serve_stdio(server: MCPServer, max_line_bytes: int, stdin_fd: int | None = None) -> None:
    """Serve ``server`` over stdin/stdout until stdin closes. A checkpoint; blocks for the session.

    Cancellation handling: returns promptly; a thread blocked reading stdin is abandoned.
    """
    lines = _StdinLines(sys.stdin.fileno() if stdin_fd is None else stdin_fd, max_line_bytes)
    # run_stdio_async() offers no way to pass a cancellable stdin, so the low-level server is run
    # directly, as the SDK's own in-process Client does.
    lowlevel = server._lowlevel_server
    async with stdio_server(stdin=lines) as (read_stream, write_stream):
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())


class RemoteDispatch:
    """The catalog's ``Dispatch`` for a proxy: each call goes to the server at ``url``."""

    def __init__(self, url: str, deadline_s: float, owner_pid: int | None = None) -> None:
        self.url = url
        self.deadline_s = deadline_s
        self.owner_pid = owner_pid

    async def __call__(self, name: str, arguments: dict[str, Any]) -> CallToolResult:
        """The server's answer, or a ``SERVICE_UNAVAILABLE`` / ``REQUEST_TIMEOUT`` tool error. A
        checkpoint; never raises for a failed call."""
        with trio.move_on_after(self.deadline_s):
            try:
                async with Client(self.url) as client:
                    return await client.call_tool(name, arguments)
            except Exception as exc:  # refused, reset, HTTP or protocol error: the answer says which
                owner = f" (the root is owned by pid {self.owner_pid})" if self.owner_pid else ""
                return error_result("SERVICE_UNAVAILABLE", f"cannot reach the everos server at {self.url}{owner}: "
                                    f"{_describe(exc)}", retry_after_s=5)
        return error_result("REQUEST_TIMEOUT", f"the everos server at {self.url} did not answer {name} "
                                               f"within {self.deadline_s:g} s")


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return f"{exc.__class__.__name__}: {exc}"[:300]


PROBE_TIMEOUT_S = 3.0


def choose_target(root: Path, url: str | None) -> tuple[str, str | None, int | None]:
    """``("proxy", url, owner_pid)`` or ``("local", None, None)``: see the module docstring.

    Raises:
        CommandError: the root is owned by a process that serves no HTTP (``UNREACHABLE``).
    """
    if url:
        return "proxy", url, None
    owner = read_lock_owner(root)
    if owner is None:
        return "local", None, None
    return "proxy", server_base_url(root, None) + "/mcp", owner.pid


async def check_reachable(url: str, owner_pid: int | None) -> None:
    """Raise unless the server behind ``url`` (its ``/mcp`` URL) answers ``/livez``. A checkpoint.

    Raises:
        CommandError: it does not answer within ``PROBE_TIMEOUT_S``, or not 200 (``UNREACHABLE``).
    """
    owner = f" (the root's owner is pid {owner_pid})" if owner_pid else ""
    base = str(httpx.URL(url).copy_with(path="/", query=None))
    try:
        async with ApiClient(base, timeout_s=PROBE_TIMEOUT_S, max_retries=0) as client:
            response = await client.request("GET", "/livez")
    except CommandError as exc:
        raise CommandError(exc.message + owner, exit_code=exc.exit_code) from None
    if response.status_code != 200:
        raise CommandError(f"cannot reach the everos server at {url}: /livez answered {response.status_code}{owner}",
                           exit_code=ExitCode.UNREACHABLE)


async def _serve_proxy(server: MCPServer, max_line_bytes: int) -> None:
    async with trio.open_nursery() as nursery:
        async def watch_signals() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()

        nursery.start_soon(watch_signals)
        await serve_stdio(server, max_line_bytes)
        nursery.cancel_scope.cancel()


def run(root: str | None, url: str | None, log_level: str | None = None) -> int:
    """Blocking entry point of ``everos mcp``; returns the exit code.

    A root is never created here: without ``--url`` the root must hold an ``everos.toml``
    (``everos init`` writes one), so a client launched without ``EVEROS_ROOT`` cannot make an
    empty ``~/.everos`` by accident.

    Raises:
        ConfigError: the root's configuration is invalid, or (without ``--url``) missing.
        CommandError: the server to proxy to cannot be reached.
        RootLocked: the root was taken by another process between the check and the open.
    """
    from everos.logs import configure_logging

    root_path = resolve_root(root)
    overrides = {("api", "log_level"): log_level} if log_level else None
    loaded = load_config(root_path, require_file=url is None, overrides=overrides)
    configure_logging(loaded.config.api.log_level, fmt=loaded.config.api.log_format)  # stderr: stdout is the protocol
    mode, target, owner = choose_target(root_path, url)
    if mode == "local":
        # Imported here: everos.services imports this package (MCPService) at its top.
        from everos.server import serve
        from everos.services import build_services

        log.info("mcp over stdio: opening the root %s in this process", root_path)
        services, _ = build_services(loaded, mcp_transport="stdio")
        trio.run(functools.partial(serve, loaded, services=services, handle_signals=True, http=False))
        return 0
    trio.run(check_reachable, target, owner)
    log.info("mcp over stdio: proxying to %s", target)
    deadline_s = loaded.config.api.request_timeout_seconds + PROXY_GRACE_S
    server = build_server(RemoteDispatch(target, deadline_s, owner))
    trio.run(_serve_proxy, server, stdio_line_limit(loaded.config))
    return 0
