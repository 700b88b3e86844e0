"""One attempt at one document directory: markdown in, SQLite rows and index rows out.

::

    written by ingest or PATCH, and the   the rows its writer saved are the document: no read,
    files still carry its receipt?        no parse, no row write (the document lock is held
                                          while the fingerprint and the rows are read)
    else read the files (files thread)  ── gone? ── its doc lives in another directory: forget this one
                                           └── else: delete it from the index and from SQLite
    record the fingerprint seen        (so the scanner knows what this attempt saw)
    parse (cpu thread)                 same signature as last indexed: nothing else to do
    write the rows (the projection)    (list/get/topic see hand edits)
    topic digests == the index's       the index is current: done
    facts + tokens + vectors           only for topics whose digest has no cached derivation
                                       (the vectors of the others read back from the index);
                                       fresh facts cached at once; vectors in chunks
    replace_document                   the full set, so removed topics and facts go too
    record indexed + the topic cache   (which embedder made the vectors now in the index)

Both "nothing to do" shortcuts are skipped for a document whose vectors are pending.

Embedding degrades instead of holding the row: the embedding phase has its own deadline
(``embed_timeout_seconds``, shorter than the row's), and when it passes, or the embedder fails (an
open circuit, attempts exhausted), the topics still without vectors go to the index without them
(a null vector: keyword search finds them, vector recall skips them) and the document is
``indexed`` with ``vectors_pending`` saying why. Their facts are cached with the
:data:`KEYWORD_ONLY` embedder, so the attempt that fills the vectors later embeds only what is
missing (the vectors that did reach the index are read back from it) and asks nobody for facts
again. The built-in embedder never stands in for a configured
one: its vectors live in another space, and vector search would rank them as noise.

A slow embedder (``defers_vectors``: the built-in e5, about half a second per topic on a core)
is not waited for at all: an attempt at a document whose vectors are not pending writes its rows
for keyword search with :data:`DEFERRED` as the reason, and the index worker queues the document
again at once, behind the documents already waiting for their keyword index; that attempt makes
the vectors. An upload is searchable by keyword as fast as with no embedder.

Every step is idempotent (G8): running an attempt twice, or after a crash anywhere in it, leaves
the same rows, and a document already in the index is not embedded or written again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from everos.cascade import _state as state
from everos.cascade._facts import FactExtractor
from everos.cascade._rows import (
    GONE,
    DocumentLocation,
    ParsedDocument,
    chunks,
    document_rows,
    embedder_identity,
    embedding_text,
    locate_document,
    parse_document,
    topic_content_sha256,
    topic_tokens,
)
from everos.cascade._snapshot import find_document_dirs, read_document_dir, sha256_file, stat_document_dir
from everos.ingest import _repository as repo
from everos.knowledge._fingerprint import WrittenFiles
from everos.knowledge._models import KnowledgeTopic
from everos.knowledge._tokens import joined_tokens
from everos.providers import Budget, EmbeddingDimensionError, ProviderError, ProviderResponseError
from everos.store import Database
from everos.store._index_rows import FactRow, IndexSink, TopicRow

__all__ = ["DEFERRED", "EMBED_CHUNK_TEXTS", "KEYWORD_ONLY", "DocumentIndexer", "IndexOutcome", "IndexerParts", "embedder_identity"]


SearchTokens = Callable[[str], list[str]]

# Texts per embedding call of one attempt; each chunk's vectors are cached before the next.
EMBED_CHUNK_TEXTS = 256
KEYWORD_ONLY = state.KEYWORD_ONLY
"""The embedder of a cached topic whose facts are known but whose vectors are not in the index."""
DEFERRED = "queued for the embedder: keyword search finds the document meanwhile"
"""Why a document's vectors are pending when a slow embedder makes them in a later attempt."""


@dataclass(frozen=True)
class IndexOutcome:
    """What an attempt did: ``action`` is ``indexed``, ``unchanged`` (the index was current),
    ``deleted`` or ``moved`` (the directory is gone but its document lives in another one).
    ``embedded`` counts the texts sent to the embedder; ``vectors_pending`` says why some topics
    went to the index without vectors (None when none did)."""

    doc_dir: str
    doc_id: str
    action: str
    topics: int = 0
    facts: int = 0
    embedded: int = 0
    vectors_pending: str | None = None

    def as_result(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

DocumentLock = Callable[[str], AbstractAsyncContextManager[None]]
"""``async with document_lock(doc_id):`` serialises a cascade write with ingest, PATCH and DELETE."""


@contextlib.asynccontextmanager
async def no_document_lock(doc_id: str) -> AsyncIterator[None]:
    """The lock of a cascade that runs alone (the CLI): nothing else changes documents."""
    yield


@dataclass(frozen=True)
class IndexerParts:
    """What indexing a document uses: the ``root`` and its ``db`` (knowledge and cascade tables),
    the ``sink`` (the search index), the ``embedder`` (``dim`` and ``await embed(texts,
    budget=...)``, background budget here), the ``facts`` extractor, ``search_tokens(text) ->
    list[str]`` (blocking, run in a cpu thread), the files and cpu limiters, the ``clock``
    (seconds since the epoch), the ``document_lock`` shared with ingest, PATCH and DELETE, and
    ``embed_timeout_seconds``, the bound of one attempt's embedding phase (None: none of its own),
    and ``vector_pass_seconds``, its bound when only vectors are left to make (an unchanged
    document, searchable by keyword already; None: ``embed_timeout_seconds``). With
    ``cpu_workers`` (a :class:`~everos.workers.CpuWorkers`) tokenizing runs in a worker process,
    under ``cpu_deadline_seconds`` and ``cpu_memory_mb`` (jieba holds the GIL for half a second
    on a Chinese document); else in a cpu thread."""

    root: Path
    db: Database
    sink: IndexSink
    embedder: Any
    facts: FactExtractor
    search_tokens: SearchTokens
    files_limiter: trio.CapacityLimiter
    cpu_limiter: trio.CapacityLimiter
    clock: Callable[[], float] = time.time
    document_lock: DocumentLock = no_document_lock
    embed_timeout_seconds: float | None = None
    vector_pass_seconds: float | None = None
    cpu_workers: Any = None
    cpu_deadline_seconds: float = 60.0
    cpu_memory_mb: int = 2048


class DocumentIndexer:
    """Indexes document directories under ``parts.root``; see the module docstring."""

    def __init__(self, parts: IndexerParts) -> None:
        self.root = parts.root
        self._db = parts.db
        self._embed_timeout_s = math.inf if parts.embed_timeout_seconds is None else parts.embed_timeout_seconds
        self._vector_pass_s = self._embed_timeout_s if parts.vector_pass_seconds is None else parts.vector_pass_seconds
        self._document_lock = parts.document_lock
        self._sink = parts.sink
        self._embedder = parts.embedder
        self._embedder_id = embedder_identity(parts.embedder)
        # A neural model costs as much per fact as per topic: facts are then ranked by their words.
        self._embeds_facts = getattr(parts.embedder, "embeds_facts", True)
        self._defers = getattr(parts.embedder, "defers_vectors", False)
        # Texts per embed call: what a phase cut at its deadline loses at most.
        self._chunk_texts = min(EMBED_CHUNK_TEXTS, getattr(parts.embedder, "texts_per_call", EMBED_CHUNK_TEXTS))
        self._facts = parts.facts
        self._search_tokens = parts.search_tokens
        self._files_limiter = parts.files_limiter
        self._cpu_limiter = parts.cpu_limiter
        self._parts = parts
        self._clock = parts.clock

    async def _files(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._files_limiter)

    async def _cpu(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._cpu_limiter)

    async def index(self, doc_dir: str, written: WrittenFiles | None = None, *,
                    handed_off: Callable[[], object] = lambda: None) -> IndexOutcome:
        """Bring the index and the SQLite rows in line with ``root/doc_dir``. ``written`` is the
        receipt its writer (ingest, PATCH) queued it with: while the files carry it, the rows
        that writer saved are the document, and the files are neither read nor parsed. A
        checkpoint; runs until done (the caller bounds it). ``handed_off()`` is called when
        what is left is the index writer's commit and the bookkeeping after it, so the caller
        can start on the next document meanwhile.

        Raises:
            InvalidInput: the path or a file is not a valid document (retrying will not help).
            ProviderError, StoreBusy, ...: a dependency failed (worth retrying).

        Cancellation handling: whatever was committed stays committed and is consistent; the
        next attempt picks up from the files again.
        """
        location = locate_document(doc_dir)
        files = None
        parsed = None if written is None else await self._saved_by_writer(location, written)
        if parsed is None:
            files = await self._files(read_document_dir, self.root, doc_dir)
            if files is None:
                return await self._gone(location, handed_off)
        fingerprint = written.fingerprint if files is None else files.fingerprint
        now = self._clock()
        last_signature, vectors_pending = await self._db.write(lambda conn: (
            state.begin_attempt(conn, doc_dir, location.doc_id, fingerprint, now),
            state.pending_vectors(conn, doc_dir)))
        if files is not None:
            parsed = await self._cpu(parse_document, files)
        if vectors_pending is None and last_signature == parsed.signature:
            await self._db.write(state.finish_indexed, doc_dir, parsed.signature, self._clock())
            return IndexOutcome(doc_dir, parsed.doc_id, "unchanged", len(parsed.indexed_topics))
        if files is not None and not await self._save_rows(parsed):
            return await self._gone(location, handed_off)  # moved or deleted while it was read
        digests = {t.topic_id: topic_content_sha256(t, parsed.topic_paths[t.topic_index])
                   for t in parsed.indexed_topics}
        if vectors_pending is None and await self._sink.topic_hashes(parsed.doc_id) == digests:
            await self._db.write(state.finish_indexed, doc_dir, parsed.signature, self._clock())
            return IndexOutcome(doc_dir, parsed.doc_id, "unchanged", len(digests))
        # The extractor's facts hold for the topics it wrote: only while its receipt does.
        given = written.facts_of() if written is not None and files is None else {}
        # A slow embedder (the built-in e5) makes vectors in a second attempt, queued behind the
        # documents waiting for their keyword index: this one writes the rows without them.
        defer = self._defers and vectors_pending is None
        # Only vectors left to make: nobody waits for this document's keyword rows, so the
        # embedder may have most of the row's deadline (a long document costs e5 minutes).
        vectors_only = vectors_pending is not None and last_signature == parsed.signature
        topics, facts, derived, embedded, missing = await self._derive(
            parsed, digests, given, defer=defer, embed_s=self._vector_pass_s if vectors_only else self._embed_timeout_s)
        handed_off()
        await self._sink.replace_document(parsed.doc_id, topics, facts)

        def record(conn) -> None:
            # Only now that the index holds them may an entry say whose vectors these are.
            state.store_cache(conn, parsed.doc_id, derived)
            state.finish_indexed(conn, doc_dir, parsed.signature, self._clock(), vectors_pending=missing)
            state.prune_cache(conn, parsed.doc_id, digests)

        await self._db.write(record)
        return IndexOutcome(doc_dir, parsed.doc_id, "indexed", len(topics), len(facts), embedded, missing)

    async def _saved_by_writer(self, location: DocumentLocation, written: WrittenFiles) -> ParsedDocument | None:
        """The document as the rows its writer saved, when the directory's files still carry the
        writer's receipt and the rows are this directory's; None otherwise (read the files).
        Under the document lock, so the files and the rows are looked at between two writes."""
        async with self._document_lock(location.doc_id):
            stat = await self._files(stat_document_dir, self.root, location.doc_dir)
            if stat is None or stat.fingerprint != written.fingerprint:
                return None
            rows = await self._db.read(repo.load_rows, location.doc_id)
        if rows is None or rows.doc_dir != location.doc_dir:
            return None
        return ParsedDocument(location, rows, written.signature)

    async def _gone(self, location: DocumentLocation, handed_off: Callable[[], object]) -> IndexOutcome:
        doc_dir, doc_id = location.doc_dir, location.doc_id
        await self._db.write(state.begin_attempt, doc_dir, doc_id, GONE, self._clock())
        elsewhere = [d for d in await self._files(find_document_dirs, self.root, location) if d != doc_dir]
        if elsewhere:
            # Moved (a PATCH, or by hand): the directory it lives in now has its own row.
            await self._db.write(state.forget_dir, doc_dir)
            return IndexOutcome(doc_dir, doc_id, "moved")
        handed_off()
        removed = await self._sink.delete_document(doc_id)

        def forget(conn) -> None:
            repo.delete_document(conn, doc_id)
            state.forget_document(conn, doc_id)

        await self._db.write(forget)
        return IndexOutcome(doc_dir, doc_id, "deleted", removed)

    async def _save_rows(self, parsed: ParsedDocument) -> bool:
        """Write the rows of the markdown (its projection), keeping what only ingest knows (the
        upload's digest, used for content dedupe; the extractor). False, writing nothing, when
        the document directory is gone by now: ingest, PATCH and DELETE change a document under
        its lock, which this takes too, so rows read from an old place never overwrite the new
        place's."""
        existing = await self._db.read(repo.get_document, parsed.doc_id)
        content_sha256 = existing.content_sha256 if existing is not None else None
        original = parsed.rows.original_path
        if content_sha256 is None and original is not None:
            content_sha256 = await self._files(sha256_file, self.root / original)
        rows = dataclasses.replace(parsed.rows, content_sha256=content_sha256)
        async with self._document_lock(parsed.doc_id):
            if not await self._files(lambda: (self.root / parsed.md_path).is_file()):
                return False
            await self._db.write(repo.save_rows, rows, self._clock())
        return True

    async def _derive(
        self, parsed: ParsedDocument, digests: dict[str, str], given: dict[str, tuple[str, ...]], *,
        defer: bool = False, embed_s: float,
    ) -> tuple[list[TopicRow], list[FactRow], list[state.CachedTopic], int, str | None]:
        """Rows for every topic, the cache entries made now (to record once the index holds them),
        the texts embedded, and why vectors are missing (None if none are): cached facts where the
        digest matches, the index's vectors where the embedder matches too
        (:meth:`_reusable_vectors`), fresh ones for the rest (the extractor's facts in ``given``
        (the LLM's, by topic id), else the fact extractor's, cached at once as keyword-only
        entries; then embeddings in chunks). Topics left without vectors by :meth:`_embed_stale`
        (all of them with ``defer``: the reason is :data:`DEFERRED`) get empty vectors (keyword
        only)."""
        cache = await self._db.read(state.load_cache, parsed.doc_id)
        usable = {
            topic_id: cached for topic_id, cached in cache.items()
            if cached.content_sha256 == digests.get(topic_id)
            and (cached.facts_source == "llm" or self._facts.source == "splitter")
        }
        derived = await self._reusable_vectors(parsed.doc_id, usable)
        stale = [t for t in parsed.indexed_topics if t.topic_id not in derived]
        facts_of = {tid: (list(c.facts), c.facts_source) for tid, c in usable.items()}
        fresh = [t for t in stale if t.topic_id not in usable]
        facts_of |= {t.topic_id: (list(given[t.topic_id]), "llm") for t in fresh if t.topic_id in given}
        facts_of |= await self._facts.extract([t for t in fresh if t.topic_id not in given])
        if fresh:  # facts a model may have written: kept even if this attempt goes no further
            await self._db.write(state.store_cache, parsed.doc_id,
                                 self._cache_entries(fresh, facts_of, digests, None))
        tokens = await topic_tokens(parsed.indexed_topics, facts_of, self._tokenize)
        made, embedded, missing = await self._embed_stale(stale, facts_of, digests, defer=defer, embed_s=embed_s)
        derived.update((entry.topic_id, entry) for entry in made)
        topic_rows, all_facts = await self._cpu(document_rows, parsed, derived, tokens, digests, self._clock())
        return topic_rows, all_facts, made, embedded, missing

    async def _reusable_vectors(
        self, doc_id: str, usable: dict[str, state.CachedTopic]
    ) -> dict[str, state.CachedTopic]:
        """The entries of ``usable`` this embedder made, with the vectors the index holds for
        them: only where the index's row has the same content digest and every vector the entry
        promises (one per fact, when facts are embedded). Reads the index only when there is
        something to reuse (a new document's first attempt, or one whose vectors are all
        pending, does not)."""
        mine = {tid: c for tid, c in usable.items() if c.embedder == self._embedder_id}
        if not mine:
            return {}
        indexed = await self._sink.indexed_vectors(doc_id)
        reused = {}
        for topic_id, cached in mine.items():
            found = indexed.get(topic_id)
            if (found is None or found.content_sha256 != cached.content_sha256 or not found.vector
                    or len(found.fact_vectors) != len(cached.facts)
                    or (self._embeds_facts and not all(found.fact_vectors))):
                continue
            fact_vectors = found.fact_vectors if self._embeds_facts else tuple(() for _ in cached.facts)
            reused[topic_id] = dataclasses.replace(cached, vector=found.vector, fact_vectors=fact_vectors)
        return reused

    async def _embed_stale(
        self, stale: Sequence[KnowledgeTopic], facts_of: dict[str, tuple[list[str], str]],
        digests: dict[str, str], *, defer: bool = False, embed_s: float,
    ) -> tuple[list[state.CachedTopic], int, str | None]:
        """Embed ``stale`` topics and their facts in chunks within ``embed_s`` seconds.
        Returns their entries, the texts embedded and why vectors are missing: when the phase's
        deadline passes or the embedder fails, the rest are entries without vectors
        (:data:`KEYWORD_ONLY`) and the reason is returned. What was embedded before that goes to
        the index with this attempt, so the attempt that fills the rest embeds only those.

        Raises:
            EmbeddingDimensionError: the embedder answers vectors of another width (a setting
                to fix, not an outage to wait out).
        """
        deadline = trio.current_time() + embed_s
        embedded, missing = 0, DEFERRED if defer and stale else None
        facts_too = self._embeds_facts
        entries: list[state.CachedTopic] = []
        for chunk in chunks(stale, lambda t: 1 + facts_too * len(facts_of[t.topic_id][0]), self._chunk_texts):
            texts = [embedding_text(t) for t in chunk]
            if facts_too:
                texts += [f for t in chunk for f in facts_of[t.topic_id][0]]
            vectors: list[list[float]] | None = None
            if missing is None:
                with trio.move_on_at(deadline):
                    try:
                        vectors = await self._embed(texts)
                    except EmbeddingDimensionError:
                        raise
                    except ProviderError as exc:
                        missing = f"the embedder failed: {exc.message}"
                if vectors is None and missing is None:
                    missing = f"the embedder did not answer within {embed_s:g} s"
            embedded += len(texts) if vectors is not None else 0
            entries += self._cache_entries(chunk, facts_of, digests, vectors)
        return entries, embedded, missing

    def _cache_entries(
        self, chunk: Sequence[KnowledgeTopic], facts_of: dict[str, tuple[list[str], str]],
        digests: dict[str, str], vectors: list[list[float]] | None,
    ) -> list[state.CachedTopic]:
        """The cache entries of one chunk: with its vectors (topics first, then their facts, in
        order; facts without vectors when the embedder does not embed facts), or, with ``vectors``
        None, keyword-only entries that keep the facts."""
        now = self._clock()
        entries = []
        position = len(chunk)
        for index, topic in enumerate(chunk):
            facts, source = facts_of[topic.topic_id]
            if vectors is None:
                embedder, vector, fact_vectors = KEYWORD_ONLY, (), tuple(() for _ in facts)
            else:
                embedder, vector = self._embedder_id, tuple(vectors[index])
                if self._embeds_facts:
                    fact_vectors = tuple(tuple(v) for v in vectors[position:position + len(facts)])
                else:
                    fact_vectors = tuple(() for _ in facts)
            entries.append(state.CachedTopic(
                topic_id=topic.topic_id, content_sha256=digests[topic.topic_id], embedder=embedder,
                facts_source=source, facts=tuple(facts), vector=vector, fact_vectors=fact_vectors, created_at=now))
            position += len(facts)
        return entries

    async def _tokenize(self, texts: list[str]) -> list[str]:
        """:func:`joined_tokens` of ``texts`` in a worker process, or a cpu thread (see
        :class:`IndexerParts`).

        Raises:
            WorkerTimeout, WorkerCrashed, WorkerOutOfMemory: the worker process failed (the
                attempt fails; its row is retried, then dead with the reason).
        """
        parts = self._parts
        if parts.cpu_workers is None:
            return await self._cpu(joined_tokens, self._search_tokens, texts)
        return await parts.cpu_workers.run_cpu(
            joined_tokens, self._search_tokens, texts, deadline_s=parts.cpu_deadline_seconds,
            memory_mb=parts.cpu_memory_mb, task=f"tokenizing {len(texts)} texts")

    async def _embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = await self._embedder.embed(texts, budget=Budget.BACKGROUND)
        dim = self._embedder.dim
        if len(vectors) != len(texts) or any(len(v) != dim for v in vectors):
            raise ProviderResponseError(
                "embedder", f"expected {len(texts)} vectors of {dim} floats, got {len(vectors)}")
        return vectors
