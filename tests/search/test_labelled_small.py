"""Search sanity on a small labelled set: 30 short documents on distinct subjects (two in Chinese)
and 22 queries, each with the one document that answers it.

Indexed as the cascade does offline (built-in extractor, search tokens, sentence facts, built-in
embedder). The top-3 hit rate per method is printed; the floors are the rates measured when the
set was written, minus a margin, so a regression in tokens, fusion or the index shows here.
"""

from __future__ import annotations

import json
from pathlib import Path

import trio

from everos.config import KnowledgeSearchSettings
from everos.providers import BuiltinEmbedder
from everos.search import METHODS, SearchService
from everos.store.index import IndexStore, IndexWriter
from tests.search.conftest import doc_id_for, index_markdown

LABELLED = Path(__file__).parent / "data" / "labelled"
# Measured when the set was written: keyword 1.00, vector 0.91, hybrid 1.00.
FLOORS = {"keyword": 0.85, "vector": 0.8, "hybrid": 0.85}


async def test_top_3_hit_rate_per_method_stays_above_its_floor(
    index: IndexStore, writer: IndexWriter, embedder: BuiltinEmbedder
) -> None:
    documents = sorted(LABELLED.glob("*.md"))
    assert len(documents) == 30
    for path in documents:
        text = path.read_text(encoding="utf-8")
        title = text.splitlines()[0].lstrip("# ")
        await index_markdown(writer, embedder, doc_id_for(path.name), title, text)
    queries = json.loads((LABELLED / "queries.json").read_text(encoding="utf-8"))
    service = SearchService(index, embedder, None, KnowledgeSearchSettings(), trio.CapacityLimiter(2))
    rates = {}
    for method in METHODS:
        found = 0
        for case in queries:
            answer = await service.search(case["query"], method, top_k=3, app_id="app", project_id="proj")
            found += doc_id_for(case["doc"]) in {hit["document"]["doc_id"] for hit in answer["hits"]}
        rates[method] = found / len(queries)
    print("\ntop-3 hit rate on the labelled set ({} queries): {}".format(
        len(queries), ", ".join(f"{method} {rate:.2f}" for method, rate in rates.items())))
    for method, floor in FLOORS.items():
        assert rates[method] >= floor, (method, rates)
