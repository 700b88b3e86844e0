"""Which services a server runs, and the routes that serve them, built from its configuration.

The root nursery (``everos.server``) knows services only through the ``Service`` protocol; this is
the one place that names them and pairs each with its blueprints (the web layer imports services,
never the other way round).
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint

from everos.config import LoadedConfig
from everos.knowledge._extractor import BuiltinExtractor, Extractor
from everos.knowledge._llm_extractor import LLMExtractor
from everos.knowledge._service import KnowledgeService
from everos.mcp import MCPService
from everos.providers import Providers
from everos.server import Service
from everos.web._knowledge import knowledge_blueprints

__all__ = ["ProvidersService", "build_services"]


class ProvidersService:
    """Owns the model clients (LLM, embedder, reranker) of the server and reports them in /health.

    The clients are built when the server opens (no connection is made until first use) and
    closed last, after every service that uses them.
    """

    def __init__(self) -> None:
        self.providers: Providers | None = None

    async def open(self, runtime: Any) -> None:
        self.providers = Providers.from_config(runtime.config)
        runtime.board.blocks["providers"] = self.providers.snapshot

    def start_workers(self, supervisor: Any) -> None:
        pass

    async def aclose(self) -> None:
        if self.providers is not None:
            await self.providers.aclose()


def build_services(loaded: LoadedConfig, *, mcp_transport: str = "http") -> tuple[list[Service], list[Blueprint]]:
    """The services of a full server for ``loaded``'s root, in start order, and their routes.

    ``mcp_transport`` is ``"http"`` (the MCP tools mounted at ``/mcp``) or ``"stdio"`` (``everos mcp``
    serving this process's stdin/stdout).
    """
    providers = ProvidersService()

    def make_extractor(runtime: Any) -> Extractor:
        """The LLM extractor when ``[llm] provider`` names an endpoint, else the built-in one."""
        chat = providers.providers.llm
        if chat is None:
            return BuiltinExtractor(runtime.limiters.cpu)
        return LLMExtractor(chat, runtime.config.llm, runtime.limiters.cpu)

    knowledge = KnowledgeService(extractor_factory=make_extractor)
    mcp = MCPService(knowledge, search=None, transport=mcp_transport)
    return [providers, knowledge, mcp], knowledge_blueprints(knowledge)
