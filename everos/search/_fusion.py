"""Scores of search hits: calibrated per method, fused by weight, or by rank (RRF).

Every score lies in [0, 1] and means the same for every query, so ``score_threshold`` drops
hits that do not match (#13):

* **keyword**: ``bm25 / (bm25 + half)``: a topic whose BM25 is ``half`` (``[knowledge.search]
  keyword_half_score``) scores 0.5; more matching, rarer terms score closer to 1. BM25 grows with
  the query's matching terms and their rarity, so one common word scores low, several rare ones
  high. No matching term, no hit.
* **vector**: the cosine similarity mapped linearly from the embedder's ``similarity_range``
  ``(floor, ceiling)`` onto [0, 1] and clipped: at or below the floor a topic is unrelated (score
  0, no hit), at the ceiling or above it is as close as the model gets. Each model has its own
  range (e5's cosines are compressed: 0.82 for a topic about something else, 0.93 for a close one).
* **hybrid**: ``w * keyword + (1 - w) * vector`` with ``w = keyword_weight``; a topic found by one
  method only gets 0 from the other. :func:`rrf` remains for ``fusion = "rrf"``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import TypeVar

__all__ = ["keyword_score", "rrf", "vector_score", "weighted"]

K = TypeVar("K", bound=Hashable)


def keyword_score(bm25: float, half: float) -> float:
    """A BM25 score on [0, 1): ``bm25 / (bm25 + half)``; 0 for a score of 0 or less."""
    return bm25 / (bm25 + half) if bm25 > 0 else 0.0


def vector_score(cosine: float, similarity_range: tuple[float, float]) -> float:
    """A cosine similarity on [0, 1]: linear from ``floor`` (0) to ``ceiling`` (1), clipped."""
    floor, ceiling = similarity_range
    if ceiling <= floor:
        raise ValueError("the similarity range's ceiling must be above its floor")
    return min(1.0, max(0.0, (cosine - floor) / (ceiling - floor)))


def weighted(keyword: Iterable[tuple[K, float]], vector: Iterable[tuple[K, float]],
             keyword_weight: float) -> list[tuple[K, float]]:
    """Fuse two lists of ``(id, score on [0, 1])``: ``w * keyword + (1 - w) * vector``, 0 for a
    list an id is missing from; ids scoring 0 are left out. Best first; ties keep the order in
    which ids were first seen (keyword first). Pure.

    Raises:
        ValueError: ``keyword_weight`` is outside [0, 1].
    """
    if not 0.0 <= keyword_weight <= 1.0:
        raise ValueError("keyword_weight must be between 0 and 1")
    scores: dict[K, float] = {}
    for weight, found in ((keyword_weight, keyword), (1.0 - keyword_weight, vector)):
        for item, score in found:
            scores[item] = scores.get(item, 0.0) + weight * score
    return sorted(((item, s) for item, s in scores.items() if s > 0), key=lambda pair: -pair[1])


def rrf(ranked_lists: Iterable[Sequence[K]], k: int) -> list[tuple[K, float]]:
    """Fuse ranked lists of ids: each id scores ``sum(1 / (k + rank))`` over the lists it is in
    (rank 1 is the best). Best first; ties keep the order in which ids were first seen.

    An id repeated within one list counts once, at its best rank. Pure.

    Raises:
        ValueError: ``k`` is negative.
    """
    if k < 0:
        raise ValueError("k must not be negative")
    scores: dict[K, float] = {}
    for ranked in ranked_lists:
        seen: set[K] = set()
        for rank, item in enumerate(ranked, start=1):
            if item in seen:
                continue
            seen.add(item)
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])  # stable: ties keep first-seen order
