"""Which services a server runs, and the routes that serve them, built from its configuration.

The root nursery (``everos.server``) knows services only through the ``Service`` protocol; this is
the one place that names them, wires them to each other and pairs them with their blueprints (the
web layer imports services, never the other way round). Start order::

    providers  -> model clients (LLM, embedder, reranker), reported in /health
    knowledge  -> durable ingest; tells the cascade which document directories changed
    index      -> the LanceDB store, its single writer (a worker) and the search service
    cascade    -> leased index queue, watcher, scanner, index workers (write through the writer)
    mcp        -> the knowledge tools over MCP

Routes: the knowledge and task routes (``web/_knowledge.py``) and the cascade's admin routes
(``web/_cascade.py``), each under ``/api/v1`` and ``/api/v2``.
"""

from __future__ import annotations

from typing import Any

import trio
from quart import Blueprint

from everos.cascade import CascadeService
from everos.config import LoadedConfig
from everos.knowledge._extractor import BuiltinExtractor, Extractor
from everos.knowledge._llm_extractor import LLMExtractor
from everos.knowledge._service import KnowledgeService
from everos.mcp import MCPService
from everos.providers import Providers
from everos.search import SearchService, search_tokens, split_facts, warm_up
from everos.server import Service
from everos.store.index import IndexStore, IndexWriter
from everos.web._cascade import cascade_blueprints
from everos.web._knowledge import knowledge_blueprints

__all__ = ["IndexService", "ProvidersService", "build_services"]

LANCEDB_RELPATH = (".index", "lancedb")


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


class IndexService:
    """The search index: its LanceDB store, the one writer task, and the search service over it.

    ``reset`` drops both tables at open (``everos cascade rebuild``).
    """

    def __init__(self, providers: ProvidersService, knowledge: KnowledgeService, *, reset: bool = False) -> None:
        self._providers = providers
        self._knowledge = knowledge
        self._reset = reset
        self.store: IndexStore | None = None
        self.writer: IndexWriter | None = None
        self.searcher: SearchService | None = None

    async def open(self, runtime: Any) -> None:
        config = runtime.config
        path = runtime.loaded.root.joinpath(*LANCEDB_RELPATH)
        self.store = await IndexStore.open(path, dim=config.embedding.dim, settings=config.lancedb,
                                           limiter=runtime.limiters.lancedb, reset=self._reset)
        self.writer = IndexWriter(self.store, config.cascade)
        # jieba's dictionary takes about a second to load: now, in a thread, not on a first search.
        await trio.to_thread.run_sync(warm_up, limiter=runtime.limiters.cpu)
        providers = self._providers.providers
        self.searcher = SearchService(
            self.store, providers.embedder, providers.reranker, config.knowledge_search, runtime.limiters.cpu,
            document_lookup=self._knowledge.document_briefs, topic_content_lookup=self._knowledge.topic_contents)
        runtime.board.blocks["index"] = self.writer.statistics

    def start_workers(self, supervisor: Any) -> None:
        supervisor.start("index-writer", self.writer.run)

    async def aclose(self) -> None:
        if self.store is not None:
            await self.store.aclose()

    async def search(self, **arguments: Any) -> dict[str, Any]:
        """EverOS's knowledge search (see :meth:`SearchService.search`)."""
        return await self.searcher.search(**arguments)


def build_cascade(providers: ProvidersService, index: IndexService, knowledge: KnowledgeService) -> CascadeService:
    return CascadeService(
        document_lock=knowledge.document_locked,
        sink=lambda runtime: index.writer,
        embedder=lambda runtime: providers.providers.embedder,
        chat=lambda runtime: providers.providers.llm,
        search_tokens=search_tokens,
        split_facts=split_facts,
    )


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
        return LLMExtractor(chat, runtime.config.llm, runtime.limiters.cpu,
                            job_timeout_seconds=runtime.config.ingest.job_timeout_seconds)

    knowledge = KnowledgeService(extractor_factory=make_extractor)
    index = IndexService(providers, knowledge)
    cascade = build_cascade(providers, index, knowledge)
    knowledge.index_notifier = cascade.enqueue_document
    knowledge.index_state_lookup = cascade.index_states
    mcp = MCPService(knowledge, search=index.search, transport=mcp_transport)
    blueprints = knowledge_blueprints(knowledge, search=index) + cascade_blueprints(cascade)
    return [providers, knowledge, index, cascade, mcp], blueprints
