"""A server with the knowledge service and the MCP adapter, and helpers to call its tools."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from jsonschema import Draft202012Validator
from mcp import Client

from everos.ingest import IngestService
from everos.mcp import MCPService
from everos.runtime import Runtime
from everos.search._service import _Candidate, _hit
from ..conftest import RunningServer, ingest_services, loaded_config, running_server
from ..knowledge.test_service import StalledExtractor

__all__ = ["FakeSearch", "McpServer", "StalledExtractor", "call", "mcp_server", "schema_problems", "search_hit",
           "tool_schemas"]


def search_hit(topic_id: str, summary: str = "", *, score: float = 0.9, title: str = "Trio") -> dict[str, Any]:
    """One hit in the search service's own shape (its ``_hit``), for a keyword search."""
    doc_id = topic_id.rsplit("_", 1)[0]
    details = {"doc_id": doc_id, "category_id": "Technology", "topic_name": "Nurseries",
               "topic_path": "Trio > Nurseries", "depth": 1, "summary": summary,
               "document": {"title": title, "summary": ""}}
    return _hit(_Candidate({"id": topic_id, "doc_id": doc_id}, score, "keyword"), "keyword", details, False, [])


class FakeSearch:
    """A search callable with the search service's signature; records its calls."""

    def __init__(self, hits: list[dict[str, Any]] | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.hits = hits if hits is not None else []

    async def __call__(self, *, query: str, method: str, top_k: int, score_threshold: float | None,
                       include_content: bool, app_id: str, project_id: str) -> dict[str, Any]:
        self.calls.append({"query": query, "method": method, "top_k": top_k, "score_threshold": score_threshold,
                           "include_content": include_content, "app_id": app_id, "project_id": project_id})
        await trio.lowlevel.checkpoint()
        return {"hits": self.hits[:top_k], "total": len(self.hits), "took_ms": 1.0}


@dataclass
class McpServer:
    http: RunningServer
    knowledge: IngestService
    mcp: MCPService

    @property
    def url(self) -> str:
        return self.http.base_url + "/mcp"


@contextlib.asynccontextmanager
async def mcp_server(root: Path, *, search: Any = None, extractor: Any = None,
                     **overrides: Any) -> AsyncIterator[McpServer]:
    """The real server with the knowledge service and the MCP adapter (HTTP mount) on loopback."""
    services = ingest_services((lambda runtime: extractor) if extractor else None, mcp=True, search=search)
    overrides.setdefault("api__graceful_timeout_seconds", 0.5)  # an open MCP session holds the drain
    async with running_server(root, services=services, **overrides) as http:
        yield McpServer(http=http, knowledge=http.services.ingest, mcp=http.services.mcp)


@pytest.fixture
def runtime(root: Path) -> Runtime:
    """A runtime for ``root``'s config, as a server would open its services with."""
    return Runtime.for_config(loaded_config(root))


@pytest.fixture
async def knowledge(runtime: Runtime) -> AsyncIterator[IngestService]:
    """The ingest service, open over ``runtime``'s root (no workers)."""
    service = await IngestService.open(runtime)
    try:
        yield service
    finally:
        await service.aclose()


async def call(client: Client, name: str, **arguments: Any):
    """Call a tool; return ``(structured, text, is_error)``."""
    result = await client.call_tool(name, arguments)
    return result.structured_content, result.content[0].text, result.is_error


async def tool_schemas(client: Client) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Each tool's published ``(input schema, output schema)``."""
    return {tool.name: (tool.input_schema, tool.output_schema) for tool in (await client.list_tools()).tools}


def schema_problems(schema: dict[str, Any], instance: Any) -> list[str]:
    """Why ``instance`` does not match the JSON schema ``schema`` (empty when it does)."""
    return [error.message for error in Draft202012Validator(schema).iter_errors(instance)]
