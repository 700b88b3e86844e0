"""The built-in e5 embedder (#13, G11, G5a): meaning, offline, in threads for queries and in
worker processes for passages. Each test loads the bundled model (about 0.1 s); bounds are for
liveness, not speed."""

from __future__ import annotations

import math

import pytest
import trio

from everos.errors import WorkerTimeout
from everos.providers import E5Embedder
from everos.providers._e5_embedder import E5_DIM, embed_texts, warm_up_e5
from everos.workers import open_cpu_workers

from .test_builtin_embedder import cosine

LIVENESS_S = 60


async def test_vectors_are_unit_length_deterministic_and_384_wide() -> None:
    embedder = E5Embedder()
    first = await embedder.embed(["HTTP client for Python", "日期解析"], budget="background")
    again = await embedder.embed(["HTTP client for Python", "日期解析"], budget="background")
    assert [len(v) for v in first] == [E5_DIM, E5_DIM]
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-3) for v in first)
    assert first == again
    assert await embedder.embed([], budget="interactive") == []


async def test_it_finds_meaning_that_shares_no_word_in_english_and_chinese() -> None:
    """The point of the model: a paraphrase is nearer than an unrelated text, across languages."""
    embedder = E5Embedder()
    passages = await embedder.embed([
        "A library for sending web requests and reading the server's answers.",
        "Tools for reading dates and calendars in many formats.",
        "把汉字转换成拼音的工具",
    ], budget="background")
    query, query_zh = await embedder.embed(["how do I call a REST API over the network",
                                            "汉语注音"], budget="interactive", purpose="query")
    assert cosine(query, passages[0]) > cosine(query, passages[1])
    assert cosine(query_zh, passages[2]) > max(cosine(query_zh, passages[0]), cosine(query_zh, passages[1]))


async def test_a_query_and_a_passage_of_the_same_text_differ() -> None:
    """e5's prefixes: ``query:`` for a search, ``passage:`` for what is searched."""
    embedder = E5Embedder()
    (query,) = await embedder.embed(["install the package"], budget="interactive", purpose="query")
    (passage,) = await embedder.embed(["install the package"], budget="interactive", purpose="passage")
    assert query != passage
    with pytest.raises(ValueError, match="purpose"):
        await embedder.embed(["x"], budget="interactive", purpose="document")


async def test_passages_are_embedded_in_the_worker_processes_and_queries_are_not() -> None:
    embedder = E5Embedder()
    texts = [f"topic {n}: parsing command line arguments" for n in range(20)]  # two engine calls
    async with open_cpu_workers(workers=1, init=warm_up_e5) as pool:
        embedder.use_workers(pool, memory_mb=2048)
        with trio.fail_after(LIVENESS_S):
            in_workers = await embedder.embed(texts, budget="background")
            await embedder.embed(["a query"], budget="interactive", purpose="query")
        snapshot = pool.snapshot()
    assert snapshot.killed == snapshot.crashed == 0
    local = embed_texts(texts, False)
    assert all(max(abs(a - b) for a, b in zip(x, y)) < 1e-5 for x, y in zip(in_workers, local))


async def test_a_worker_call_past_its_deadline_kills_the_worker_and_says_so() -> None:
    """G5a: embedding in a worker process is killable, unlike a thread."""
    embedder = E5Embedder(call_deadline_s=0.001)
    async with open_cpu_workers(workers=1, init=warm_up_e5) as pool:
        embedder.use_workers(pool)
        with trio.fail_after(LIVENESS_S), pytest.raises(WorkerTimeout, match="embedding 16 texts"):
            await embedder.embed(["a long text " * 200] * 16, budget="background")
        assert pool.snapshot().killed == 1
        embedder.call_deadline_s = LIVENESS_S
        with trio.fail_after(LIVENESS_S):
            assert len(await embedder.embed(["after the kill"], budget="background")) == 1
