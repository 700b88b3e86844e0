"""Reciprocal rank fusion: merge ranked lists by rank alone, so scores of different scales mix."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import TypeVar

__all__ = ["rrf"]

K = TypeVar("K", bound=Hashable)


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
