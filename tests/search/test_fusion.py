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


# -- calibrated scores and weighted fusion (#13 item 4) --------------------------------------------

from everos.search._fusion import keyword_score, vector_score, weighted  # noqa: E402


def test_a_keyword_score_is_half_at_the_half_score_and_below_one_always() -> None:
    assert keyword_score(8.0, 8.0) == 0.5
    assert keyword_score(0.0, 8.0) == keyword_score(-1.0, 8.0) == 0.0
    assert 0.9 < keyword_score(100.0, 8.0) < 1.0
    assert keyword_score(4.0, 8.0) < keyword_score(5.0, 8.0)  # monotone: the BM25 order stands


def test_a_vector_score_is_linear_between_floor_and_ceiling_and_clipped() -> None:
    assert vector_score(0.80, (0.8, 0.9)) == 0.0
    assert vector_score(0.70, (0.8, 0.9)) == 0.0
    assert vector_score(0.85, (0.8, 0.9)) == pytest.approx(0.5)
    assert vector_score(0.95, (0.8, 0.9)) == 1.0
    with pytest.raises(ValueError, match="ceiling"):
        vector_score(0.5, (0.9, 0.9))


def test_weighted_fusion_adds_weighted_scores_and_drops_zeros() -> None:
    fused = weighted([("a", 1.0), ("b", 0.5)], [("b", 1.0), ("c", 0.2), ("d", 0.0)], keyword_weight=0.25)
    assert fused == [("b", pytest.approx(0.875)), ("a", 0.25), ("c", pytest.approx(0.15))]
    assert weighted([("a", 1.0)], [("b", 1.0)], keyword_weight=1.0) == [("a", 1.0)]
    assert weighted([], [], keyword_weight=0.5) == []
    with pytest.raises(ValueError, match="keyword_weight"):
        weighted([], [], keyword_weight=1.5)


def test_weighted_fusion_scores_stay_on_zero_to_one() -> None:
    fused = weighted([(n, 1.0) for n in range(5)], [(n, 1.0) for n in range(5)], keyword_weight=0.3)
    assert all(score == pytest.approx(1.0) for _, score in fused)
