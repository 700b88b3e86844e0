"""The MCP adapter: the knowledge tools over streamable HTTP (``/mcp``) and stdio.

One catalog (``build_server``) is answered either in this process (:class:`KnowledgeTools`, over
the ingest service; served by :class:`MCPService`) or by a running server (:class:`RemoteDispatch`,
the stdio proxy of ``everos mcp``, whose entry point is ``everos/mcp_cli.py``). Every tool call has
a deadline (guarantee G1).
"""

from everos._exports import claim_public_names
from everos.mcp._catalog import INSTRUCTIONS, TOOL_NAMES, build_server
from everos.mcp._http import MCPService, transport_security
from everos.mcp._render import BEGIN_DATA, END_DATA, fence
from everos.mcp._stdio import RemoteDispatch, serve_stdio
from everos.mcp._tools import KnowledgeTools, SearchFn

__all__ = [
    "BEGIN_DATA",
    "END_DATA",
    "INSTRUCTIONS",
    "KnowledgeTools",
    "MCPService",
    "RemoteDispatch",
    "SearchFn",
    "TOOL_NAMES",
    "build_server",
    "fence",
    "serve_stdio",
    "transport_security",
]

claim_public_names(globals())
