"""From a document directory's markdown to the rows of the search index. Pure functions only.

A document directory (``<app>/<project>/knowledge/<Category>/<Title>_<doc_id>``, relative to the
root, ``/``-separated) is read once into :class:`DocumentFiles`; :func:`parse_document` turns it
into a :class:`ParsedDocument`: its rows (the projection of the document, topic 0 built from
``index.md``, then every topic file; :mod:`everos.knowledge._projection`) and the files'
signature. :func:`topic_row` and :func:`fact_rows` build the :class:`~everos.store._index_rows.TopicRow`
and :class:`~everos.store._index_rows.FactRow` values the index stores, from the parts the indexer
computed (tokens, facts, vectors).

Topic 0 is the document itself: it goes to SQLite (list/get) but not to the topic index, as in
EverOS, whose ``knowledge_topic`` table holds topic files only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from everos.errors import InvalidInput
from everos.knowledge._fingerprint import document_signature, is_markdown_name
from everos.knowledge._layout import (
    INDEX_FILENAME,
    ORIGINAL_DIRNAME,
    app_id_from_dir,
    md_kind,
    parse_document_path,
    project_id_from_dir,
)
from everos.knowledge._markdown import parse_index_md, parse_topic_md
from everos.knowledge._models import KnowledgeDocument, KnowledgeTopic
from everos.knowledge._text import searchable_text
from everos.knowledge._projection import DocumentRows, content_from_markdown, project
from everos.store._index_rows import FactRow, TopicRow

__all__ = [
    "GONE",
    "DocumentFiles",
    "EMBEDDING_TEXT_VERSION",
    "DocumentLocation",
    "ParsedDocument",
    "TopicParts",
    "chunks",
    "document_rows",
    "embedder_identity",
    "embedding_text",
    "fact_rows",
    "is_document_file",
    "locate_document",
    "parse_document",
    "topic_content_sha256",
    "topic_row",
    "topic_tokens",
]

T = TypeVar("T")

GONE = "gone"
"""The fingerprint of a document directory that does not exist (or has no ``index.md``)."""


@dataclass(frozen=True)
class DocumentLocation:
    """Where a document directory sits: its scope ids and its doc id, from the path alone."""

    doc_dir: str
    app_id: str
    project_id: str
    doc_id: str


@dataclass(frozen=True)
class DocumentFiles:
    """The markdown files of one document directory as read from disk.

    ``texts`` maps a file name (``index.md``, ``<n>_<slug>.md``) to its text; ``fingerprint`` is
    :func:`~everos.knowledge._fingerprint.fingerprint_digest` of the files as stat'ed *before*
    they were read, so a change made while reading shows up as a difference at the next scan. ``original_name`` is the first file
    in ``_original/``, if any.
    """

    doc_dir: str
    fingerprint: str
    texts: Mapping[str, str]
    original_name: str | None = None


@dataclass(frozen=True)
class ParsedDocument:
    """A document directory as the index sees it: its ``rows`` (the projection of its markdown,
    or the rows its writer saved when the files are still the ones it wrote) and the
    ``signature`` (:func:`~everos.knowledge._fingerprint.document_signature`) of its files.
    ``topics`` holds topic 0 (from ``index.md``) first, then the topic files by ``topic_index``;
    ``topic_paths`` maps a topic index >= 1 to its file's path relative to the root."""

    location: DocumentLocation
    rows: DocumentRows
    signature: str

    @property
    def document(self) -> KnowledgeDocument:
        return self.rows.document

    @property
    def topics(self) -> tuple[KnowledgeTopic, ...]:
        return self.rows.topics

    @property
    def topic_paths(self) -> Mapping[int, str]:
        return self.rows.topic_paths

    @property
    def doc_id(self) -> str:
        return self.location.doc_id

    @property
    def md_path(self) -> str:
        """``index.md`` relative to the root."""
        return self.rows.md_path

    @property
    def indexed_topics(self) -> tuple[KnowledgeTopic, ...]:
        """The topics that go to the topic index: every topic file (topic 0 excluded)."""
        return self.topics[1:]


@dataclass(frozen=True)
class TopicParts:
    """What the indexer computed for one topic: tokens, facts and vectors.

    ``fact_texts``, ``fact_tokens`` and ``fact_vectors`` are parallel; tokens are space-joined.
    """

    summary_tokens: str
    content_tokens: str
    vector: Sequence[float]
    fact_texts: Sequence[str]
    fact_tokens: Sequence[str]
    fact_vectors: Sequence[Sequence[float]]


def locate_document(doc_dir: str) -> DocumentLocation:
    """The scope and doc id of a document directory path relative to the root.

    Raises:
        InvalidInput: the path is not ``<app>/<project>/knowledge/<Category>/<Title>_<doc_id>``
            or its scope directories map to no valid scope id.
    """
    found = parse_document_path(f"{doc_dir}/{INDEX_FILENAME}")
    if found is None:
        raise InvalidInput(f"{doc_dir!r} is not a knowledge document directory", field="doc_dir")
    return DocumentLocation(
        doc_dir=doc_dir,
        app_id=app_id_from_dir(found.app_dir),
        project_id=project_id_from_dir(found.project_dir),
        doc_id=found.doc_id,
    )


def is_document_file(doc_dir: str, name: str) -> bool:
    """True for ``index.md`` and topic files (``[0-9]*.md``) of a document directory: the files
    the cascade reads (EverOS's cascade globs, :func:`~everos.knowledge.md_kind`), the files a
    fingerprint covers."""
    return md_kind(f"{doc_dir}/{name}") is not None and is_markdown_name(name)


def parse_document(files: DocumentFiles) -> ParsedDocument:
    """Parse a document directory's files (see the module docstring).

    Topic 0 is built from ``index.md``: named after the title, its summary is the document
    summary, its children are the topics whose parent is 0. Topic files of other documents,
    duplicate topic indexes and an ``index.md`` whose ``doc_id`` is not the directory's are
    refused rather than guessed at.

    Raises:
        InvalidInput: no ``index.md``, a file that does not parse, or ids that disagree; the
            message names the file.
    """
    location = locate_document(files.doc_dir)
    index_text = files.texts.get(INDEX_FILENAME)
    if index_text is None:
        raise InvalidInput(f"{files.doc_dir}/{INDEX_FILENAME} is missing", field="index.md")
    document = _parse_file(files.doc_dir, INDEX_FILENAME, parse_index_md, index_text)
    if document.doc_id != location.doc_id:
        raise InvalidInput(
            f"{files.doc_dir}/{INDEX_FILENAME}: doc_id {document.doc_id} does not match the directory's "
            f"{location.doc_id}", field="doc_id")
    topics: dict[int, KnowledgeTopic] = {}
    names: dict[int, str] = {}
    for name in sorted(files.texts):
        if name == INDEX_FILENAME:
            continue
        topic = _parse_file(files.doc_dir, name, parse_topic_md, files.texts[name])
        if topic.doc_id != location.doc_id:
            raise InvalidInput(f"{files.doc_dir}/{name}: belongs to document {topic.doc_id}", field="doc_id")
        if topic.topic_index in topics:
            raise InvalidInput(
                f"{files.doc_dir}/{name}: topic_index {topic.topic_index} is also used by "
                f"{names[topic.topic_index]}", field="topic_index")
        topics[topic.topic_index] = topic
        names[topic.topic_index] = name
    original = f"{files.doc_dir}/{ORIGINAL_DIRNAME}/{files.original_name}" if files.original_name else None
    rows = project(content_from_markdown(document, topics.values()), doc_dir=files.doc_dir, app_id=location.app_id,
                   project_id=location.project_id, topic_files=names, original_path=original)
    return ParsedDocument(location, rows, document_signature(files.doc_dir, files.texts))


def _parse_file(doc_dir: str, name: str, parse, text: str):
    try:
        return parse(text)
    except InvalidInput as exc:
        raise InvalidInput(f"{doc_dir}/{name}: {exc.message}", field=exc.field) from None


def topic_content_sha256(topic: KnowledgeTopic, md_path: str) -> str:
    """The digest that says whether a topic must be indexed again.

    Over EverOS's fields (summary, topic_name, topic_path, category_id, depth, body) plus what
    else ends up in the row: content labels, parent and the file's path. Two topics with the
    same digest give the same row, vector and facts.
    """
    digest = hashlib.sha256()
    for part in (topic.summary, topic.topic_name, topic.topic_path, topic.category_id, str(topic.depth),
                 topic.content, "\x1f".join(topic.content_labels), topic.parent_topic_id or "", md_path):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()


EMBEDDING_TEXT_CHARS = 1500
"""How much of a topic its vector reads: about 400 English tokens, near e5's 512-token window."""
EMBEDDING_TEXT_VERSION = 2
"""Bumped when :func:`embedding_text` changes, so vectors of the old texts are made again."""


def embedding_text(topic: KnowledgeTopic) -> str:
    """What a topic's vector embeds: its path (document title > section > ... > name), then the
    words of its content a reader sees (:func:`~everos.knowledge._text.searchable_text`: no
    markup, badges, HTML or link definitions), else its summary; at most
    :data:`EMBEDDING_TEXT_CHARS` characters of text."""
    body = searchable_text(topic.content, EMBEDDING_TEXT_CHARS) or topic.summary
    return f"{topic.topic_path or topic.topic_name}\n{body}".strip()


def topic_row(
    parsed: ParsedDocument, topic: KnowledgeTopic, parts: TopicParts, *, content_sha256: str,
    created_at: float, updated_at: float,
) -> TopicRow:
    """The index row of one topic file (``topic_index`` >= 1)."""
    location = parsed.location
    return TopicRow(
        id=topic.topic_id,
        doc_id=location.doc_id,
        app_id=location.app_id,
        project_id=location.project_id,
        category_id=topic.category_id,
        topic_name=topic.topic_name,
        topic_path=topic.topic_path,
        depth=topic.depth,
        parent_node_id=topic.parent_topic_id or "",  # EverOS stores "" when there is none
        summary=topic.summary,
        summary_tokens=parts.summary_tokens,
        content_tokens=parts.content_tokens,
        content_labels=tuple(topic.content_labels),
        md_path=parsed.topic_paths[topic.topic_index],
        content_sha256=content_sha256,
        vector=tuple(parts.vector),
        created_at=created_at,
        updated_at=updated_at,
    )


def fact_rows(parsed: ParsedDocument, topic: KnowledgeTopic, parts: TopicParts) -> list[FactRow]:
    """The atomic-fact rows of one topic, numbered from 0 (``{topic_id}_f{n}``)."""
    location = parsed.location
    return [
        FactRow(
            id=f"{topic.topic_id}_f{index}",
            topic_id=topic.topic_id,
            doc_id=location.doc_id,
            app_id=location.app_id,
            project_id=location.project_id,
            fact_index=index,
            text=text,
            text_tokens=tokens,
            md_path=parsed.topic_paths[topic.topic_index],
            vector=tuple(vector),
        )
        for index, (text, tokens, vector) in enumerate(zip(parts.fact_texts, parts.fact_tokens,
                                                          parts.fact_vectors, strict=True))
    ]


async def topic_tokens(
    topics: Sequence[KnowledgeTopic], facts_of: Mapping[str, tuple[list[str], str]],
    tokenize: Callable[[list[str]], Awaitable[list[str]]],
) -> dict[str, tuple[str, str, list[str]]]:
    """``{topic_id: (summary_tokens, content_tokens, [fact_tokens])}`` from one ``tokenize`` call
    (texts to their space-joined tokens) over every topic's name and summary, content and facts."""
    texts: list[str] = []
    for t in topics:
        texts += [f"{t.topic_name}\n{t.summary}", t.content, *facts_of[t.topic_id][0]]
    joined = await tokenize(texts)
    tokens, position = {}, 0
    for t in topics:
        count = len(facts_of[t.topic_id][0])
        tokens[t.topic_id] = (joined[position], joined[position + 1], joined[position + 2:position + 2 + count])
        position += 2 + count
    return tokens


def document_rows(parsed: ParsedDocument, derived: Mapping[str, Any],
                  tokens: Mapping[str, tuple[str, str, Sequence[str]]], digests: Mapping[str, str],
                  updated_at: float) -> tuple[list[TopicRow], list[FactRow]]:
    """Every indexed topic's row and its facts' rows, from what the indexer derived (``derived``:
    the cache entry of each topic, with its vectors and facts; ``tokens``: summary, content and
    fact tokens). Blocking: a long document's hundreds of topics and thousands of facts take
    tens of milliseconds, which the event loop must not spend (G5); the indexer runs it in a
    thread."""
    topic_rows: list[TopicRow] = []
    all_facts: list[FactRow] = []
    for topic in parsed.indexed_topics:
        cached = derived[topic.topic_id]
        summary_tokens, content_tokens, fact_tokens = tokens[topic.topic_id]
        parts = TopicParts(summary_tokens, content_tokens, cached.vector, cached.facts, fact_tokens,
                           cached.fact_vectors)
        topic_rows.append(topic_row(parsed, topic, parts, content_sha256=digests[topic.topic_id],
                                    created_at=cached.created_at, updated_at=updated_at))
        all_facts.extend(fact_rows(parsed, topic, parts))
    return topic_rows, all_facts


def chunks(items: Sequence[T], size_of: Callable[[T], int], max_size: int) -> list[list[T]]:
    """Consecutive groups of ``items`` whose sizes add up to at most ``max_size`` (an item
    larger than that gets a group of its own)."""
    groups: list[list[T]] = []
    total = 0
    for item in items:
        size = size_of(item)
        if not groups or total + size > max_size:
            groups.append([])
            total = 0
        groups[-1].append(item)
        total += size
    return groups


def embedder_identity(embedder: Any) -> str:
    """Which embedder made a vector, from which texts: cached vectors of another embedder (or
    prefixes, or :func:`embedding_text` version) are not reused."""
    prefixes = getattr(embedder, "prefixes", None)
    extra = f":{prefixes['query']!r}:{prefixes['passage']!r}" if prefixes and any(prefixes.values()) else ""
    return f"{type(embedder).__name__}:{getattr(embedder, 'model', '')}:{embedder.dim}:t{EMBEDDING_TEXT_VERSION}{extra}"
