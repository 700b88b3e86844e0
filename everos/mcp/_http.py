"""The MCP adapter as a part of the server: streamable HTTP at ``/mcp``, or stdio.

:class:`MCPService` follows the ``Service`` protocol of ``everos.runtime``. Over HTTP it offers
``mounts = {"/mcp": app}``, which ``serve()`` hands to the ``PathRouter`` (so MCP requests bypass
Quart and its request layer: each tool call carries its own deadline instead), and it runs the
SDK's session manager as a supervised worker in the root nursery (stack notes §5: never
``MCPServer.run()``, never ``app.nursery``). A crashed session manager is restarted with a fresh
app (``run()`` works once per manager); meanwhile ``/mcp`` answers 503. With
``transport="stdio"`` the same tools are served over this process's stdin/stdout instead, and
the server stops when stdin closes.

DNS-rebinding protection stays on while the server is bound to loopback: a request whose ``Host``
or ``Origin`` is not a loopback name gets 421/403 from the SDK. Bound beyond loopback (a choice
``serve()`` already warns about) the check is off, as the names clients will use are unknown.
"""

from __future__ import annotations

import logging
from typing import Any

import trio
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

from everos.ingest import IngestService
from everos.mcp._catalog import build_server
from everos.mcp._stdio import serve_stdio, stdio_line_limit
from everos.mcp._tools import KnowledgeTools, SearchFn
from everos.runtime import Runtime, is_loopback
from everos.supervisor import Supervisor
from everos.web._envelope import dumps, error_body, mint_request_id

__all__ = ["MCPService", "transport_security"]

log = logging.getLogger("everos.mcp")

MCP_PATH = "/mcp"
# Bounds of the session manager (G5b): sessions open at once, and how long an idle one is kept.
MAX_SESSIONS = 100
SESSION_IDLE_TIMEOUT_S = 1800.0
MIB = 1024 * 1024


class MCPService:
    """The knowledge tools over MCP, answered by the (open) ingest service ``knowledge``.
    ``transport`` is ``"http"`` (mounted at ``/mcp``) or ``"stdio"``.

    ``search`` is the search callable of ``knowledge_search`` (see ``SearchFn``); None answers
    ``SERVICE_UNAVAILABLE`` for that tool alone. Nothing to open or close: sessions end with the
    nursery.
    """

    def __init__(self, knowledge: IngestService, runtime: Runtime, *, search: SearchFn | None = None,
                 transport: str = "http") -> None:
        if transport not in ("http", "stdio"):
            raise ValueError(f"transport must be http or stdio, not {transport!r}")
        self.knowledge = knowledge
        self.runtime = runtime
        self.search = search
        self.transport = transport
        self.mounts: dict[str, Any] = {MCP_PATH: self._asgi} if transport == "http" else {}
        self.tools = KnowledgeTools(knowledge, runtime, search)
        self.server: MCPServer = build_server(self.tools.dispatch)
        self._app: Any = None

    def start_workers(self, supervisor: Supervisor) -> None:
        if self.transport == "http":
            supervisor.start("mcp-sessions", self._run_sessions)
        else:
            supervisor.start("mcp-stdio", self._run_stdio)

    async def _run_sessions(self) -> None:
        """Run the streamable-HTTP session manager until cancelled; its task group is a nursery
        inside this worker, so every session lives in the root nursery's tree."""
        config = self.runtime.config
        app = self.server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            host=config.api.host,
            transport_security=transport_security(config.api.host),
            # A JSON body escapes newlines and quotes: leave room for the largest accepted content.
            max_request_body_size=2 * config.knowledge.max_upload_bytes + MIB,
            max_sessions=MAX_SESSIONS,
            session_idle_timeout=SESSION_IDLE_TIMEOUT_S,
        )
        async with self.server.session_manager.run():
            self._app = app
            try:
                await trio.sleep_forever()
            finally:
                self._app = None

    async def _run_stdio(self) -> None:
        """Serve stdio until stdin closes, then stop the server (the client has gone)."""
        try:
            await serve_stdio(self.server, stdio_line_limit(self.runtime.config))
        finally:
            self.runtime.request_stop()

    async def _asgi(self, scope: dict, receive: Any, send: Any) -> None:
        app = self._app
        if app is not None:
            return await app(scope, receive, send)
        body = dumps(error_body(mint_request_id(), code="SERVICE_UNAVAILABLE", path=scope.get("path", MCP_PATH),
                                message="the MCP endpoint is starting or restarting; try again"))
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"application/json"), (b"retry-after", b"1")]})
        await send({"type": "http.response.body", "body": body})


def transport_security(host: str) -> TransportSecuritySettings | None:
    """DNS-rebinding protection for a loopback bind (loopback names, any port); None beyond it."""
    if not is_loopback(host):
        return None
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    bound = f"[{host.strip('[]')}]:*" if ":" in host else f"{host}:*"
    if bound not in hosts:
        hosts.append(bound)
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts,
                                     allowed_origins=[f"http://{name}" for name in hosts])
