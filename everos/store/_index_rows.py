"""The rows the cascade hands to the search index, and the interface it hands them through.

The cascade (``everos.cascade``) turns a document directory into :class:`TopicRow` and
:class:`FactRow` values; the index (``everos.store._lancedb``) stores them. They meet only here, so
either side can be tested with a fake of the other.

The unit of indexing is one document: ``replace_document`` makes the index hold exactly the given
topics and facts for that ``doc_id`` (rows of the document that are not given are removed), so
running it twice is harmless (G8) and a deleted topic never lingers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["FactRow", "IndexSink", "IndexedVectors", "TopicRow"]


@dataclass(frozen=True)
class TopicRow:
    """One topic (EverOS's ``knowledge_topic`` columns, everos's vector width).

    ``summary_tokens`` and ``content_tokens`` are space-joined search tokens (lowercased,
    CJK-segmented); ``vector`` embeds the summary (with the topic name). ``content_sha256`` is the
    digest the cascade uses to skip unchanged topics.
    """

    id: str
    doc_id: str
    app_id: str
    project_id: str
    category_id: str
    topic_name: str
    topic_path: str
    depth: int
    parent_node_id: str
    summary: str
    summary_tokens: str
    content_tokens: str
    content_labels: tuple[str, ...]
    md_path: str
    content_sha256: str
    vector: tuple[float, ...]
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class FactRow:
    """One atomic fact of a topic: a short self-contained statement, embedded on its own."""

    id: str  # f"{topic_id}_f{fact_index}"
    topic_id: str
    doc_id: str
    app_id: str
    project_id: str
    fact_index: int
    text: str
    text_tokens: str
    md_path: str
    vector: tuple[float, ...] = field(repr=False, default=())


@dataclass(frozen=True)
class IndexedVectors:
    """What the index holds of one topic's vectors: its ``content_sha256``, its vector and its
    facts' vectors in ``fact_index`` order (each empty where a row has none)."""

    content_sha256: str
    vector: tuple[float, ...]
    fact_vectors: tuple[tuple[float, ...], ...]


class IndexSink(Protocol):
    """What the cascade needs from the index. Every method is a checkpoint with a deadline."""

    async def replace_document(self, doc_id: str, topics: list[TopicRow], facts: list[FactRow]) -> None:
        """Make the index hold exactly ``topics`` and ``facts`` for ``doc_id``; returns once committed."""

    async def delete_document(self, doc_id: str) -> int:
        """Remove every topic and fact of ``doc_id``; return how many topic rows were removed."""

    async def topic_hashes(self, doc_id: str) -> dict[str, str]:
        """``{topic_id: content_sha256}`` of the topics indexed for ``doc_id`` (empty if none)."""

    async def indexed_vectors(self, doc_id: str) -> dict[str, IndexedVectors]:
        """``{topic_id: IndexedVectors}`` of the topics indexed for ``doc_id`` (empty if none): the
        cascade reuses the vectors of topics whose content did not change."""
