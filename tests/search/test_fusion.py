"""Reciprocal rank fusion."""

from __future__ import annotations

import pytest

from everos.search import rrf


def test_an_item_ranked_well_by_both_lists_wins() -> None:
    fused = rrf([["a", "b", "c"], ["b", "d"]], k=60)
    assert [item for item, _ in fused] == ["b", "a", "d", "c"]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)


def test_scores_follow_one_over_k_plus_rank() -> None:
    assert rrf([["x", "y"]], k=0) == [("x", 1.0), ("y", 0.5)]


def test_ties_keep_the_order_items_were_first_seen() -> None:
    assert [item for item, _ in rrf([["a"], ["b"]], k=60)] == ["a", "b"]


def test_an_item_repeated_in_one_list_counts_once_at_its_best_rank() -> None:
    assert rrf([["a", "a", "b"]], k=1) == [("a", 0.5), ("b", 0.25)]


def test_no_lists_fuse_to_nothing_and_a_negative_k_is_refused() -> None:
    assert rrf([], k=60) == []
    assert rrf([[], []], k=60) == []
    with pytest.raises(ValueError):
        rrf([["a"]], k=-1)
