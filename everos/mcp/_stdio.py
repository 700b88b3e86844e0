"""The knowledge tools over stdio: stdin read so that a stop is never held, and the proxy's dispatch.

:func:`serve_stdio` serves a catalog over this process's stdin/stdout (``everos mcp``, see
``everos/mcp_cli.py``, and :class:`MCPService` with ``transport="stdio"``). stdin is read in a
thread that is abandoned on cancel, so SIGTERM stops the process even while no line arrives (the
SDK's reader would wait for one). Logs go to stderr: stdout is the protocol.

:class:`RemoteDispatch` answers the catalog by a running server: each call is forwarded over
streamable HTTP, one short MCP session per call (a server restart between calls costs nothing),
under a deadline; an unreachable server answers ``SERVICE_UNAVAILABLE`` as a tool error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import trio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.types import CallToolResult

from everos.client import api_key_headers
from everos.config import Config
from everos.mcp._render import error_result

__all__ = ["RemoteDispatch", "serve_stdio", "stdio_line_limit"]

log = logging.getLogger("everos.mcp")

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
                async with remote_client(self.url) as client:
                    return await client.call_tool(name, arguments)
            except Exception as exc:  # refused, reset, HTTP or protocol error: the answer says which
                owner = f" (the root is owned by pid {self.owner_pid})" if self.owner_pid else ""
                return error_result("SERVICE_UNAVAILABLE", f"cannot reach the everos server at {self.url}{owner}: "
                                    f"{_describe(exc)}", retry_after_s=5)
        return error_result("REQUEST_TIMEOUT", f"the everos server at {self.url} did not answer {name} "
                                               f"within {self.deadline_s:g} s")



@contextlib.asynccontextmanager
async def remote_client(url: str, api_key: str | None = None) -> AsyncIterator[Client]:
    """An MCP client of the streamable-HTTP server at ``url``, sending ``api_key`` (default
    ``$EVEROS_API_KEY``) as its bearer key when there is one."""
    headers = api_key_headers(api_key)
    if not headers:
        async with Client(url) as client:
            yield client
        return
    async with create_mcp_http_client(headers=headers) as http, \
            Client(streamable_http_client(url, http_client=http)) as client:
        yield client


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return f"{exc.__class__.__name__}: {exc}"[:300]
