"""One document -> its SQLite rows: the projection behind every write of ``knowledge_documents``
and ``knowledge_topics``.

A document reaches the rows from one of two representations: an extraction (ingest's publish),
or its markdown parsed back (the cascade, PATCH). Both become one :class:`DocumentContent` (the
document record and its topics, topic 0 first, as the markdown says them), and :func:`project`
places it (scope, directory, original file, upload digest, extractor) as :class:`DocumentRows`:
the document row and the topic rows, which
:func:`~everos.ingest._repository.save_rows` stores exactly. Nothing else writes new content to
those rows: a failed PATCH puts back the rows it snapshotted (``ingest/_edit.py`` ``restore_rows``),
and a DELETE removes them.

::

    extraction ── content_from_extraction ─┐
    markdown ─ parse ─ content_from_markdown ┴─> DocumentContent ── project ──> DocumentRows ──> save_rows

:func:`content_from_extraction` gives what the rendered files parse back to: topic 0 has no
content of its own, and bodies (the summary in ``index.md``, a topic's prose) lose their
surrounding newlines and end their lines with LF, as a parse leaves them. So an upload's rows are
the rows the cascade would build from its markdown, and the cascade need not build them again;
:func:`reads_back` says when that holds (YAML reads U+0085 in a frontmatter value back as a
line break or a space). Pure functions only.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from everos.knowledge._layout import INDEX_FILENAME, topic_filename
from everos.knowledge._models import (
    ExtractedDocument,
    KnowledgeDocument,
    KnowledgeTopic,
    document_record,
    flatten,
    split_topic_id,
    topic_count,
)

__all__ = [
    "DocumentContent",
    "DocumentRows",
    "content_from_extraction",
    "content_from_markdown",
    "project",
    "reads_back",
]

# A character YAML does not read back as written inside a frontmatter value.
_NOT_READ_BACK = "\x85"


@dataclass(frozen=True)
class DocumentContent:
    """One document as its markdown says it: the ``index.md`` record and every topic, topic 0
    (the document itself) first, then the topic files by ``topic_index``."""

    document: KnowledgeDocument
    topics: tuple[KnowledgeTopic, ...]

    @property
    def doc_id(self) -> str:
        return self.document.doc_id

    @property
    def topic_count(self) -> int:
        """EverOS's ``topic_count``: every topic but topic 0."""
        return topic_count(self.topics)


@dataclass(frozen=True)
class DocumentRows:
    """The rows of one document: :meth:`document_row` and :meth:`topic_rows`.

    ``doc_dir`` is the document directory relative to the root (``/``-separated);
    ``topic_paths`` maps a topic index >= 1 to its file's path relative to the root. An
    ``extractor`` of None keeps the one stored (only ingest knows which extractor ran).
    """

    content: DocumentContent
    doc_dir: str
    app_id: str
    project_id: str
    topic_paths: Mapping[int, str]
    original_path: str | None = None
    content_sha256: str | None = None
    extractor: str | None = None

    @property
    def document(self) -> KnowledgeDocument:
        return self.content.document

    @property
    def topics(self) -> tuple[KnowledgeTopic, ...]:
        return self.content.topics

    @property
    def md_path(self) -> str:
        """``index.md`` relative to the root."""
        return f"{self.doc_dir}/{INDEX_FILENAME}"

    def document_row(self) -> dict[str, Any]:
        """The ``knowledge_documents`` columns (without the times, which the store keeps)."""
        doc = self.document
        return {
            "doc_id": doc.doc_id, "app_id": self.app_id, "project_id": self.project_id,
            "category_id": doc.category_id, "title": doc.title, "summary": doc.summary,
            "source_name": doc.source_name, "source_type": doc.source_type, "language": doc.language,
            "keywords": json.dumps(list(doc.keywords), ensure_ascii=False), "md_path": self.md_path,
            "original_path": self.original_path, "content_sha256": self.content_sha256,
            "topic_count": self.content.topic_count, "extractor": self.extractor,
        }

    def topic_rows(self) -> list[dict[str, Any]]:
        """The ``knowledge_topics`` columns of every topic, topic 0 first (without the times)."""
        doc_id = self.content.doc_id
        return [{
            "node_id": t.topic_id, "doc_id": doc_id, "app_id": self.app_id, "project_id": self.project_id,
            "category_id": t.category_id, "topic_index": t.topic_index, "topic_name": t.topic_name,
            "topic_path": t.topic_path, "depth": t.depth,
            "parent_node_id": t.parent_topic_id,  # EverOS: null at depth <= 1
            "children_node_ids": json.dumps(list(t.children_topic_ids)), "summary": t.summary,
            "content": t.content, "content_labels": json.dumps(list(t.content_labels), ensure_ascii=False),
            "md_path": self.topic_paths.get(t.topic_index),
        } for t in self.topics]

    @classmethod
    def from_stored(cls, document_row: Mapping[str, Any], topic_rows: Sequence[Mapping[str, Any]]) -> DocumentRows:
        """The rows as :meth:`document_row` and :meth:`topic_rows` wrote them, read back (rows
        of a ``sqlite3.Row`` or a mapping), so that ``from_stored`` of stored rows stores them
        again unchanged."""
        doc_id = document_row["doc_id"]
        document = KnowledgeDocument(
            doc_id=doc_id, title=document_row["title"], category_id=document_row["category_id"],
            summary=document_row["summary"], source_name=document_row["source_name"],
            source_type=document_row["source_type"], language=document_row["language"],
            keywords=tuple(json.loads(document_row["keywords"])))
        topics = tuple(_stored_topic(doc_id, row) for row in sorted(topic_rows, key=lambda r: r["topic_index"]))
        return cls(
            content=DocumentContent(document, topics),
            doc_dir=document_row["md_path"].rsplit("/", 1)[0],
            app_id=document_row["app_id"], project_id=document_row["project_id"],
            topic_paths={row["topic_index"]: row["md_path"] for row in topic_rows
                         if row["topic_index"] and row["md_path"] is not None},
            original_path=document_row["original_path"], content_sha256=document_row["content_sha256"],
            extractor=document_row["extractor"])


def _stored_topic(doc_id: str, row: Mapping[str, Any]) -> KnowledgeTopic:
    depth, parent = row["depth"], row["parent_node_id"]
    return KnowledgeTopic(
        doc_id=doc_id, topic_index=row["topic_index"], topic_id=row["node_id"], topic_name=row["topic_name"],
        topic_path=row["topic_path"], depth=depth, summary=row["summary"], content=row["content"],
        content_labels=tuple(json.loads(row["content_labels"])),
        parent_index=split_topic_id(parent)[1] if parent is not None else (0 if depth >= 1 else None),
        children_index=tuple(split_topic_id(child)[1] for child in json.loads(row["children_node_ids"])),
        category_id=row["category_id"])


def content_from_markdown(document: KnowledgeDocument, topics: Iterable[KnowledgeTopic]) -> DocumentContent:
    """The content of an ``index.md`` record and its topic files (distinct topic indexes >= 1;
    the caller checks them). Topic 0 is built from ``index.md``: named after the title, its
    summary is the document summary, its children are the topics whose parent is 0."""
    ordered = sorted(topics, key=lambda topic: topic.topic_index)
    root = KnowledgeTopic(
        doc_id=document.doc_id,
        topic_index=0,
        topic_id=f"{document.doc_id}_0",
        topic_name=document.title,
        topic_path=document.title,
        depth=0,
        summary=document.summary,
        content="",
        content_labels=(),
        parent_index=None,
        children_index=tuple(t.topic_index for t in ordered if t.parent_index == 0),
        category_id=document.category_id,
    )
    return DocumentContent(document, (root, *ordered))


def content_from_extraction(
    doc_id: str, title: str, extracted: ExtractedDocument, *, source_name: str | None = None,
    source_type: str | None = None,
) -> DocumentContent:
    """The content of an extraction as its rendered files
    (:func:`~everos.knowledge.render_document_files`, same arguments) parse back."""
    document = document_record(doc_id, title, extracted, source_name=source_name, source_type=source_type)
    document = dataclasses.replace(document, summary=_as_body(document.summary))
    topics = [dataclasses.replace(topic, content=_as_body(topic.content))
              for topic in flatten(doc_id, title, extracted)[1:]]
    return content_from_markdown(document, topics)


def _as_body(text: str) -> str:
    # What a markdown body reads back as: line ends made LF, surrounding newlines dropped.
    return text.replace("\r\n", "\n").replace("\r", "\n").strip("\n")


def reads_back(content: DocumentContent) -> bool:
    """True when the document's markdown parses back to exactly ``content`` (every frontmatter
    value survives YAML); else the files, not this content, say what the rows are."""
    doc = content.document
    values = [doc.title, doc.category_id, doc.source_name or "", doc.source_type or "", doc.language,
              *doc.keywords]
    for topic in content.topics[1:]:
        values += [topic.topic_name, topic.topic_path, topic.summary, topic.category_id, *topic.content_labels]
    return not any(_NOT_READ_BACK in value for value in values)


def project(
    content: DocumentContent, *, doc_dir: str, app_id: str, project_id: str,
    topic_files: Mapping[int, str] | None = None, original_path: str | None = None,
    content_sha256: str | None = None, extractor: str | None = None,
) -> DocumentRows:
    """The rows of ``content`` in ``doc_dir`` (relative to the root). ``topic_files`` names each
    topic's file (by topic index >= 1); by default the name the renderer gives it."""
    if topic_files is None:
        topic_files = {t.topic_index: topic_filename(t.topic_index, t.topic_name) for t in content.topics[1:]}
    return DocumentRows(
        content=content, doc_dir=doc_dir, app_id=app_id, project_id=project_id,
        topic_paths={index: f"{doc_dir}/{name}" for index, name in topic_files.items()},
        original_path=original_path, content_sha256=content_sha256, extractor=extractor)
