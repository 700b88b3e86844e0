"""The streamable-HTTP mount at /mcp on the real server, through the path router."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio
from mcp import Client

from everos.mcp import TOOL_NAMES, MCPService, transport_security

from ..conftest import knowledge_server
from .conftest import call, mcp_server

INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                         "clientInfo": {"name": "probe", "version": "0"}}}
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


async def test_http_mount_serves_every_tool_and_shares_state_with_the_rest_api(root: Path) -> None:
    async with mcp_server(root) as server:
        async with Client(server.url) as client:
            assert client.instructions and "STORED MEMORY" in client.instructions
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert sorted(tools) == sorted(TOOL_NAMES)
            body, _, is_error = await call(client, "knowledge_add_document", title="Over HTTP",
                                           content="Sent through the /mcp mount.")
            assert not is_error and body["done"] is True
        doc_id = body["document"]["doc_id"]
        answer = await server.http.client.get(f"/api/v1/knowledge/documents/{doc_id}")
        assert answer.status_code == 200 and answer.json()["data"]["title"] == "Over HTTP"


async def test_foreign_host_header_is_refused_on_a_loopback_bind(root: Path) -> None:
    """DNS-rebinding protection: a page on another origin cannot reach the tools through the browser."""
    async with mcp_server(root) as server:
        refused = await server.http.client.post("/mcp", json=INITIALIZE,
                                                headers={**MCP_HEADERS, "host": "evil.example:80"})
        assert refused.status_code == 421
        accepted = await server.http.client.post("/mcp", json=INITIALIZE, headers=MCP_HEADERS)
        assert accepted.status_code == 200


async def test_health_stays_outside_the_mount(root: Path) -> None:
    async with mcp_server(root) as server:
        health = (await server.http.client.get("/health")).json()
        assert health["workers"]["mcp-sessions"]["state"] == "running"


async def test_mount_answers_503_while_the_session_manager_is_not_running(knowledge, runtime) -> None:
    service = MCPService(knowledge, runtime)
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await service.mounts["/mcp"]({"type": "http", "path": "/mcp"}, None, send)
    assert sent[0]["status"] == 503 and b"SERVICE_UNAVAILABLE" in sent[1]["body"]


async def test_stdio_transport_mounts_nothing(knowledge, runtime) -> None:
    assert MCPService(knowledge, runtime, transport="stdio").mounts == {}


def test_transport_security_guards_loopback_binds_only() -> None:
    guarded = transport_security("127.0.0.2")
    assert guarded.enable_dns_rebinding_protection
    assert "127.0.0.2:*" in guarded.allowed_hosts and "localhost:*" in guarded.allowed_hosts
    assert transport_security("::1").allowed_hosts.count("[::1]:*") == 1
    assert transport_security("0.0.0.0") is None


async def test_a_client_disconnect_mid_call_leaves_the_server_serving(root: Path) -> None:
    """A client that goes away mid-session leaves no damage: the next client is served."""
    async with mcp_server(root) as server:
        async with httpx.AsyncClient(base_url=server.http.base_url, timeout=5) as raw:
            first = await raw.post("/mcp", json=INITIALIZE, headers=MCP_HEADERS)
            assert first.status_code == 200
        async with Client(server.url) as client:
            body, _, is_error = await call(client, "knowledge_status")
            assert not is_error and body["health"]["state"] == "ready"


async def test_session_manager_restarts_with_a_fresh_app(knowledge, runtime) -> None:
    """A supervised restart gets a new session manager (the SDK runs each one only once)."""
    service = MCPService(knowledge, runtime)
    apps = []
    for _ in range(2):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(service._run_sessions)
            while service._app is None:
                await trio.sleep(0.01)
            apps.append(service._app)
            nursery.cancel_scope.cancel()
        assert service._app is None
    assert apps[0] is not apps[1]


async def test_the_full_server_mounts_mcp(root: Path) -> None:
    """``everos server start`` (open_services) serves the tools at /mcp."""
    async with knowledge_server(root, api__graceful_timeout_seconds=0.5) as server:
        async with Client(server.base_url + "/mcp") as client:
            body, _, is_error = await call(client, "knowledge_status")
    assert not is_error and body["health"]["workers"]["mcp-sessions"]["state"] == "running"


async def test_search_tool_of_the_full_server_finds_an_indexed_document(root: Path) -> None:
    """The composed server wires knowledge_search to the real search service."""
    async with knowledge_server(root, api__graceful_timeout_seconds=0.5) as server:
        created = await server.client.post("/api/v1/knowledge/documents",
                                           files={"file": ("b.md", b"# Beekeeping\n\nBees make honey in hives.\n")},
                                           data={"title": "Bees"})
        doc_id = created.json()["data"]["doc_id"]
        with trio.fail_after(20):
            while (await server.client.get(f"/api/v1/knowledge/documents/{doc_id}")).json()["data"][
                    "index_status"] != "indexed":
                await trio.sleep(0.1)
        async with Client(f"{server.base_url}/mcp") as client:
            body, text, is_error = await call(client, "knowledge_search", query="honey hives", method="hybrid")
        assert not is_error, body
        assert body["hits"][0]["document"]["doc_id"] == doc_id
        assert "STORED MEMORY" in text
