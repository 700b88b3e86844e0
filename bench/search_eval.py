"""Search quality on the labelled set (``bench/search_set``): document-level hit@1, hit@3,
hit@10 and MRR per method, per query kind and per language.

Starts ``everos server start`` on loopback in a temporary root (its embedded defaults, plus any
``--set section.key=value``), uploads every document of the set over HTTP, waits until each is
indexed for keyword search and until its vectors are in (``keyword_indexed_seconds``,
``upload_and_index_seconds``), runs every query of the split for each method and prints one JSON
object (figures, and the server's ``took_ms`` p50/p95); a short table goes to stderr. Runs
offline; the root is removed and the server stopped at the end.

    python bench/search_eval.py [--methods keyword,vector,hybrid] [--split dev|test|all] [--json]
                                [--top-k 50] [--set knowledge.search.keyword_weight=0.5 ...]
                                [--set embedding.model=hashing] [--ranks] [--hits]
"""

from __future__ import annotations

import argparse
import functools
import json
import sys

import trio

from everos.search import METHODS
from everos.testing.search_eval import parse_settings, run_evaluation, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated: keyword,vector,hybrid")
    parser.add_argument("--split", default="all", choices=("dev", "test", "all"))
    parser.add_argument("--top-k", type=int, default=50, help="hits asked for per query (at most 100)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a server setting, as EVEROS_SECTION__KEY (repeatable)")
    parser.add_argument("--json", action="store_true", help="print only the JSON object (no table on stderr)")
    parser.add_argument("--ranks", action="store_true", help="keep each query's rank in the JSON")
    parser.add_argument("--hits", action="store_true",
                        help="keep each query's hits (topic id, document, score) in the JSON, for search_fusion.py")
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods: {', '.join(unknown)}")
    try:
        settings = parse_settings(args.set)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        result = trio.run(functools.partial(run_evaluation, methods, args.split, settings, args.top_k,
                                            keep_hits=args.hits))
    except KeyboardInterrupt:
        sys.exit(130)
    if not args.ranks:
        for found in result["methods"].values():
            found.pop("ranks", None)
    if not args.json:
        print(table(result), file=sys.stderr)
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
