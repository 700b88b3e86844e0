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

Recall reads only each candidate's id and document id from the index. A configured reranker
reorders the first ``rerank_n`` candidates by its own scores (hits past them follow, scored no
higher than the last reranked one); if it fails, the recall order stands. ``score_threshold`` then
filters, and the first ``top_k`` (at most ``top_k_cap``) candidates whose topic and document still
exist are returned: what a hit shows comes from one batched lookup (SQLite's topic and document
rows, :data:`HitLookup`), run side by side with the lookup of the hits' best atomic facts.
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
from everos.knowledge._tokens import search_tokens
from everos.store.index import IndexStore

__all__ = ["METHODS", "HitLookup", "Reranker", "SearchService"]

log = logging.getLogger("everos.search")

METHODS: Final = ("keyword", "vector", "hybrid")
DEFAULT_SIMILARITY_RANGE: Final = (0.0, 1.0)
"""The cosine range of an embedder that names none: 0 unrelated, 1 the same."""
DEFAULT_KEYWORD_WEIGHT: Final = 0.5
"""The keyword weight of hybrid search with an embedder that names none."""

HitLookup = Callable[[Sequence[str], bool], Awaitable[dict[str, dict[str, Any]]]]
"""``(topic_ids, with_content) -> {topic_id: details}`` for the topics that exist, whose document
exists: ``doc_id``, ``category_id``, ``topic_name``, ``topic_path``, ``depth``, ``summary``,
``document`` (``{"title", "summary"}``) and, ``with_content``, ``content`` (EverOS keeps topic
content in SQLite)."""
SHOWN_WINDOW: Final = 2
"""Candidates looked up per hit still wanted: room for hits whose document is gone."""


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

    ``cpu_limiter`` bounds the tokenizer threads. ``hit_lookup`` supplies what each hit shows (its
    topic's name, path and summary, its document's title and summary, the content for
    ``include_content`` and for the reranker); candidates it does not return are dropped (the
    topic or its document was deleted and the index has not caught up). Without it the index's
    own rows stand in (:meth:`IndexStore.topic_rows`: no document title or summary, no content).
    """

    def __init__(
        self,
        index: IndexStore,
        embedder: Embedder,
        reranker: Reranker | None,
        settings: KnowledgeSearchSettings,
        cpu_limiter: trio.CapacityLimiter,
        *,
        hit_lookup: HitLookup | None = None,
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.reranker = reranker
        self.settings = settings
        self._cpu_limiter = cpu_limiter
        self._hit_lookup = hit_lookup if hit_lookup is not None else self._index_rows

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
        details: dict[str, dict[str, Any]] = {}
        if self.reranker is not None and candidates:
            candidates = await self._rerank(self.reranker, query, candidates, details)
        if score_threshold is not None:
            candidates = [c for c in candidates if c.score >= score_threshold]
        shown, facts = await self._shown(candidates, top_k, include_content, details, query_vector, tokens)
        hits = [_hit(c, method, details[c.row["id"]], include_content, facts.get(c.row["id"], [])) for c in shown]
        return {"hits": hits, "total": len(hits), "took_ms": round((time.perf_counter() - started) * 1000, 2)}

    async def _shown(
        self, candidates: list[_Candidate], top_k: int, include_content: bool, details: dict[str, dict[str, Any]],
        query_vector: list[float] | None, tokens: list[str],
    ) -> tuple[list[_Candidate], dict[str, list[tuple[dict[str, Any], float]]]]:
        """The first ``top_k`` candidates whose topic and document exist, and their best facts.

        Candidates are looked up ``SHOWN_WINDOW`` per hit still wanted (``details`` collects what
        was found); the first lookup runs beside the fact lookup of the first ``top_k``
        candidates, which are the hits unless some are gone (their replacements' facts are looked
        up afterwards)."""
        facts: dict[str, list[tuple[dict[str, Any], float]]] = {}
        asked: set[str] = set()

        async def look_up_facts(topic_ids: list[str]) -> None:
            asked.update(topic_ids)
            facts.update(await self.index.facts_for_topics(topic_ids, query_vector, tokens,
                                                           self.settings.facts_per_hit))

        async def look_up(topic_ids: list[str]) -> None:
            if topic_ids:
                details.update(await self._hit_lookup(topic_ids, include_content))

        shown: list[_Candidate] = []
        start = 0
        while len(shown) < top_k and start < len(candidates):
            window = candidates[start : start + SHOWN_WINDOW * (top_k - len(shown))]
            wanted = [c.row["id"] for c in window if c.row["id"] not in details]
            if start == 0:
                await _together(lambda: look_up(wanted), lambda: look_up_facts([c.row["id"] for c in window[:top_k]]))
            else:
                await look_up(wanted)
            start += len(window)
            shown.extend(c for c in window if c.row["id"] in details)
        shown = shown[:top_k]
        missing = [c.row["id"] for c in shown if c.row["id"] not in asked]
        if missing:
            await look_up_facts(missing)
        return shown, facts

    async def _index_rows(self, topic_ids: Sequence[str], with_content: bool) -> dict[str, dict[str, Any]]:
        """The :data:`HitLookup` without SQLite: the index's rows, no document title, no content."""
        rows = await self.index.topic_rows(topic_ids)
        return {topic_id: {**row, "document": {}} for topic_id, row in rows.items()}

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

        await _together(keyword, vector)
        return found["keyword"], found["vector"], found["vector_hits"]

    async def _rerank(
        self, reranker: Reranker, query: str, candidates: list[_Candidate], details: dict[str, dict[str, Any]]
    ) -> list[_Candidate]:
        """The first ``rerank_n`` candidates that still exist, reordered by ``reranker`` on their
        content (else summary, else name), then the rest; ``details`` gets what was looked up."""
        head, tail = candidates[: self.settings.rerank_n], candidates[self.settings.rerank_n :]
        details.update(await self._hit_lookup([c.row["id"] for c in head], True))
        head = [c for c in head if c.row["id"] in details]
        if not head:
            return tail
        texts = [_rerank_text(details[c.row["id"]]) for c in head]
        try:
            ranked = await reranker.rerank(query, texts, budget="interactive")
        except ProviderError as exc:
            log.warning("search results not reranked: the reranker failed: %s", exc)
            return head + tail
        reordered = [_Candidate(head[i].row, float(score), head[i].source) for i, score in ranked]
        floor = min((c.score for c in reordered), default=0.0)
        return reordered + [_Candidate(c.row, min(c.score, floor), c.source) for c in tail]


def _rerank_text(details: dict[str, Any]) -> str:
    return details.get("content") or details["summary"] or details["topic_name"]


async def _together(*calls: Callable[[], Awaitable[None]]) -> None:
    """Run ``calls`` side by side; the first failure is raised as itself (callers map errors to
    answers one class at a time, StoreBusy -> 503, not groups)."""
    try:
        async with trio.open_nursery() as nursery:
            for call in calls:
                nursery.start_soon(call)
    except ExceptionGroup as group:
        raise group.exceptions[0] from None


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
    details: dict[str, Any],
    include_content: bool,
    facts: list[tuple[dict[str, Any], float]],
) -> dict[str, Any]:
    document = details["document"]
    return {
        "topic_id": candidate.row["id"],
        "category_id": details["category_id"],
        "topic_name": details["topic_name"],
        "topic_path": details["topic_path"],
        "depth": details["depth"],
        "summary": details["summary"],
        "content": details.get("content") if include_content else None,
        "score": round(candidate.score, 6),
        "retrieval_method": method,
        "source": candidate.source,
        "document": {
            "doc_id": candidate.row["doc_id"],
            "title": document.get("title", ""),
            "summary": document.get("summary", ""),
        },
        "facts": [{"fact_id": f["id"], "text": f["text"], "score": round(score, 6)} for f, score in facts],
    }
