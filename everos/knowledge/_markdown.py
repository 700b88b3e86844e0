"""The EverOS 1.x knowledge markdown format: render and parse ``index.md`` and topic files.

A file is a YAML frontmatter block (``yaml.safe_dump(sort_keys=False, allow_unicode=True)``, as
EverOS writes it) followed by the body. Keys and their order follow EverOS's writer field by field
(reference §4); :data:`INDEX_KEYS` and :data:`TOPIC_KEYS` list them. The only everos additions are
``language`` and ``keywords`` at the end of ``index.md``, written when known; EverOS's readers
allow extra keys and ignore them.

Topic 0 (the root) has no topic file: it *is* ``index.md``, whose body is the document summary, as
in EverOS. Its ``content`` is not written, so extractors keep all prose in topics >= 1.

Parsing is tolerant of what people do to files (CRLF, a BOM, a missing frontmatter, numbers where
strings were) and strict about what identifies a record (type, ids, indexes): a file it cannot
trust raises :class:`~everos.errors.InvalidInput`. Pure functions only.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from typing import Any, Final

import yaml

from everos.errors import InvalidInput
from everos.knowledge._layout import INDEX_FILENAME, topic_filename
from everos.knowledge._models import (
    DOC_ID_RE,
    OTHERS_CATEGORY,
    TOPIC_ID_RE,
    ExtractedDocument,
    KnowledgeDocument,
    KnowledgeTopic,
    document_record,
    flatten,
    split_topic_id,
)

__all__ = [
    "INDEX_KEYS",
    "TOPIC_KEYS",
    "dump_frontmatter",
    "load_frontmatter_yaml",
    "parse_index_md",
    "parse_markdown",
    "parse_topic_md",
    "render_document_files",
    "render_index_md",
    "render_topic_md",
    "split_frontmatter",
]

INDEX_KEYS: Final = (
    "type", "id", "doc_id", "category_id", "title", "schema_version", "source_name", "source_type",
)
"""EverOS's ``index.md`` keys in writing order; the last two only when set."""

TOPIC_KEYS: Final = (
    "type", "id", "node_id", "doc_id", "category_id", "topic_index", "topic_name", "topic_path",
    "summary", "depth", "parent_node_id", "children_node_ids", "content_labels", "schema_version",
)
"""EverOS's topic file keys in writing order."""

SCHEMA_VERSION: Final = 1
_DELIMITER: Final = "---"
# A frontmatter larger than this is not one everos wrote or a person edited; refuse to parse it.
_FRONTMATTER_MAX_CHARS: Final = 1_048_576
# An integer field (``depth``, ``topic_index``, also as text: ``"3"``) has at most this many digits:
# it must fit SQLite's 64-bit integers, and int() of text refuses more than 4,300.
_INT_MAX_DIGITS: Final = 18
_YAML_ERRORS: Final = (yaml.YAMLError, ValueError, TypeError, RecursionError, OverflowError)
# libyaml's parser with the safe constructor, when PyYAML was built with it (its wheels are):
# about ten times faster than yaml.SafeLoader, and the frontmatter of every file was a third of
# `everos cascade rebuild`'s time. It refuses a little more (an escaped lone surrogate, "\uD800",
# which yaml.SafeLoader reads) and fails otherwise on some input (a raw lone surrogate cannot be
# encoded for it): whatever it does not read, yaml.SafeLoader reads again and decides.
_FAST_SAFE_LOADER: Final = getattr(yaml, "CSafeLoader", None)
# libyaml's emitter with the safe representer, for the same reason on the way out: the topic
# files' frontmatter was 119 ms of an 80 KB upload's 120 files (26 ms with it), more than its
# extraction. Its output is yaml.safe_dump's byte for byte except in double-quoted scalars: it
# folds a long one elsewhere, and quotes what yaml.safe_dump writes plain (NEL, characters past
# U+FFFF); it cannot encode a lone surrogate at all; and it makes a key of 128 bytes or more a
# complex key ("? key"), where yaml.safe_dump counts 128 characters. So an output that has a
# double-quoted scalar or a complex key (a '"' or '?' right after an indicator, ": ", "- ", "? ",
# or at the start of a line; the pattern also takes some plain and single-quoted text, which is
# then only dumped twice), or that it could not make, is made again by yaml.safe_dump.
_FAST_SAFE_DUMPER: Final = getattr(yaml, "CSafeDumper", None)
_DUMP_OPTIONS: Final[dict[str, Any]] = {"sort_keys": False, "allow_unicode": True, "default_flow_style": False}
_MAY_DIFFER: Final = re.compile(r'(?:^[ \t]*|: |- |\? )["?]', re.MULTILINE)


def load_frontmatter_yaml(block: str) -> Any:
    """``block`` read as yaml.SafeLoader reads it (libyaml first, when PyYAML has it; the fuzz
    target ``markdown`` checks that both read the same).

    Raises:
        yaml.YAMLError, ValueError, ...: what yaml.SafeLoader raises for it.
    """
    if _FAST_SAFE_LOADER is not None:
        try:
            return yaml.load(block, Loader=_FAST_SAFE_LOADER)  # noqa: S506 (a safe loader)
        except Exception:  # noqa: BLE001 (yaml.SafeLoader decides, below)
            pass
    return yaml.safe_load(block)


def dump_frontmatter(meta: Mapping[str, Any]) -> str:
    """``---\\n<yaml>---\\n`` with the keys in the given order (EverOS's dump options)."""
    return f"{_DELIMITER}\n{dump_frontmatter_yaml(dict(meta))}{_DELIMITER}\n"


def dump_frontmatter_yaml(meta: dict[str, Any]) -> str:
    """``yaml.safe_dump(meta)`` with EverOS's options, byte for byte; libyaml's emitter makes it
    when PyYAML has it and its output is sure to be the same (see ``_FAST_SAFE_DUMPER``)."""
    if _FAST_SAFE_DUMPER is not None:
        try:
            block = yaml.dump(meta, Dumper=_FAST_SAFE_DUMPER, **_DUMP_OPTIONS)  # noqa: S506 (a safe dumper)
        except Exception:  # noqa: BLE001 (yaml.safe_dump decides, below)
            block = None
        if block is not None and not _MAY_DIFFER.search(block):
            return block
    return yaml.safe_dump(meta, **_DUMP_OPTIONS)


def split_frontmatter(text: str) -> tuple[str | None, str]:
    """``(frontmatter block, body)`` of a markdown file, as :func:`parse_markdown` splits it: the
    block is the YAML between the ``---`` lines (None when there are no such lines: the body is
    then the whole text). A leading BOM is dropped and CRLF / CR become LF. Pure."""
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if not (text.startswith(_DELIMITER + "\n") or text == _DELIMITER):
        return None, text
    rest = text[len(_DELIMITER) + 1 :]
    if rest == _DELIMITER or rest.startswith(_DELIMITER + "\n"):
        return "", rest[len(_DELIMITER) + 1 :]
    end = rest.find(f"\n{_DELIMITER}\n")
    if end == -1:
        if not rest.endswith(f"\n{_DELIMITER}"):
            return None, text
        end = len(rest) - len(_DELIMITER) - 1
    return rest[: end + 1], rest[end + len(_DELIMITER) + 2 :]


def parse_markdown(text: str) -> tuple[dict[str, Any], str]:
    """Split a markdown file into ``(frontmatter, body)``.

    A leading BOM is dropped and CRLF / CR become LF. Without a frontmatter (no ``---`` first
    line, or no closing ``---`` line) the result is ``({}, text)``. The body is everything after
    the closing line, unchanged.

    Raises:
        InvalidInput: the frontmatter is not a YAML mapping, or is larger than 1 MiB.
    """
    block, body = split_frontmatter(text)
    if block is None:
        return {}, body
    if len(block) > _FRONTMATTER_MAX_CHARS:
        raise InvalidInput("frontmatter is larger than 1 MiB", field="frontmatter")
    try:
        meta = load_frontmatter_yaml(block) if block.strip() else {}
    except _YAML_ERRORS as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 2})" if mark is not None else ""
        raise InvalidInput(f"frontmatter is not valid YAML{where}", field="frontmatter") from None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise InvalidInput("frontmatter must be a YAML mapping", field="frontmatter")
    return meta, body


def render_index_md(doc: KnowledgeDocument) -> str:
    """The ``index.md`` of a document: EverOS keys, then ``language``/``keywords``; body = summary."""
    meta: dict[str, Any] = {
        "type": "knowledge_document",
        "id": doc.doc_id,
        "doc_id": doc.doc_id,
        "category_id": doc.category_id or OTHERS_CATEGORY,
        "title": doc.title,
        "schema_version": SCHEMA_VERSION,
    }
    if doc.source_name is not None:
        meta["source_name"] = doc.source_name
    if doc.source_type is not None:
        meta["source_type"] = doc.source_type
    if doc.language:
        meta["language"] = doc.language
    if doc.keywords:
        meta["keywords"] = list(doc.keywords)
    return dump_frontmatter(meta) + _body(doc.summary)


def render_topic_md(topic: KnowledgeTopic) -> str:
    """A topic file (``topic_index`` >= 1): EverOS keys in order; body = the topic's prose."""
    if topic.topic_index < 1:
        raise ValueError("topic 0 is the document; render it with render_index_md")
    meta: dict[str, Any] = {
        "type": "knowledge_topic",
        "id": topic.topic_id,
        "node_id": topic.topic_id,
        "doc_id": topic.doc_id,
        "category_id": topic.category_id or OTHERS_CATEGORY,
        "topic_index": topic.topic_index,
        "topic_name": topic.topic_name,
        "topic_path": topic.topic_path,
        "summary": topic.summary,
        "depth": topic.depth,
        "parent_node_id": topic.parent_topic_id,
        "children_node_ids": list(topic.children_topic_ids),
        "content_labels": list(topic.content_labels),
        "schema_version": SCHEMA_VERSION,
    }
    return dump_frontmatter(meta) + _body(topic.content)


def render_document_files(
    doc_id: str,
    title: str,
    extracted: ExtractedDocument,
    *,
    source_name: str | None = None,
    source_type: str | None = None,
) -> dict[str, str]:
    """Every markdown file of one document, by file name relative to its directory.

    ``index.md`` first (topic 0), then ``<n>_<slug>.md`` for every topic n >= 1 in DFS order. The
    original upload under ``_original/`` is the caller's to write.
    """
    doc = document_record(doc_id, title, extracted, source_name=source_name, source_type=source_type)
    files = {INDEX_FILENAME: render_index_md(doc)}
    for topic in flatten(doc_id, title, extracted)[1:]:
        files[topic_filename(topic.topic_index, topic.topic_name)] = render_topic_md(topic)
    return files


def parse_index_md(text: str) -> KnowledgeDocument:
    """Read an ``index.md``; the body (without surrounding newlines) is the summary.

    Raises:
        InvalidInput: not a ``knowledge_document``, a missing or malformed ``doc_id``/``title``,
            or a frontmatter that is not a YAML mapping.
    """
    meta, body = parse_markdown(text)
    _expect_type(meta, "knowledge_document")
    doc_id = _same_id(meta, "doc_id", "id", DOC_ID_RE)
    return KnowledgeDocument(
        doc_id=doc_id,
        title=_required_str(meta, "title"),
        category_id=_optional_str(meta, "category_id") or OTHERS_CATEGORY,
        summary=body.strip("\n"),
        source_name=_optional_str(meta, "source_name"),
        source_type=_optional_str(meta, "source_type"),
        language=_optional_str(meta, "language") or "",
        keywords=_str_tuple(meta, "keywords"),
    )


def parse_topic_md(text: str) -> KnowledgeTopic:
    """Read a topic file back into the :class:`KnowledgeTopic` it was rendered from.

    ``parent_index`` is 0 for depth-1 topics (EverOS writes ``parent_node_id: null`` there).

    Raises:
        InvalidInput: not a ``knowledge_topic``; ids that are malformed or disagree with each
            other (``id``/``node_id``/``doc_id``/``topic_index``/parent/children, a parent that is
            not an earlier topic, or not the document at depth 1); a missing ``topic_name``; a
            depth below 1.
    """
    meta, body = parse_markdown(text)
    _expect_type(meta, "knowledge_topic")
    node_id = _same_id(meta, "node_id", "id", TOPIC_ID_RE)
    doc_id, index_from_id = split_topic_id(node_id, "node_id")
    if meta.get("doc_id") is not None and meta.get("doc_id") != doc_id:
        raise InvalidInput("doc_id does not match node_id", field="doc_id")
    topic_index = _int(meta, "topic_index", default=index_from_id)
    if topic_index != index_from_id or topic_index < 1:
        raise InvalidInput("topic_index must be >= 1 and match node_id", field="topic_index")
    depth = _int(meta, "depth", default=1)
    if depth < 1:
        raise InvalidInput("depth of a topic file must be >= 1", field="depth")
    parent_raw = meta.get("parent_node_id")
    if depth == 1 and parent_raw is None:
        parent_index = 0
    elif isinstance(parent_raw, str):
        parent_index = _index_in_doc(parent_raw, doc_id, "parent_node_id")
    else:
        raise InvalidInput("a topic below depth 1 needs parent_node_id", field="parent_node_id")
    # Topics are numbered depth-first: a parent comes before its child, and at depth 1 it is the
    # document (topic 0), as KnowledgeTopic says; anything else is not a tree.
    if parent_index >= topic_index or (parent_index == 0) != (depth == 1):
        raise InvalidInput("parent_node_id must be an earlier topic of this document (none at depth 1)",
                           field="parent_node_id")
    children = tuple(
        _index_in_doc(child, doc_id, "children_node_ids") for child in _str_tuple(meta, "children_node_ids")
    )
    topic_name = _required_str(meta, "topic_name")
    return KnowledgeTopic(
        doc_id=doc_id,
        topic_index=topic_index,
        topic_id=node_id,
        topic_name=topic_name,
        topic_path=_optional_str(meta, "topic_path") or topic_name,
        depth=depth,
        summary=_optional_str(meta, "summary") or "",
        content=body.strip("\n"),
        content_labels=_str_tuple(meta, "content_labels"),
        parent_index=parent_index,
        children_index=children,
        category_id=_optional_str(meta, "category_id") or OTHERS_CATEGORY,
    )


def _body(text: str) -> str:
    # EverOS ends a non-empty body with one newline and writes nothing for an empty one.
    text = text.rstrip("\n")
    return f"{text}\n" if text else ""


def _expect_type(meta: Mapping[str, Any], expected: str) -> None:
    if meta.get("type") != expected:
        raise InvalidInput(f"frontmatter type must be {expected!r}", field="type")


def _same_id(meta: Mapping[str, Any], key: str, alias: str, pattern: Any) -> str:
    value, alias_value = meta.get(key), meta.get(alias)
    if value is None:
        value = alias_value
    elif alias_value is not None and alias_value != value:
        raise InvalidInput(f"{alias} and {key} disagree", field=key)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidInput(f"{key} is missing or malformed", field=key)
    return value


def _index_in_doc(topic_id: str, doc_id: str, field: str) -> int:
    try:
        owner, index = split_topic_id(topic_id, field)
    except InvalidInput:
        owner = None
    if owner != doc_id:
        raise InvalidInput(f"{field} must hold topic ids of this document", field=field)
    return index


def _scalar_str(value: Any, key: str) -> str:
    # A hand edit like `title: 2024` or `title: 2024-05-01` loads as a number or a date.
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, datetime.date)) and not isinstance(value, bool):
        return str(value)
    raise InvalidInput(f"{key} must be a string", field=key)


def _required_str(meta: Mapping[str, Any], key: str) -> str:
    value = meta.get(key)
    if value is None:
        raise InvalidInput(f"{key} is missing", field=key)
    return _scalar_str(value, key)


def _optional_str(meta: Mapping[str, Any], key: str) -> str | None:
    value = meta.get(key)
    return None if value is None else _scalar_str(value, key)


def _int(meta: Mapping[str, Any], key: str, *, default: int) -> int:
    value = meta.get(key)
    if value is None:
        return default
    if isinstance(value, str) and value.strip().isdecimal():
        value = int(value) if len(value.strip()) <= _INT_MAX_DIGITS else None
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) >= 10**_INT_MAX_DIGITS:
        raise InvalidInput(f"{key} must be an integer of at most {_INT_MAX_DIGITS} digits", field=key)
    return value


def _str_tuple(meta: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = meta.get(key)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list):
        raise InvalidInput(f"{key} must be a list of strings", field=key)
    return tuple(_scalar_str(item, key) for item in value)
