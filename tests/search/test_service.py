"""SearchService on a real index with the built-in embedder: methods, scopes, thresholds, facts,
enrichment and rerank."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest
import trio

from everos.config import KnowledgeSearchSettings
from everos.errors import InvalidInput
from everos.providers import BuiltinEmbedder, ProviderError
from everos.search import SearchService
from everos.store.index import IndexStore, IndexWriter
from tests.search.conftest import index_markdown

BEES = """# Honeybees

## The queen

The queen bee lays up to two thousand eggs a day. Workers feed her royal jelly.

## Foraging

Foragers find nectar and share the direction with the waggle dance.
"""

BREAD = """# Bread

## Kneading

Kneading the dough develops gluten, which traps the gas made by yeast.

## Baking

Bake the loaf in a hot oven until the crust is brown and the loaf sounds hollow.
"""

TEA = """# 茶

## 乌龙茶

乌龙茶属于半发酵茶，冲泡时水温要接近一百度。铁观音是著名的乌龙茶。
"""

BEES_ID, BREAD_ID, TEA_ID, OTHER_ID = "d_00000000000a", "d_00000000000b", "d_00000000000c", "d_00000000000d"


@pytest.fixture
async def indexed(writer: IndexWriter, embedder: BuiltinEmbedder) -> IndexWriter:
    await index_markdown(writer, embedder, BEES_ID, "Honeybees", BEES)
    await index_markdown(writer, embedder, BREAD_ID, "Bread", BREAD)
    await index_markdown(writer, embedder, TEA_ID, "茶", TEA)
    await index_markdown(writer, embedder, OTHER_ID, "Honeybees", BEES, app_id="other")
    return writer


def service(index: IndexStore, embedder: Any, reranker: Any = None, **kwargs: Any) -> SearchService:
    settings = dataclasses.replace(KnowledgeSearchSettings(), **kwargs.pop("settings", {}))
    return SearchService(index, embedder, reranker, settings, trio.CapacityLimiter(2), **kwargs)


async def search(svc: SearchService, query: str, method: str = "hybrid", **kwargs: Any) -> dict[str, Any]:
    return await svc.search(query, method, **{"app_id": "app", "project_id": "proj", **kwargs})


def topic_ids(answer: dict[str, Any]) -> list[str]:
    return [hit["topic_id"] for hit in answer["hits"]]


@pytest.mark.parametrize("method", ["keyword", "vector", "hybrid"])
async def test_each_method_finds_the_topic_that_answers(
    index: IndexStore, embedder: BuiltinEmbedder, indexed: IndexWriter, method: str
) -> None:
    answer = await search(service(index, embedder), "waggle dance direction of nectar", method, top_k=3)
    assert topic_ids(answer)[0] == f"{BEES_ID}_2"
    hit = answer["hits"][0]
    assert hit["retrieval_method"] == method
    assert hit["source"] == (None if method == "hybrid" else method)
    assert (hit["topic_name"], hit["topic_path"], hit["depth"]) == ("Foraging", "Honeybees > Foraging", 1)
    assert hit["document"] == {"doc_id": BEES_ID, "title": "", "summary": ""} and hit["content"] is None
    assert 0 < hit["score"] <= 1 and answer["total"] == len(answer["hits"]) and answer["took_ms"] >= 0


async def test_a_chinese_query_finds_the_chinese_topic(
    index: IndexStore, embedder: BuiltinEmbedder, indexed: IndexWriter
) -> None:
    assert topic_ids(await search(service(index, embedder), "乌龙茶的冲泡水温", "keyword"))[0] == f"{TEA_ID}_1"


@pytest.mark.parametrize("method", ["keyword", "vector", "hybrid"])
async def test_scopes_never_leak_into_each_other(
    index: IndexStore, embedder: BuiltinEmbedder, indexed: IndexWriter, method: str
) -> None:
    svc = service(index, embedder)
    mine = await search(svc, "queen bee eggs", method)
    theirs = await search(svc, "queen bee eggs", method, app_id="other")
    assert mine["hits"] and all(hit["document"]["doc_id"] != OTHER_ID for hit in mine["hits"])
    assert theirs["hits"] and {hit["document"]["doc_id"] for hit in theirs["hits"]} == {OTHER_ID}
    assert (await search(svc, "queen bee eggs", method, project_id="nobody"))["hits"] == []


async def test_score_threshold_filters_and_top_k_is_capped(
    index: IndexStore, embedder: BuiltinEmbedder, indexed: IndexWriter
) -> None:
    svc = service(index, embedder, settings={"top_k_cap": 2})
    assert len((await search(svc, "the loaf and the bee", "keyword", top_k=50))["hits"]) == 2
    every = await search(svc, "the loaf and the bee", "vector", top_k=2)
    strict = await search(svc, "the loaf and the bee", "vector", top_k=2, score_threshold=every["hits"][0]["score"])
    assert topic_ids(strict) == topic_ids(every)[:1]
    assert (await search(svc, "loaf", "keyword", score_threshold=1.01))["hits"] == []


async def test_each_hit_lists_its_best_facts(
    index: IndexStore, embedder: BuiltinEmbedder, indexed: IndexWriter
) -> None:
    answer = await search(service(index, embedder, settings={"facts_per_hit": 1}), "royal jelly for the queen",
                          "keyword")
    hit = answer["hits"][0]
    assert hit["topic_id"] == f"{BEES_ID}_1"
    assert [fact["text"] for fact in hit["facts"]] == ["Workers feed her royal jelly."]
    assert hit["facts"][0]["fact_id"] == f"{BEES_ID}_1_f1" and hit["facts"][0]["score"] > 0


async def test_what_hits_show_comes_from_the_lookup_and_gone_topics_are_dropped(
    index: IndexStore, embedder: BuiltinEmbedder, indexed: IndexWriter
) -> None:
    asked: list[tuple[list[str], bool]] = []

    async def lookup(topic_ids: Sequence[str], with_content: bool) -> dict[str, dict[str, Any]]:
        asked.append((list(topic_ids), with_content))
        rows = await index.topic_rows(topic_ids)
        return {topic_id: {**row, "summary": f"fresh {topic_id}", "document": {"title": "Bees", "summary": "All."},
                           **({"content": f"content of {topic_id}"} if with_content else {})}
                for topic_id, row in rows.items() if row["doc_id"] == BEES_ID}  # bread's document is gone

    svc = service(index, embedder, hit_lookup=lookup)
    answer = await search(svc, "queen bee bread loaf", "keyword", include_content=True)
    assert {hit["document"]["doc_id"] for hit in answer["hits"]} == {BEES_ID}
    first = answer["hits"][0]
    assert first["document"]["title"] == "Bees" and first["summary"] == f"fresh {first['topic_id']}"
    assert first["content"] == f"content of {first['topic_id']}"
    assert all(with_content for _, with_content in asked)
    asked.clear()
    assert (await search(svc, "queen bee", "keyword"))["hits"][0]["content"] is None
    assert len(asked) == 1 and not asked[0][1]  # one lookup per search, without content when none is shown


async def test_hits_replace_gone_candidates_from_further_down_the_recall(
    index: IndexStore, embedder: BuiltinEmbedder, indexed: IndexWriter
) -> None:
    """With top_k 1 the first window is two candidates; when both are gone, the next ones are
    looked up, and the hit shown gets its own facts."""
    every = await search(service(index, embedder), "queen bee bread loaf eggs oven", "keyword", top_k=10)
    ids = [hit["topic_id"] for hit in every["hits"]]
    assert len(ids) >= 3
    gone = set(ids[:2])
    asked: list[list[str]] = []

    async def lookup(topic_ids: Sequence[str], with_content: bool) -> dict[str, dict[str, Any]]:
        asked.append(list(topic_ids))
        rows = await index.topic_rows(topic_ids)
        return {topic_id: {**row, "document": {}} for topic_id, row in rows.items() if topic_id not in gone}

    answer = await search(service(index, embedder, hit_lookup=lookup), "queen bee bread loaf eggs oven", "keyword",
                          top_k=1)
    assert [hit["topic_id"] for hit in answer["hits"]] == [ids[2]]
    assert asked[0] == ids[:2] and asked[1][0] == ids[2]
    assert answer["hits"][0]["facts"] == every["hits"][2]["facts"][: len(answer["hits"][0]["facts"])]


class FakeReranker:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.documents: list[str] = []

    async def rerank(self, query: str, documents: Sequence[str], *, budget: str) -> list[tuple[int, float]]:
        await trio.lowlevel.checkpoint()
        if self.fail:
            raise ProviderError("rerank", "connection refused")
        self.documents = list(documents)
        return sorted(((i, 1.0 if "crust" in doc else 0.5 - i / 100) for i, doc in enumerate(documents)),
                      key=lambda pair: -pair[1])


async def test_a_reranker_reorders_the_top_candidates_by_its_scores(
    index: IndexStore, embedder: BuiltinEmbedder, indexed: IndexWriter
) -> None:
    reranker = FakeReranker()
    svc = service(index, embedder, reranker, settings={"rerank_n": 3})
    answer = await search(svc, "bee queen loaf oven", "keyword", top_k=10)
    assert answer["hits"][0]["topic_id"] == f"{BREAD_ID}_2" and answer["hits"][0]["score"] == 1.0
    assert len(reranker.documents) == 3  # the summaries, with no content lookup
    scores = [hit["score"] for hit in answer["hits"]]
    assert scores == sorted(scores, reverse=True)


async def test_a_failing_reranker_leaves_the_recall_order(
    index: IndexStore, embedder: BuiltinEmbedder, indexed: IndexWriter
) -> None:
    plain = await search(service(index, embedder), "queen bee loaf", "keyword")
    failing = await search(service(index, embedder, FakeReranker(fail=True)), "queen bee loaf", "keyword")
    assert topic_ids(failing) == topic_ids(plain)


class BrokenEmbedder:
    dim = 256
    model = "broken"

    async def embed(self, texts: Sequence[str], *, budget: str, purpose: str = "passage") -> list[list[float]]:
        await trio.lowlevel.checkpoint()
        raise ProviderError("embedding", "connection refused")


async def test_hybrid_falls_back_to_keyword_when_the_embedder_fails_and_vector_reports_it(
    index: IndexStore, indexed: IndexWriter
) -> None:
    svc = service(index, BrokenEmbedder())
    assert topic_ids(await search(svc, "waggle dance", "hybrid"))[0] == f"{BEES_ID}_2"
    with pytest.raises(ProviderError):
        await search(svc, "waggle dance", "vector")


async def test_keyword_search_does_not_embed_the_query(index: IndexStore, indexed: IndexWriter) -> None:
    assert topic_ids(await search(service(index, BrokenEmbedder()), "waggle dance", "keyword"))[0] == f"{BEES_ID}_2"


async def test_a_query_with_no_search_tokens_finds_nothing_by_keyword(
    index: IndexStore, embedder: BuiltinEmbedder, indexed: IndexWriter
) -> None:
    assert (await search(service(index, embedder), "the of and", "keyword"))["hits"] == []


async def test_bad_method_or_top_k_is_invalid_input(index: IndexStore, embedder: BuiltinEmbedder) -> None:
    svc = service(index, embedder)
    with pytest.raises(InvalidInput, match="method"):
        await search(svc, "bees", "fuzzy")
    with pytest.raises(InvalidInput, match="top_k"):
        await search(svc, "bees", "keyword", top_k=0)


async def test_hybrid_raises_an_index_failure_as_itself_not_as_a_group(
    index: IndexStore, embedder: BuiltinEmbedder
) -> None:
    await index.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await search(service(index, embedder), "bees", "hybrid")


async def test_a_cancelled_search_stops_waiting_at_once(
    index: IndexStore, embedder: BuiltinEmbedder, indexed: IndexWriter
) -> None:
    with trio.move_on_after(0) as scope:
        await search(service(index, embedder), "waggle dance", "hybrid")
    assert scope.cancelled_caught


# -- scores with a meaning (#13 item 4) -----------------------------------------------------------

async def test_keyword_finds_nothing_when_no_term_matches(
    index: IndexStore, embedder: BuiltinEmbedder, indexed: IndexWriter
) -> None:
    assert (await search(service(index, embedder), "zeppelin quantum", "keyword"))["hits"] == []


async def test_keyword_scores_compare_across_queries(
    index: IndexStore, embedder: BuiltinEmbedder, indexed: IndexWriter
) -> None:
    """The best hit of a weak query no longer scores 1: scores are BM25 calibrated, not relative."""
    svc = service(index, embedder)
    strong = (await search(svc, "waggle dance nectar foragers direction", "keyword"))["hits"][0]["score"]
    weak = (await search(svc, "dance", "keyword"))["hits"][0]["score"]
    assert 0 < weak < strong < 1


async def test_vector_hits_at_or_below_the_embedders_floor_are_no_hits(
    index: IndexStore, embedder: BuiltinEmbedder, indexed: IndexWriter
) -> None:
    svc = service(index, embedder)
    assert (await search(svc, "waggle dance", "vector"))["hits"]
    embedder.similarity_range = (0.99, 1.0)  # only a near-copy of a topic would pass
    try:
        assert (await search(svc, "waggle dance", "vector"))["hits"] == []
    finally:
        embedder.similarity_range = BuiltinEmbedder.similarity_range


async def test_a_score_threshold_keeps_what_matches_and_drops_what_does_not(
    index: IndexStore, embedder: BuiltinEmbedder, indexed: IndexWriter
) -> None:
    svc = service(index, embedder)
    matching = await search(svc, "waggle dance direction of nectar", "hybrid", score_threshold=0.3)
    assert topic_ids(matching)[:1] == [f"{BEES_ID}_2"]
    assert all(hit["score"] >= 0.3 for hit in matching["hits"])
    assert (await search(svc, "zeppelin quantum chromodynamics", "hybrid", score_threshold=0.3))["hits"] == []


async def test_rrf_fusion_is_still_available(
    index: IndexStore, embedder: BuiltinEmbedder, indexed: IndexWriter
) -> None:
    svc = service(index, embedder, settings={"fusion": "rrf"})
    answer = await search(svc, "waggle dance direction of nectar", "hybrid")
    assert topic_ids(answer)[0] == f"{BEES_ID}_2" and answer["hits"][0]["score"] == pytest.approx(1.0)


async def test_hybrid_without_a_query_vector_scores_its_keyword_hits_as_keyword_hits(
    index: IndexStore, embedder: BuiltinEmbedder, indexed: IndexWriter
) -> None:
    """A failing embedder must not deflate scores to the keyword weight: a threshold that keeps a
    keyword hit keeps it in degraded hybrid search too."""
    keyword = (await search(service(index, embedder), "waggle dance", "keyword"))["hits"][0]
    degraded = (await search(service(index, BrokenEmbedder()), "waggle dance", "hybrid"))["hits"][0]
    assert (degraded["topic_id"], degraded["score"], degraded["source"]) == (
        keyword["topic_id"], keyword["score"], "keyword")
