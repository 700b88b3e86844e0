"""Fixtures of the search tests: a real index in ``tmp_path``, the built-in embedder, and a helper
that indexes markdown the way the cascade does (built-in extractor, search tokens, sentence facts,
built-in embeddings).

LanceDB runs in real threads, so these tests use real time (no ``autojump_clock``).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from everos.config import CascadeSettings, LanceDBSettings
from everos.knowledge import DEFAULT_CATEGORIES, KnowledgeTopic, extract_structure, flatten
from everos.providers import BuiltinEmbedder
from everos.search import search_tokens, split_facts
from everos.store.index import IndexStore, IndexWriter
from everos.store._index_rows import FactRow, TopicRow

DIM = 256
FACTS_PER_TOPIC = 8


def doc_id_for(name: str) -> str:
    return "d_" + hashlib.sha256(name.encode()).hexdigest()[:12]


@pytest.fixture
def embedder() -> BuiltinEmbedder:
    return BuiltinEmbedder(DIM)


@pytest.fixture
async def index(tmp_path: Path) -> AsyncIterator[IndexStore]:
    store = await IndexStore.open(tmp_path / "lancedb", dim=DIM, settings=LanceDBSettings(),
                                  limiter=trio.CapacityLimiter(2))
    yield store
    await store.aclose()


@pytest.fixture
async def writer(index: IndexStore, nursery: trio.Nursery) -> IndexWriter:
    index_writer = IndexWriter(index, CascadeSettings())
    await nursery.start(index_writer.run)
    return index_writer


def _rows(
    doc_id: str, title: str, text: str, app_id: str, project_id: str
) -> tuple[list[KnowledgeTopic], list[str], list[tuple[KnowledgeTopic, int, str]]]:
    topics = flatten(doc_id, title, extract_structure(text, title, DEFAULT_CATEGORIES))
    summaries = [f"{topic.topic_name}\n{topic.summary}" for topic in topics]
    facts = [(topic, i, fact) for topic in topics for i, fact in enumerate(split_facts(topic.content, FACTS_PER_TOPIC))]
    return topics, summaries, facts


async def index_markdown(
    writer: IndexWriter,
    embedder: BuiltinEmbedder,
    doc_id: str,
    title: str,
    text: str,
    *,
    app_id: str = "app",
    project_id: str = "proj",
) -> list[KnowledgeTopic]:
    """Index one markdown document as the cascade would; return its topics."""
    topics, summaries, facts = await trio.to_thread.run_sync(_rows, doc_id, title, text, app_id, project_id)
    vectors = await embedder.embed(summaries + [text for _, _, text in facts], budget="background")
    topic_rows = [
        TopicRow(
            id=topic.topic_id, doc_id=doc_id, app_id=app_id, project_id=project_id, category_id=topic.category_id,
            topic_name=topic.topic_name, topic_path=topic.topic_path, depth=topic.depth,
            parent_node_id=topic.parent_topic_id or "", summary=topic.summary,
            summary_tokens=" ".join(search_tokens(summary)), content_tokens=" ".join(search_tokens(topic.content)),
            content_labels=topic.content_labels, md_path=f"{doc_id}/{topic.topic_index}.md",
            content_sha256=hashlib.sha256(topic.content.encode()).hexdigest(), vector=tuple(vector),
            created_at=1.0, updated_at=1.0,
        )
        for topic, summary, vector in zip(topics, summaries, vectors)
    ]
    fact_rows = [
        FactRow(
            id=f"{topic.topic_id}_f{i}", topic_id=topic.topic_id, doc_id=doc_id, app_id=app_id,
            project_id=project_id, fact_index=i, text=text, text_tokens=" ".join(search_tokens(text)),
            md_path=f"{doc_id}/{topic.topic_index}.md", vector=tuple(vector),
        )
        for (topic, i, text), vector in zip(facts, vectors[len(topics):])
    ]
    await writer.replace_document(doc_id, topic_rows, fact_rows)
    return topics
