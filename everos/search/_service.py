"""Knowledge search: keyword, vector or hybrid recall over the index, optional rerank, and the
EverOS response shape (reference §2.3, §6).

* ``keyword``: BM25 over the topic summary and content tokens (:meth:`IndexStore.keyword_topics`);
  no matching term, no hit.
* ``vector``: the query embedded on the interactive budget (``purpose="query"``), nearest topics
  by cosine; topics at or below the embedder's similarity floor are no hits.
* ``hybrid``: both, fused by weight (``keyword_weight``) or, with ``fusion = "rrf"``, by
  reciprocal rank (:func:`rrf`, ``k = rrf_k``). If the embedder fails, hybrid answers with the
  keyword hits alone, scored and sourced as keyword hits.

Scores are calibrated to [0, 1] the same way for every query (:mod:`everos.search._fusion`), so
``score_threshold`` keeps the hits that match well enough.

A configured reranker reorders the first ``rerank_n`` candidates by its own scores (hits past them
follow, scored no higher than the last reranked one); if it fails, the recall order stands.
``score_threshold`` then filters, hits whose document is gone are dropped, and ``top_k`` (at most
``top_k_cap``) are returned, each with its best atomic facts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Protocol

import trio

from everos.config import KnowledgeSearchSettings, parse_weight
from everos.errors import InvalidInput
from everos.providers import Embedder, ProviderError
from everos.search._fusion import keyword_score, rrf, vector_score, weighted
from everos.search._tokens import search_tokens
from everos.store.index import IndexStore

__all__ = ["METHODS", "DocumentLookup", "Reranker", "SearchService", "TopicContentLookup"]

log = logging.getLogger("everos.search")

METHODS: Final = ("keyword", "vector", "hybrid")
DEFAULT_SIMILARITY_RANGE: Final = (0.0, 1.0)
"""The cosine range of an embedder that names none: 0 unrelated, 1 the same."""
DEFAULT_KEYWORD_WEIGHT: Final = 0.5
"""The keyword weight of hybrid search with an embedder that names none."""

DocumentLookup = Callable[[Sequence[str]], Awaitable[dict[str, dict[str, Any]]]]
"""``doc_ids -> {doc_id: {"title": ..., "summary": ...}}`` for the documents that exist."""
TopicContentLookup = Callable[[Sequence[str]], Awaitable[dict[str, str]]]
"""``topic_ids -> {topic_id: content}`` (EverOS keeps topic content in SQLite)."""


class Reranker(Protocol):
    async def rerank(self, query: str, documents: Sequence[str], *, budget: str) -> list[tuple[int, float]]:
        """``(index into documents, relevance)`` best first."""
        ...


class _Candidate:
    __slots__ = ("row", "score", "source")

    def __init__(self, row: dict[str, Any], score: float, source: str | None) -> None:
        self.row = row
        self.score = score
        self.source = source


class SearchService:
    """Answers knowledge searches within one scope; stateless between calls.

    ``cpu_limiter`` bounds the tokenizer threads. ``document_lookup``, when given, supplies each
    hit's document title and summary, and hits of documents it does not return are dropped (the
    document was deleted and the index has not caught up). ``topic_content_lookup``, when given,
    supplies topic content for ``include_content`` and for the reranker (which otherwise reads the
    summary).
    """

    def __init__(
        self,
        index: IndexStore,
        embedder: Embedder,
        reranker: Reranker | None,
        settings: KnowledgeSearchSettings,
        cpu_limiter: trio.CapacityLimiter,
        *,
        document_lookup: DocumentLookup | None = None,
        topic_content_lookup: TopicContentLookup | None = None,
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.reranker = reranker
        self.settings = settings
        self._cpu_limiter = cpu_limiter
        self._document_lookup = document_lookup
        self._topic_content_lookup = topic_content_lookup

    async def search(
        self,
        query: str,
        method: str = "hybrid",
        top_k: int = 10,
        score_threshold: float | None = None,
        include_content: bool = False,
        app_id: str = "default",
        project_id: str = "default",
    ) -> dict[str, Any]:
        """``{hits, total, took_ms}`` in EverOS's shape. A checkpoint; every outside call in it has
        its own deadline (index, embedder, reranker, lookups).

        Raises:
            InvalidInput: ``method`` is not keyword, vector or hybrid, or ``top_k`` is below 1.
            ProviderError: ``vector`` search and the embedder failed.
            StoreBusy: an index read missed its deadline.
        """
        started = time.perf_counter()
        if method not in METHODS:
            raise InvalidInput("method must be one of keyword, vector, hybrid", field="method")
        if top_k < 1:
            raise InvalidInput("top_k must be at least 1", field="top_k")
        top_k = min(top_k, self.settings.top_k_cap)
        recall_n = max(self.settings.recall_n, top_k)
        tokens = list(dict.fromkeys(await trio.to_thread.run_sync(
            search_tokens, query, limiter=self._cpu_limiter, abandon_on_cancel=True
        )))
        keyword: list[tuple[dict[str, Any], float]] = []
        vector_hits: list[tuple[dict[str, Any], float]] = []
        query_vector: list[float] | None = None
        if method == "keyword":
            keyword = await self.index.keyword_topics(tokens, app_id, project_id, recall_n)
        elif method == "vector":
            query_vector = (await self.embedder.embed([query], budget="interactive", purpose="query"))[0]
            vector_hits = await self.index.vector_topics(query_vector, app_id, project_id, recall_n)
        else:
            keyword, query_vector, vector_hits = await self._hybrid_recall(
                query, tokens, app_id, project_id, recall_n
            )
        # Hybrid without a query vector (the embedder failed) is keyword search, scored as such.
        fuse_as = "keyword" if method == "hybrid" and query_vector is None else method
        candidates = _fuse(fuse_as, keyword, vector_hits, self.settings, self._calibration())
        contents: dict[str, str] = {}
        if self.reranker is not None and candidates:
            candidates, contents = await self._rerank(self.reranker, query, candidates)
        if score_threshold is not None:
            candidates = [c for c in candidates if c.score >= score_threshold]
        documents = await self._documents(candidates)
        if self._document_lookup is not None:
            candidates = [c for c in candidates if c.row["doc_id"] in documents]
        candidates = candidates[:top_k]
        ids = [c.row["id"] for c in candidates]
        if include_content and self._topic_content_lookup is not None and candidates:
            missing = [i for i in ids if i not in contents]
            if missing:
                contents.update(await self._topic_content_lookup(missing))
        facts = await self.index.facts_for_topics(ids, query_vector, tokens, self.settings.facts_per_hit)
        hits = [
            _hit(c, method, documents.get(c.row["doc_id"]), contents.get(c.row["id"]) if include_content else None,
                 facts.get(c.row["id"], []))
            for c in candidates
        ]
        return {"hits": hits, "total": len(hits), "took_ms": round((time.perf_counter() - started) * 1000, 2)}

    def _calibration(self) -> tuple[tuple[float, float], float]:
        """The embedder's similarity range and the keyword weight (the setting, or the embedder's)."""
        embedder = self.embedder
        weight = parse_weight(self.settings.keyword_weight)
        if weight is None:
            weight = getattr(embedder, "keyword_weight", DEFAULT_KEYWORD_WEIGHT)
        return getattr(embedder, "similarity_range", DEFAULT_SIMILARITY_RANGE), weight

    async def _hybrid_recall(
        self, query: str, tokens: list[str], app_id: str, project_id: str, recall_n: int
    ) -> tuple[list[tuple[dict[str, Any], float]], list[float] | None, list[tuple[dict[str, Any], float]]]:
        """Keyword and vector recall side by side; a failed embedder leaves the vector half empty."""
        found: dict[str, Any] = {"vector": None, "vector_hits": []}

        async def keyword() -> None:
            found["keyword"] = await self.index.keyword_topics(tokens, app_id, project_id, recall_n)

        async def vector() -> None:
            try:
                found["vector"] = (await self.embedder.embed([query], budget="interactive", purpose="query"))[0]
            except ProviderError as exc:
                log.warning("hybrid search without vectors: the embedder failed: %s", exc)
                return
            found["vector_hits"] = await self.index.vector_topics(found["vector"], app_id, project_id, recall_n)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(keyword)
                nursery.start_soon(vector)
        except ExceptionGroup as group:
            # Callers map errors to answers one class at a time (StoreBusy -> 503), not groups.
            raise group.exceptions[0] from None
        return found["keyword"], found["vector"], found["vector_hits"]

    async def _rerank(
        self, reranker: Reranker, query: str, candidates: list[_Candidate]
    ) -> tuple[list[_Candidate], dict[str, str]]:
        head, tail = candidates[: self.settings.rerank_n], candidates[self.settings.rerank_n :]
        contents: dict[str, str] = {}
        if self._topic_content_lookup is not None:
            contents = await self._topic_content_lookup([c.row["id"] for c in head])
        texts = [contents.get(c.row["id"]) or c.row["summary"] or c.row["topic_name"] for c in head]
        try:
            ranked = await reranker.rerank(query, texts, budget="interactive")
        except ProviderError as exc:
            log.warning("search results not reranked: the reranker failed: %s", exc)
            return candidates, contents
        reordered = [_Candidate(head[i].row, float(score), head[i].source) for i, score in ranked]
        floor = min((c.score for c in reordered), default=0.0)
        return reordered + [_Candidate(c.row, min(c.score, floor), c.source) for c in tail], contents

    async def _documents(self, candidates: list[_Candidate]) -> dict[str, dict[str, Any]]:
        if self._document_lookup is None or not candidates:
            return {}
        return await self._document_lookup(list(dict.fromkeys(c.row["doc_id"] for c in candidates)))


def _fuse(
    method: str,
    keyword: list[tuple[dict[str, Any], float]],
    vector_hits: list[tuple[dict[str, Any], float]],
    settings: KnowledgeSearchSettings,
    calibration: tuple[tuple[float, float], float],
) -> list[_Candidate]:
    """The recalled topics as candidates, best first, scored as :mod:`everos.search._fusion` says
    (BM25 and cosine in, scores on [0, 1] out; hits scoring 0 are left out). ``calibration`` is
    the embedder's similarity range and the keyword weight."""
    similarity_range, keyword_weight = calibration
    keyword_scored = [(row, keyword_score(bm25, settings.keyword_half_score)) for row, bm25 in keyword]
    vector_scored = [(row, vector_score(cosine, similarity_range)) for row, cosine in vector_hits]
    if method == "keyword":
        return [_Candidate(row, score, "keyword") for row, score in keyword_scored if score > 0]
    if method == "vector":
        return [_Candidate(row, score, "vector") for row, score in vector_scored if score > 0]
    rows = {row["id"]: row for row, _ in vector_hits}
    rows.update((row["id"], row) for row, _ in keyword)
    if settings.fusion == "rrf":
        fused = rrf([[row["id"] for row, s in keyword_scored if s > 0],
                     [row["id"] for row, s in vector_scored if s > 0]], settings.rrf_k)
        best_possible = 2.0 / (settings.rrf_k + 1)
        return [_Candidate(rows[topic_id], score / best_possible, None) for topic_id, score in fused]
    fused = weighted([(row["id"], s) for row, s in keyword_scored], [(row["id"], s) for row, s in vector_scored],
                     keyword_weight)
    return [_Candidate(rows[topic_id], score, None) for topic_id, score in fused]


def _hit(
    candidate: _Candidate,
    method: str,
    document: dict[str, Any] | None,
    content: str | None,
    facts: list[tuple[dict[str, Any], float]],
) -> dict[str, Any]:
    row = candidate.row
    document = document or {}
    return {
        "topic_id": row["id"],
        "category_id": row["category_id"],
        "topic_name": row["topic_name"],
        "topic_path": row["topic_path"],
        "depth": row["depth"],
        "summary": row["summary"],
        "content": content,
        "score": round(candidate.score, 6),
        "retrieval_method": method,
        "source": candidate.source,
        "document": {
            "doc_id": row["doc_id"],
            "title": document.get("title", ""),
            "summary": document.get("summary", ""),
        },
        "facts": [{"fact_id": f["id"], "text": f["text"], "score": round(score, 6)} for f, score in facts],
    }
