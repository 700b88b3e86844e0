"""API keys on the /mcp mount (issue #16 item 1): the HTTP check, and each tool's scope."""

from __future__ import annotations

from pathlib import Path

from everos.auth import create_key
from everos.mcp import TOOL_NAMES
from everos.mcp._catalog import TOOL_SCOPES
from everos.mcp._stdio import remote_client

from .conftest import call, mcp_server
from .test_http import INITIALIZE, MCP_HEADERS


def test_every_tool_has_a_scope() -> None:
    """issue #16 item 1: add and delete need write, every other tool read."""
    assert set(TOOL_SCOPES) == set(TOOL_NAMES)
    assert {name for name, scope in TOOL_SCOPES.items() if scope == "write"} == {
        "knowledge_add_document", "knowledge_delete_document"}


async def test_mcp_needs_a_key_and_checks_each_tool_against_its_scope(root: Path) -> None:
    """issue #16 item 1: /mcp is 401 without a key; a read key may search/list but add answers
    FORBIDDEN (nothing stored); a write key may add: the key's scope reaches the tool handler."""
    read, _ = create_key(root, "read")
    write, _ = create_key(root, "write")
    async with mcp_server(root) as server:
        refused = await server.http.client.post("/mcp", json=INITIALIZE, headers=MCP_HEADERS)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "UNAUTHORIZED"
        assert refused.headers["www-authenticate"].startswith("Bearer")
        wrong = await server.http.client.post("/mcp", json=INITIALIZE,
                                              headers={**MCP_HEADERS, "Authorization": f"Bearer {read}0"})
        assert wrong.status_code == 401

        async with remote_client(server.url, read) as client:
            body, _, is_error = await call(client, "knowledge_list_documents")
            assert not is_error and body["total"] == 0
            body, text, is_error = await call(client, "knowledge_add_document", title="Nope", content="Refused.")
            assert is_error and body["error"]["code"] == "FORBIDDEN" and "write" in text
            body, _, is_error = await call(client, "knowledge_delete_document", doc_id="doc_0123456789abcdef")
            assert is_error and body["error"]["code"] == "FORBIDDEN"
            body, _, is_error = await call(client, "knowledge_list_documents")
            assert body["total"] == 0  # the refused add stored nothing

        async with remote_client(server.url, write) as client:
            body, _, is_error = await call(client, "knowledge_add_document", title="Allowed", content="Stored.")
            assert not is_error and body["done"] is True


async def test_the_stdio_proxy_sends_everos_api_key(root: Path, monkeypatch) -> None:
    """issue #16 item 1: `everos mcp` proxying to a keyed server sends $EVEROS_API_KEY."""
    from everos.mcp._stdio import RemoteDispatch

    key, _ = create_key(root, "read")
    async with mcp_server(root) as server:
        monkeypatch.setenv("EVEROS_API_KEY", key)
        answer = await RemoteDispatch(server.url, 10)("knowledge_list_documents", {})
        assert not answer.is_error and answer.structured_content["total"] == 0
        answer = await RemoteDispatch(server.url, 10)("knowledge_add_document", {"title": "T", "content": "c"})
        assert answer.is_error and answer.structured_content["error"]["code"] == "FORBIDDEN"
