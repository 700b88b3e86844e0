"""Target: the EverOS markdown format and the built-in extractor, on one text.

One input is the text of a markdown file (what the cascade reads from disk, or what an upload
decodes to). It goes through every reader of that format: ``parse_markdown`` (front matter and
body), ``parse_index_md`` and ``parse_topic_md`` (the records), ``read_outline`` (the CommonMark
block structure) and ``extract_structure`` (the built-in extractor), whose topics are rendered as
``render_document_files`` renders them. The contract: the readers refuse with ``InvalidInput``
only, the extractor with ``ExtractionEmpty`` only (a blank text), and nothing else escapes.
Invariants: the front matter reads as ``yaml.SafeLoader`` reads it (libyaml reads it first, when
PyYAML has it); a record that parses renders back to the same record; the outline's lines lie in the
text; the extractor's topic tree is bounded (``MAX_TOPICS``, names of at most 120 characters, a
known category, one file name per topic) and the files it renders parse back to the topics they
came from (the first three and the last two: YAML costs milliseconds a file).
"""

from __future__ import annotations

import yaml

from everos.errors import ExtractionEmpty, InvalidInput, UnsupportedFormat
from everos.knowledge import (
    DEFAULT_CATEGORIES,
    OTHERS_CATEGORY,
    decode_upload,
    extract_structure,
    flatten,
    parse_index_md,
    parse_markdown,
    parse_topic_md,
    render_index_md,
    render_topic_md,
)
from everos.knowledge._builtin_extractor import MAX_TOPICS
from everos.knowledge._layout import topic_filename
from everos.knowledge._markdown import load_frontmatter_yaml, split_frontmatter
from everos.knowledge._models import document_record
from everos.knowledge._outline import read_outline

__all__ = ["DOC_ID", "check_markdown", "check_markdown_bytes"]

DOC_ID = "d_0123456789ab"
_TITLE = "Fuzzed document"
_NAME_MAX_CHARS = 120
_CATEGORIES = {c.id for c in DEFAULT_CATEGORIES} | {OTHERS_CATEGORY}


def check_markdown(text: str) -> None:
    """Run ``text`` through the readers and the built-in extractor and check their contract."""
    _check_readers(text)
    _check_outline(text.replace("\r\n", "\n").replace("\r", "\n"))
    _check_extractor(text)


def _check_readers(text: str) -> None:
    try:
        meta, body = parse_markdown(text)
    except InvalidInput:
        pass
    else:
        assert isinstance(meta, dict)
        assert text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n").endswith(body)
    _check_fast_yaml(split_frontmatter(text)[0])
    try:
        doc = parse_index_md(text)
    except InvalidInput:
        pass
    else:
        assert parse_index_md(render_index_md(doc)) == doc
    try:
        topic = parse_topic_md(text)
    except InvalidInput:
        pass
    else:
        assert topic.topic_index >= 1 and topic.depth >= 1
        assert parse_topic_md(render_topic_md(topic)) == topic


def _check_fast_yaml(block: str | None) -> None:
    """What libyaml reads, yaml.SafeLoader reads the same (what it refuses, SafeLoader decides)."""
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is None or not block or len(block) > 1_048_576:
        return
    try:
        value = yaml.load(block, Loader=fast)  # noqa: S506 (a safe loader)
    except Exception:  # noqa: BLE001 (load_frontmatter_yaml hands it to SafeLoader)
        return
    # repr: NaN (``.nan``) is not equal to itself, and an alias can make a list hold itself
    assert repr(yaml.safe_load(block)) == repr(value) == repr(load_frontmatter_yaml(block))


def _check_outline(text: str) -> None:
    outline = read_outline(text)
    if outline is None:
        return
    lines = text.count("\n") + 1
    for heading in outline.headings:
        assert 0 <= heading.line < heading.body_line <= lines and 1 <= heading.level <= 6
    previous_end = -1
    for start, end in outline.not_prose:
        assert previous_end < start <= end <= lines, outline.not_prose
        previous_end = end
    for label, definition in outline.definitions.items():
        assert definition.label == label and 0 <= definition.start < definition.end <= lines


def _check_extractor(text: str) -> None:
    try:
        extracted = extract_structure(text, _TITLE, DEFAULT_CATEGORIES)
    except ExtractionEmpty:
        assert not text.replace("\r", "\n").strip(), "a text with a visible character was called empty"
        return
    topics = flatten(DOC_ID, _TITLE, extracted)
    assert 1 < len(topics) <= MAX_TOPICS + 1, len(topics)
    assert extracted.category_id in _CATEGORIES
    for topic in topics[1:]:
        assert topic.topic_name and len(topic.topic_name) <= _NAME_MAX_CHARS, topic.topic_name
    # The files render_document_files writes: index.md, and here of the topic files the first
    # three and the last two (PyYAML in pure Python costs milliseconds a file, each way).
    doc = document_record(DOC_ID, _TITLE, extracted, source_name="fuzz.md", source_type="file")
    index = parse_index_md(render_index_md(doc))
    assert (index.doc_id, index.title, index.category_id) == (DOC_ID, _TITLE, extracted.category_id)
    assert len({topic_filename(t.topic_index, t.topic_name) for t in topics[1:]}) == len(topics) - 1
    for position in {*range(1, min(4, len(topics))), *range(max(1, len(topics) - 2), len(topics))}:
        assert parse_topic_md(render_topic_md(topics[position])) == topics[position]


def check_markdown_bytes(data: bytes) -> None:
    """:func:`check_markdown` of ``data`` as the cascade reads a file (UTF-8, here with replacement
    characters for what does not decode), and of the text an upload of ``data`` decodes to."""
    check_markdown(data.decode("utf-8", "replace"))
    try:
        text = decode_upload(data, "fuzz.md", None)
    except UnsupportedFormat:
        return
    check_markdown(text)
