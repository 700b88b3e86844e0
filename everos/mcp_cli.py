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

The proxy publishes the same catalog (``everos.mcp``) and forwards each call with
:class:`~everos.mcp.RemoteDispatch` under the deadline of ``[api] request_timeout_seconds`` plus
``PROXY_GRACE_S``, so the server's own bounded answer arrives first. Opening the root runs the
services of ``everos.services.open_services`` with the MCP tools on stdio instead of ``/mcp``.
"""

from __future__ import annotations

import functools
import logging
import signal
from pathlib import Path

import httpx
import trio
from mcp.server.mcpserver import MCPServer
from trio_util import wait_any

from everos.client import ApiClient, server_base_url
from everos.config import load_config, resolve_root
from everos.errors import CommandError, ExitCode
from everos.mcp import RemoteDispatch, build_server, serve_stdio
from everos.mcp._stdio import stdio_line_limit
from everos.rootlock import read_lock_owner
from everos.server import serve
from everos.services import open_services

__all__ = ["check_reachable", "choose_target", "run"]

log = logging.getLogger("everos.mcp")

PROXY_GRACE_S = 5.0
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


async def _first_stop_signal() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


async def _serve_proxy(server: MCPServer, max_line_bytes: int) -> None:
    """Serve the proxy's catalog on stdio until stdin closes or SIGINT/SIGTERM arrives."""
    await wait_any(_first_stop_signal, functools.partial(serve_stdio, server, max_line_bytes))


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
        log.info("mcp over stdio: opening the root %s in this process", root_path)
        services = functools.partial(open_services, mcp_transport="stdio")
        trio.run(functools.partial(serve, loaded, services=services, handle_signals=True, http=False,
                                   own_process=True))
        return 0
    trio.run(check_reachable, target, owner)
    log.info("mcp over stdio: proxying to %s", target)
    deadline_s = loaded.config.api.request_timeout_seconds + PROXY_GRACE_S
    server = build_server(RemoteDispatch(target, deadline_s, owner))
    trio.run(_serve_proxy, server, stdio_line_limit(loaded.config))
    return 0
