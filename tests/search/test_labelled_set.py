"""The labelled search set (``bench/search_set``: real package READMEs, English and Chinese, and
queries of three kinds written for them) keeps its floors: document-level hit@1 per method
(MRR printed), measured through a real server on its embedded defaults, as ``bench/search_eval.py`` does.

The floors are the figures measured when the set was added, minus a margin, so a regression in
extraction, tokens, embedding or fusion shows here. They describe today's search (issue #13's
targets are higher), not a goal.
"""

from __future__ import annotations

import pytest
import trio

from everos.search import METHODS
from everos.testing.search_eval import KINDS, load_documents, load_queries, run_evaluation

# Measured on all 201 queries when the set was added (hit@1: keyword 0.652, vector 0.458, hybrid
# 0.537; hybrid below keyword is issue #13), minus 0.04.
HIT_AT_1_FLOORS = {"keyword": 0.61, "vector": 0.41, "hybrid": 0.49}


def test_the_set_is_well_formed() -> None:
    documents = load_documents()
    queries = load_queries()
    assert len(documents) >= 90
    assert len(queries) >= 200
    for kind in KINDS:
        assert sum(q.kind == kind for q in queries) >= 50, kind
    assert sum(q.lang == "zh" for q in queries) >= 40
    assert {q.doc for q in queries} <= set(documents)
    assert len({(q.query, q.doc) for q in queries}) == len(queries)


@pytest.mark.filterwarnings("ignore:lancedb fork support is experimental")
async def test_hit_at_1_per_method_stays_above_its_floor() -> None:
    with trio.fail_after(600):
        result = await run_evaluation(METHODS, "all")
    overall = {method: found["overall"] for method, found in result["methods"].items()}
    print("\nlabelled set, {} queries on {} documents: {}".format(result["queries"], result["documents"], ", ".join(
        f"{m} hit@1 {f['hit@1']:.3f} mrr {f['mrr']:.3f}" for m, f in overall.items())))
    for method, floor in HIT_AT_1_FLOORS.items():
        assert overall[method]["hit@1"] >= floor, (method, overall[method])
