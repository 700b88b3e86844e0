"""Choose hybrid search's fusion settings on the labelled set's dev half; check them on its test half.

Usage::

    python bench/search_fusion.py [--from HITS.json] [--save HITS.json] [--set section.key=value ...]

Runs the labelled-set evaluation once (``everos.testing.search_eval``, a real server on its
embedded defaults plus ``--set``) for keyword and vector search, keeping every query's 100 best
hits with their scores, and turns the scores back into BM25 and cosine (the run asks for a
``similarity_range`` of -1,1, so a vector score is ``(cosine + 1) / 2``). Then:

1. **The embedder's calibration** (its ``similarity_range``), from the cosines alone: the floor is
   the median cosine of each query's 100th hit (a topic about something else: score 0), the
   ceiling the 95th percentile of the cosine of the right document's best topic (score 1).
2. **The fusion weights**, offline with the server's own functions (:mod:`everos.search._fusion`):
   every ``[knowledge.search] keyword_weight`` (0 to 1 by 0.05) and ``keyword_half_score``,
   scored by document-level hit@1 (then MRR) on the **dev** queries, keeping only those where
   hybrid is at least as good as keyword and as vector on every query kind of dev.

It prints the choice with its figures on dev and on **test** (never used for the choice), per
kind and language, next to keyword and vector alone. ``--from`` reuses an earlier ``--save``.
Prints JSON; about three minutes with the built-in e5 model, seconds with ``--from``.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import trio

from everos.config import KnowledgeSearchSettings
from everos.search._fusion import keyword_score, vector_score, weighted
from everos.testing.search_eval import (
    KINDS,
    document_rank,
    load_queries,
    parse_settings,
    percentile,
    run_evaluation,
    summarize,
)

HALF = KnowledgeSearchSettings().keyword_half_score  # the keyword scores of the run: bm25 / (bm25 + HALF)
WEIGHTS = [round(0.05 * n, 2) for n in range(21)]
HALVES = (2.0, 4.0, 8.0, 16.0, 32.0)


def calibration(queries: list[Any], vector: list[list[tuple[str, str, float]]]) -> tuple[float, float]:
    """``(floor, ceiling)``: the median cosine of the 100th hit, the 95th percentile of the right
    document's best cosine (rounded to 0.01)."""
    far = [hits[-1][2] for hits in vector if hits]
    right = [max(s for _, d, s in hits if d == q.doc) for q, hits in zip(queries, vector)
             if any(d == q.doc for _, d, _ in hits)]
    return round(percentile(far, 0.5), 2), round(percentile(right, 0.95), 2)


def raw_hits(result: dict[str, Any]) -> dict[str, list[list[tuple[str, str, float]]]]:
    """Per method, per query: ``(topic_id, document, bm25 or cosine)``, best first."""
    keyword = [[(t, d, HALF * s / (1 - s)) for t, d, s in hits if s < 1]
               for hits in result["methods"]["keyword"]["hits"]]
    vector = [[(t, d, 2 * s - 1) for t, d, s in hits] for hits in result["methods"]["vector"]["hits"]]
    return {"keyword": keyword, "vector": vector}


def ranked(keyword: list[tuple[str, str, float]], vector: list[tuple[str, str, float]], weight: float,
           half: float, similarity_range: tuple[float, float]) -> list[str]:
    """The documents of hybrid's hits, in order, for one query and one combination."""
    documents = {t: d for t, d, _ in keyword} | {t: d for t, d, _ in vector}
    fused = weighted([(t, keyword_score(s, half)) for t, _, s in keyword],
                     [(t, vector_score(s, similarity_range)) for t, _, s in vector], weight)
    return [documents[t] for t, _ in fused]


def report(queries: list[Any], docs_of: list[list[str]]) -> dict[str, Any]:
    """hit@1/3/10 and MRR overall, per kind, per language and per both (:func:`summarize`)."""
    return summarize(queries, [document_rank(docs, q.doc) for q, docs in zip(queries, docs_of)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="source", type=Path, help="hits saved by an earlier --save")
    parser.add_argument("--save", type=Path, help="save the run's hits here")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args()
    if args.source:
        result = json.loads(args.source.read_text(encoding="utf-8"))
    else:
        settings = {**parse_settings(args.set), "embedding__similarity_range": "-1,1",
                    "knowledge__search__keyword_half_score": str(HALF)}
        result = trio.run(functools.partial(run_evaluation, ("keyword", "vector"), "all", settings, 100,
                                            keep_hits=True))
        if args.save:
            args.save.write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
    queries = load_queries()
    hits = raw_hits(result)
    halves = {"dev": [i for i, q in enumerate(queries) if q.split == "dev"],
              "test": [i for i, q in enumerate(queries) if q.split == "test"]}

    def figures_of(split: str, docs_of: list[list[str]]) -> dict[str, Any]:
        return report([queries[i] for i in halves[split]], [docs_of[i] for i in halves[split]])

    alone = {m: [[d for _, d, _ in h] for h in hits[m]] for m in ("keyword", "vector")}
    base = {split: {m: figures_of(split, alone[m]) for m in alone} for split in halves}
    similarity_range = calibration(queries, hits["vector"])
    best: tuple[tuple[float, float], dict[str, Any]] | None = None
    tried = 0
    dev_ids = set(halves["dev"])
    for weight, half in itertools.product(WEIGHTS, HALVES):
        tried += 1
        docs_of = [ranked(k, v, weight, half, similarity_range) if i in dev_ids else []
                   for i, (k, v) in enumerate(zip(hits["keyword"], hits["vector"]))]
        dev = figures_of("dev", docs_of)
        never_worse = all(dev["kind"][kind]["hit@1"] >= max(base["dev"][m]["kind"][kind]["hit@1"] for m in alone)
                          for kind in KINDS)
        key = (dev["overall"]["hit@1"], dev["overall"]["mrr"])
        if never_worse and (best is None or key > best[0]):
            best = (key, {"keyword_weight": weight, "keyword_half_score": half,
                          "similarity_range": list(similarity_range)})
    out: dict[str, Any] = {"settings": result.get("settings"), "combinations_tried": tried,
                           "keyword_and_vector": base}
    if best is None:
        out["chosen"] = None
    else:
        chosen = best[1]
        docs_of = [ranked(k, v, chosen["keyword_weight"], chosen["keyword_half_score"],
                          tuple(chosen["similarity_range"])) for k, v in zip(hits["keyword"], hits["vector"])]
        out["chosen"] = chosen
        out["hybrid"] = {split: figures_of(split, docs_of) for split in halves}
    print(json.dumps(out, indent=2))
    if best is None:
        print("no combination keeps hybrid at or above keyword and vector on every kind of dev", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
