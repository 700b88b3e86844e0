"""The built-in hashing embedder: deterministic, normalised, lexically meaningful (G11)."""

import math

import pytest
import trio

from everos.providers import Budgets, BuiltinEmbedder


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b))


def test_vectors_are_pinned_across_processes_and_versions():
    """A stable hash (BLAKE2b), not Python's salted ``hash``: indexes stay valid across restarts."""
    [vector] = BuiltinEmbedder(8).embed_sync(["hello world"])
    assert vector == pytest.approx([0.147442, 0.147442, 0.442326, 0.147442, -0.147442, 0.294884, 0.73721, 0.294884],
                                   abs=1e-6)


def test_same_text_same_vector_across_instances():
    text = "Structured concurrency keeps every task inside a nursery."
    assert BuiltinEmbedder(64).embed_sync([text]) == BuiltinEmbedder(64).embed_sync([text])


def test_vectors_have_dim_entries_and_unit_length():
    vectors = BuiltinEmbedder(384).embed_sync(["one", "two words", "中文文本"])
    assert all(len(v) == 384 for v in vectors)
    assert all(math.isclose(sum(x * x for x in v), 1.0) for v in vectors)


@pytest.mark.parametrize("text", ["", "   ", "!!! ---"])
def test_text_without_tokens_gives_the_zero_vector(text):
    assert BuiltinEmbedder(16).embed_sync([text]) == [[0.0] * 16]


def test_similar_texts_are_closer_than_unrelated_ones():
    a, b, c = BuiltinEmbedder(256).embed_sync([
        "The cat sat on the mat and purred.",
        "A cat was sitting on the mat, purring.",
        "Quarterly revenue grew by ten percent.",
    ])
    assert cosine(a, b) > cosine(a, c) + 0.2


def test_word_stems_share_features_through_character_trigrams():
    a, b, c = BuiltinEmbedder(256).embed_sync(
        ["Indexing documents into the search index", "index the document", "Quarterly revenue grew"]
    )
    assert cosine(a, b) > cosine(a, c) + 0.2


def test_cjk_text_is_compared_by_characters_and_bigrams():
    a, b, c = BuiltinEmbedder(256).embed_sync(["向量数据库用于存储嵌入", "嵌入存储在向量数据库中", "今天天气很好"])
    assert cosine(a, b) > cosine(a, c) + 0.3


def test_input_is_cut_to_max_input_chars():
    embedder = BuiltinEmbedder(64, max_input_chars=10)
    assert embedder.embed_sync(["0123456789 tail words"]) == embedder.embed_sync(["0123456789"])


async def test_async_embed_matches_embed_sync_and_keeps_order():
    embedder = BuiltinEmbedder(32)
    texts = [f"text number {i}" for i in range(150)]  # more than one thread chunk
    assert await embedder.embed(texts, budget="background") == embedder.embed_sync(texts)


async def test_async_embed_runs_under_the_budget_limiter():
    """G5: CPU work runs in a worker thread, bounded by the caller's budget."""
    budgets = Budgets(interactive=1, background=1)
    embedder = BuiltinEmbedder(32, budgets=budgets)
    async with budgets.background:  # the only background slot is taken
        with trio.move_on_after(0.2) as scope:
            await embedder.embed(["waits for a slot"], budget="background")
        assert scope.cancelled_caught
        assert await embedder.embed(["interactive is free"], budget="interactive")


async def test_async_embed_of_nothing():
    embedder = BuiltinEmbedder(8)
    assert await embedder.embed([], budget="interactive") == []
    await embedder.aclose()
    await embedder.aclose()


def test_dim_must_be_positive():
    with pytest.raises(ValueError):
        BuiltinEmbedder(0)


async def test_passages_embedded_in_worker_processes_are_the_same_vectors_and_queries_stay_here(monkeypatch):
    """``everos cascade rebuild`` embeds in a worker process (use_workers): its CPU leaves the
    GIL of the indexing process; the vectors are exactly those of a thread."""
    from everos.providers import _builtin_embedder
    from everos.workers import open_cpu_workers

    embedder = BuiltinEmbedder(64)
    texts = [f"topic {n}: parsing command line arguments" for n in range(300)]  # two process calls
    here: list[int] = []
    real_sync = BuiltinEmbedder.embed_sync
    monkeypatch.setattr(BuiltinEmbedder, "embed_sync",
                        lambda self, chunk: here.append(len(chunk)) or real_sync(self, chunk))
    async with open_cpu_workers(workers=1) as pool:
        embedder.use_workers(pool, memory_mb=2048)
        with trio.fail_after(60):
            in_workers = await embedder.embed(texts, budget="background")
            query = await embedder.embed(["a query"], budget="interactive", purpose="query")
        snapshot = pool.snapshot()
    assert here == [1]  # only the query was embedded in this process
    assert snapshot.killed == snapshot.crashed == 0
    assert in_workers == _builtin_embedder.embed_texts(64, 8000, texts) == real_sync(embedder, texts)
    assert query == real_sync(embedder, ["a query"])
