"""Which services a process runs, how they are wired, and the routes that serve them.

The one place that names services. :func:`open_services` opens them in this order, each
constructed from the ones already open (constructor injection only)::

    providers  model clients (LLM, embedder, reranker)
    locks      the per-document locks, shared by ingest and the cascade
    cpu        the worker processes converting PDF, Office, HTML and EPUB uploads (G13)
    index      the LanceDB store and its single writer (a worker)
    cascade    leased index queue, watcher, scanner, index workers: writes through the index
               writer, under the document locks
    ingest     durable ingest: tells the cascade which document directories changed and asks it
               for index states; converts uploads in the cpu workers
    search     the search service over the index, with ingest's document lookups
    mcp        the knowledge tools over MCP (``/mcp``, or stdio for ``everos mcp``)

Workers start in the order ingest, index writer, cascade, mcp, and /health shows the blocks
"providers", "ingest" (the cpu workers inside it, as "conversion_workers"), "index",
"cascade" in that order. Closing runs in the reverse order of
opening, shielded and bounded by ``CLOSE_TIMEOUT_S``. ``everos server start``, ``everos mcp``
(stdio), ``everos ingest`` (a server of its own) and ``everos cascade sync|fix --apply|rebuild``
all open the services here; ``cascade status`` and ``cascade fix`` (listing) only read, through
:func:`open_cascade_reader`.

Routes: the knowledge and task routes (``web/_knowledge.py``) and the cascade's admin routes
(``web/_cascade.py``), each under ``/api/v1`` and ``/api/v2``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

import trio
from quart import Blueprint

from everos.cascade import CascadeService
from everos.ingest import DocumentLocks, IngestService, builtin_extractor
from everos.knowledge import Extractor, LLMExtractor, warm_up_converter
from everos.mcp import MCPService
from everos.providers import BuiltinEmbedder, E5Embedder, Providers
from everos.providers._e5_embedder import load_e5, warm_up_e5
from everos.runtime import CLOSE_TIMEOUT_S, Runtime, Service
from everos.search import SearchService, search_tokens, split_facts, warm_up
from everos.store._index_rows import FactRow, IndexedVectors, TopicRow
from everos.store.index import IndexStore, IndexWriter
from everos.supervisor import Supervisor
from everos.workers import CpuWorkers, open_cpu_workers
from everos.web._cascade import cascade_blueprints
from everos.web._knowledge import knowledge_blueprints

__all__ = ["IndexService", "Services", "open_cascade_reader", "open_services"]

LANCEDB_RELPATH = (".index", "lancedb")


class IndexService:
    """The search index: its LanceDB store and the one writer task (the only LanceDB writer)."""

    def __init__(self, store: IndexStore, writer: IndexWriter) -> None:
        self.store = store
        self.writer = writer

    @classmethod
    async def open(cls, runtime: Runtime, *, reset: bool = False) -> IndexService:
        """The index, open (``reset`` drops both tables first: ``everos cascade rebuild``). Close it
        with :meth:`aclose`."""
        config = runtime.config
        store = await IndexStore.open(runtime.root.joinpath(*LANCEDB_RELPATH), dim=config.embedding.dim,
                                      settings=config.lancedb, limiter=runtime.limiters.lancedb, reset=reset)
        return cls(store, IndexWriter(store, config.cascade))

    async def aclose(self) -> None:
        """Close the store. Idempotent."""
        await self.store.aclose()

    def start_workers(self, supervisor: Supervisor) -> None:
        supervisor.start("index-writer", self.writer.run)


@dataclass(frozen=True)
class Services:
    """The open services of one process, by name (see the module docstring), and their routes."""

    providers: Providers
    locks: DocumentLocks
    index: IndexService
    cascade: CascadeService
    ingest: IngestService
    search: SearchService
    mcp: MCPService | None
    blueprints: list[Blueprint]

    @property
    def services(self) -> list[Service]:
        """The services with workers, in the order their workers start."""
        return [service for service in (self.ingest, self.index, self.cascade, self.mcp) if service is not None]


def make_extractor(runtime: Runtime, providers: Providers, cpu_workers: CpuWorkers | None = None) -> Extractor:
    """The LLM extractor when ``[llm] provider`` names an endpoint, else the built-in one (which
    runs in ``cpu_workers`` when given, and is the LLM extractor's fallback)."""
    builtin = builtin_extractor(runtime, cpu_workers)
    if providers.llm is None:
        return builtin
    cascade = runtime.config.cascade
    return LLMExtractor(providers.llm, runtime.config.llm, runtime.limiters.cpu,
                        job_timeout_seconds=runtime.config.ingest.job_timeout_seconds,
                        facts_per_topic=cascade.facts_per_topic if cascade.llm_facts == "with-extraction" else 0,
                        fallback=builtin)


@contextlib.asynccontextmanager
async def open_services(runtime: Runtime, *, mcp_transport: Literal["http", "stdio"] | None = "http",
                        reset_index: bool = False, conversion: bool = True,
                        embedding_workers: bool = False) -> AsyncIterator[Services]:
    """``async with open_services(runtime) as services:`` every service of ``runtime``'s root,
    open, in the order of the module docstring; closed on exit in the reverse order, shielded and
    within ``CLOSE_TIMEOUT_S``. A checkpoint; the caller bounds the opening (the startup deadline).

    ``mcp_transport`` is ``"http"`` (the MCP tools mounted at ``/mcp``), ``"stdio"`` (``everos mcp``
    serving this process's stdin/stdout) or None (no MCP: the cascade commands). ``reset_index``
    drops the index tables at open (``everos cascade rebuild``). ``conversion=False`` starts no
    conversion worker processes, for a process that runs no ingest workers (the cascade commands):
    its ingest service then refuses converted formats (415). The built-in e5 embeds passages in
    ``[embedding] workers`` processes of their own when there are conversion workers; with
    ``embedding_workers`` (``everos cascade rebuild``) the built-in hashing embedder does too, and
    e5 without them: their CPU then leaves the process's GIL to the rest of the indexing.

    Raises:
        What opening a store raises (``StoreBusy``, ``sqlite3.Error``, ``OSError``); the services
        opened before it are closed again.
    """
    config, limiters = runtime.config, runtime.limiters
    stack = contextlib.AsyncExitStack()
    # One scope around opening, the yield and closing: closing shields it and gives it a deadline, so
    # the CPU worker pool (which holds a nursery) closes inside the scope it was opened in.
    with trio.CancelScope() as scope:
        try:
            providers = await stack.enter_async_context(Providers.from_config(config))
            e5 = isinstance(providers.embedder, E5Embedder)
            locks = DocumentLocks()
            # Opened here, outside the nursery of the workers that call it: at shutdown those are
            # cancelled first (their conversions killed), then closing waits for nothing.
            cpu = None if not conversion else await stack.enter_async_context(
                open_cpu_workers(workers=config.ingest.conversion_workers, init=warm_up_converter))
            builtin_embedder = e5 or isinstance(providers.embedder, BuiltinEmbedder)
            if (e5 and conversion) or (builtin_embedder and embedding_workers):
                # Processes of their own: an upload's conversion or extraction never waits behind
                # a batch of the index's passages (G4).
                embedding = await stack.enter_async_context(
                    open_cpu_workers(workers=config.embedding.workers, init=warm_up_e5 if e5 else None))
                providers.embedder.use_workers(embedding, memory_mb=config.ingest.conversion_memory_mb)
            index = await IndexService.open(runtime, reset=reset_index)
            stack.push_async_callback(index.aclose)
            cascade = CascadeService(sink=index.writer, embedder=providers.embedder, chat=providers.llm,
                                     search_tokens=search_tokens, split_facts=split_facts, document_lock=locks.hold,
                                     cpu_workers=cpu)
            stack.push_async_callback(cascade.aclose)  # idempotent: also closes a cascade half open
            await cascade.open(runtime)
            ingest = await IngestService.open(runtime, extractor=make_extractor(runtime, providers, cpu), locks=locks,
                                              index=cascade, cpu_workers=cpu)
            stack.push_async_callback(ingest.aclose)
            # jieba's dictionary takes about a second to load: now, in a thread, not on a first search.
            await trio.to_thread.run_sync(warm_up, limiter=limiters.cpu)
            if e5:  # the model that embeds queries in this process: loaded now, not on a first search
                await trio.to_thread.run_sync(load_e5, limiter=limiters.cpu)
            search = SearchService(index.store, providers.embedder, providers.reranker, config.knowledge_search,
                                   limiters.cpu, hit_lookup=ingest.hit_details)
            mcp = None if mcp_transport is None else MCPService(ingest, runtime, search=search.search,
                                                                transport=mcp_transport)
            blueprints = knowledge_blueprints(ingest, search=search) + cascade_blueprints(cascade)
            # /health shows the blocks in this order (the README's quick start shows it too).
            runtime.board.blocks.update(providers=providers.snapshot, ingest=ingest.status_block,
                                        index=index.writer.statistics, cascade=cascade.status_block)
            yield Services(providers=providers, locks=locks, index=index, cascade=cascade, ingest=ingest, search=search,
                           mcp=mcp, blueprints=blueprints)
        finally:
            scope.shield = True
            scope.deadline = trio.current_time() + CLOSE_TIMEOUT_S
            await stack.aclose()


class _NoIndex:
    """The index of a cascade that only reads: never written (writing is a bug, so it raises)."""

    async def replace_document(self, doc_id: str, topics: list[TopicRow], facts: list[FactRow]) -> None:
        raise RuntimeError("a cascade opened to read does not write the index")

    async def delete_document(self, doc_id: str) -> int:
        raise RuntimeError("a cascade opened to read does not write the index")

    async def topic_hashes(self, doc_id: str) -> dict[str, str]:
        raise RuntimeError("a cascade opened to read does not read the index")

    async def indexed_vectors(self, doc_id: str) -> dict[str, IndexedVectors]:
        raise RuntimeError("a cascade opened to read does not read the index")


@contextlib.asynccontextmanager
async def open_cascade_reader(runtime: Runtime) -> AsyncIterator[CascadeService]:
    """The cascade opened only to read its queue and state, next to a server if one runs: it
    recovers no rows and needs no index and no model (stand-ins that are never called)."""
    cascade = CascadeService(sink=_NoIndex(), embedder=BuiltinEmbedder(runtime.config.embedding.dim),
                             search_tokens=lambda text: [], split_facts=lambda text, n: [])
    try:
        await cascade.open(runtime, recover=False)
        yield cascade
    finally:
        with trio.CancelScope(shield=True):
            await cascade.aclose()
