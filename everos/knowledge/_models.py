"""The knowledge records: what an extractor returns, and the flat topics written to disk.

An extractor returns an :class:`ExtractedDocument`: a tree of :class:`TopicNode` under a synthetic
root that carries the title and the document summary. :func:`flatten` turns that tree into the
EverOS 1.x record list (EverOS reference §7): depth-first, root first, so the root is
``topic_index`` 0 at depth 0, and ``topic_id = f"{doc_id}_{topic_index}"``.

The id rules of the EverOS API live here too (reference §2.3), with validators that raise
:class:`~everos.errors.InvalidInput` naming the offending field. Everything in this module is pure.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from everos.errors import InvalidInput

__all__ = [
    "DOC_ID_RE",
    "OTHERS_CATEGORY",
    "SCOPE_ID_RE",
    "SORT_COLUMNS",
    "TOPIC_ID_RE",
    "ExtractedDocument",
    "KnowledgeDocument",
    "KnowledgeTopic",
    "TopicNode",
    "document_record",
    "flatten",
    "new_doc_id",
    "topic_facts",
    "split_topic_id",
    "topic_count",
    "validate_app_id",
    "validate_doc_id",
    "validate_project_id",
    "validate_scope_id",
    "validate_topic_id",
]

# EverOS's patterns, verbatim. Match them with ``fullmatch`` (as the validators below do): in Python
# ``$`` also matches before a trailing newline, so ``.match("d_0123456789ab\n")`` would succeed.
DOC_ID_RE: Final = re.compile(r"^d_[a-f0-9]{12,32}$")
# The index is a row number of at most _TOPIC_INDEX_MAX_DIGITS digits (int() refuses more than
# 4,300 digits with a ValueError; the OpenAPI document carries this pattern).
TOPIC_ID_RE: Final = re.compile(r"^(d_[a-f0-9]{12,32})_(\d{1,9})$")
# EverOS's PathSafeId, but not starting with a dot: a dot directory is hidden from scans and
# everos keeps its own state in ``<root>/.index`` and ``<root>/.tmp`` (a deliberate difference).
SCOPE_ID_RE: Final = re.compile(r"^[a-zA-Z0-9_@+-][a-zA-Z0-9_.@+-]*$")

OTHERS_CATEGORY: Final = "Others"
# The document fields a listing may sort by (EverOS's ``sort_by``).
SORT_COLUMNS: Final = ("created_at", "updated_at", "title")
"""The category EverOS gives a document nothing else fits (and a node without a category)."""

# Most digits of a topic id's index (EverOS's pattern says \d+; a document has far fewer topics).
_TOPIC_INDEX_MAX_DIGITS: Final = 9
# Longest scope id accepted: one path component on every common filesystem.
_SCOPE_ID_MAX_CHARS: Final = 255
# 1.5.1 reserves the on-disk names of the default scope, so the dir -> id mapping stays injective.
_RESERVED_SCOPE_IDS: Final = {"app_id": "default_app", "project_id": "default_project"}


@dataclass(frozen=True)
class TopicNode:
    """One node of an extracted topic tree.

    ``content`` is the node's own prose (the body of its markdown file), not its children's.
    ``facts`` are not written to markdown: they travel with the rows (``DocumentRows.facts``).
    """

    name: str
    summary: str
    content: str
    content_labels: tuple[str, ...] = ()
    children: tuple[TopicNode, ...] = ()
    facts: tuple[str, ...] = ()
    """Atomic facts the extractor gave with the topic (the LLM's, with ``[cascade] llm_facts =
    "with-extraction"``); empty when it gave none."""


@dataclass(frozen=True)
class ExtractedDocument:
    """What an extractor returns for one document.

    ``root`` is the synthetic root node: its name is the title and its summary the document
    summary; its ``content`` is not written anywhere (EverOS writes topic 0 as ``index.md``, whose
    body is the summary), so extractors put all prose into topics. ``notes`` are short remarks for
    logs and job status (for example "merged 3,000 paragraphs into 200 topics"). ``extractor``
    says which extractor made it: ``llm``, ``builtin``, or ``builtin (llm fallback: <why>)``.
    ``facts_given``: the extractor was asked for every topic's facts and answered them (a topic's
    empty ``facts`` is then its answer, not a gap); see :func:`topic_facts`.
    """

    language: str
    summary: str
    keywords: tuple[str, ...]
    category_id: str
    root: TopicNode
    notes: tuple[str, ...] = ()
    extractor: str = "builtin"
    facts_given: bool = False


@dataclass(frozen=True)
class KnowledgeTopic:
    """One flattened topic, the EverOS ``KnowledgeMemory`` record (reference §7).

    ``parent_index`` is ``None`` for the root only; depth-1 topics have ``parent_index == 0``.
    """

    doc_id: str
    topic_index: int
    topic_id: str
    topic_name: str
    topic_path: str
    depth: int
    summary: str
    content: str
    content_labels: tuple[str, ...]
    parent_index: int | None
    children_index: tuple[int, ...]
    category_id: str

    @property
    def parent_topic_id(self) -> str | None:
        """EverOS's ``parent_node_id``: ``None`` at depth <= 1, else ``{doc_id}_{parent_index}``."""
        if self.depth <= 1 or self.parent_index is None:
            return None
        return f"{self.doc_id}_{self.parent_index}"

    @property
    def children_topic_ids(self) -> tuple[str, ...]:
        """EverOS's ``children_node_ids``, in DFS order."""
        return tuple(f"{self.doc_id}_{i}" for i in self.children_index)


@dataclass(frozen=True)
class KnowledgeDocument:
    """The document record behind ``index.md`` (EverOS reference §4, §5.2).

    ``language`` and ``keywords`` are everos additions; EverOS readers ignore them.
    """

    doc_id: str
    title: str
    category_id: str
    summary: str
    source_name: str | None = None
    source_type: str | None = None
    language: str = ""
    keywords: tuple[str, ...] = ()


def document_record(
    doc_id: str,
    title: str,
    extracted: ExtractedDocument,
    *,
    source_name: str | None = None,
    source_type: str | None = None,
) -> KnowledgeDocument:
    """Return the :class:`KnowledgeDocument` of an extraction (its root summary is the body)."""
    return KnowledgeDocument(
        doc_id=doc_id,
        title=title,
        category_id=extracted.category_id or OTHERS_CATEGORY,
        summary=extracted.summary,
        source_name=source_name,
        source_type=source_type,
        language=extracted.language,
        keywords=tuple(extracted.keywords),
    )


def flatten(doc_id: str, title: str, extracted: ExtractedDocument) -> list[KnowledgeTopic]:
    """Flatten the topic tree depth-first, root first (EverOS reference §7).

    The root becomes ``topic_index`` 0 at depth 0, named ``title`` with the document summary.
    ``topic_path`` joins the names from the title down (``"Title > A > A.1"``). Every topic gets
    the document's category (``Others`` when empty). Iterative, so a deep tree cannot exhaust the
    recursion limit.
    """
    category_id = extracted.category_id or OTHERS_CATEGORY
    root = extracted.root
    nodes: list[TopicNode] = []
    depths: list[int] = []
    parents: list[int | None] = []
    paths: list[str] = []
    children: list[list[int]] = []
    for index, (node, depth, parent) in enumerate(_depth_first(root)):
        name = title if parent is None else node.name
        path = name if parent is None else f"{paths[parent]} > {name}"
        nodes.append(node)
        depths.append(depth)
        parents.append(parent)
        paths.append(path)
        children.append([])
        if parent is not None:
            children[parent].append(index)
    return [
        KnowledgeTopic(
            doc_id=doc_id,
            topic_index=i,
            topic_id=f"{doc_id}_{i}",
            topic_name=title if i == 0 else node.name,
            topic_path=paths[i],
            depth=depths[i],
            summary=extracted.summary if i == 0 else node.summary,
            content=node.content,
            content_labels=tuple(node.content_labels),
            parent_index=parents[i],
            children_index=tuple(children[i]),
            category_id=category_id,
        )
        for i, node in enumerate(nodes)
    ]


def topic_facts(doc_id: str, extracted: ExtractedDocument) -> dict[str, tuple[str, ...]]:
    """``{topic_id: facts}`` of every topic but the root, in :func:`flatten`'s order and ids, when
    the extractor gave facts (``facts_given``); else empty."""
    if not extracted.facts_given:
        return {}
    nodes = _depth_first(extracted.root)
    next(nodes)  # the root, topic 0
    return {f"{doc_id}_{index}": tuple(node.facts) for index, (node, _, _) in enumerate(nodes, start=1)}


def _depth_first(root: TopicNode) -> Iterator[tuple[TopicNode, int, int | None]]:
    """``(node, depth, parent's index)`` of every node, root first, depth-first with children in
    order: a node's index is its place in this sequence. Iterative, so a deep tree cannot exhaust
    the recursion limit."""
    stack: list[tuple[TopicNode, int, int | None]] = [(root, 0, None)]
    index = 0
    while stack:
        node, depth, parent = stack.pop()
        yield node, depth, parent
        stack.extend((child, depth + 1, index) for child in reversed(node.children))
        index += 1


def topic_count(topics: list[KnowledgeTopic] | tuple[KnowledgeTopic, ...]) -> int:
    """EverOS's ``topic_count``: every node except the root, parents included."""
    return sum(1 for topic in topics if topic.topic_index != 0)


def new_doc_id() -> str:
    """Mint a document id: ``d_`` and 12 hex characters from a uuid4 (EverOS reference §2.3).

    Collisions are the caller's to check; EverOS retries, then falls back to 32 hex characters,
    which :data:`DOC_ID_RE` also accepts.
    """
    return f"d_{uuid.uuid4().hex[:12]}"


def validate_doc_id(value: object, field: str = "doc_id") -> str:
    """Return ``value`` if it is a document id, else raise :class:`InvalidInput` naming ``field``."""
    if not isinstance(value, str) or not DOC_ID_RE.fullmatch(value):
        raise InvalidInput(f"{field} must match ^d_[a-f0-9]{{12,32}}$", field=field)
    return value


def validate_topic_id(value: object, field: str = "topic_id") -> str:
    """Return ``value`` if it is a topic id (:data:`TOPIC_ID_RE`), else raise
    :class:`InvalidInput` naming ``field``."""
    if isinstance(value, str) and TOPIC_ID_RE.fullmatch(value):
        return value
    if isinstance(value, str) and re.fullmatch(r"d_[a-f0-9]{12,32}_\d+", value):
        raise InvalidInput(f"{field} has a topic index of more than {_TOPIC_INDEX_MAX_DIGITS} digits", field=field)
    raise InvalidInput(f"{field} must match ^d_[a-f0-9]{{12,32}}_\\d+$", field=field)


def split_topic_id(topic_id: str, field: str = "topic_id") -> tuple[str, int]:
    """Return ``(doc_id, topic_index)`` of a topic id; raise :class:`InvalidInput` naming ``field``
    if malformed."""
    match = TOPIC_ID_RE.fullmatch(validate_topic_id(topic_id, field))
    assert match is not None  # validate_topic_id matched the same pattern
    return match.group(1), int(match.group(2))


def validate_scope_id(value: object, field: str) -> str:
    """Return ``value`` if it is a path-safe scope id (EverOS ``PathSafeId``).

    Allowed: ``[a-zA-Z0-9_.@+-]``, 1 to 255 characters, not starting with ``.`` (so not ``.``
    or ``..`` either, nor ``.index``). Raises :class:`InvalidInput` naming ``field`` otherwise.
    """
    if not isinstance(value, str) or not SCOPE_ID_RE.fullmatch(value) or len(value) > _SCOPE_ID_MAX_CHARS:
        raise InvalidInput(
            f"{field} must be 1-{_SCOPE_ID_MAX_CHARS} characters of [a-zA-Z0-9_.@+-], not starting with '.'",
            field=field,
        )
    return value


def validate_app_id(value: object) -> str:
    """Validate an ``app_id``; ``default_app`` is reserved (the on-disk name of ``default``)."""
    return _validate_reserved(validate_scope_id(value, "app_id"), "app_id")


def validate_project_id(value: object) -> str:
    """Validate a ``project_id``; ``default_project`` is reserved (the on-disk name of ``default``)."""
    return _validate_reserved(validate_scope_id(value, "project_id"), "project_id")


def _validate_reserved(value: str, field: str) -> str:
    reserved = _RESERVED_SCOPE_IDS[field]
    if value == reserved:
        raise InvalidInput(f"{field} {reserved!r} is reserved; use 'default'", field=field)
    return value
