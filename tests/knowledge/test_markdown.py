"""The EverOS 1.x markdown format, field by field, and its round trips (reference §4, §7)."""

from __future__ import annotations

import random

import pytest
import yaml

from everos.errors import InvalidInput
from everos.knowledge import (
    INDEX_KEYS,
    TOPIC_KEYS,
    ExtractedDocument,
    KnowledgeDocument,
    KnowledgeTopic,
    TopicNode,
    flatten,
    parse_index_md,
    parse_markdown,
    parse_topic_md,
    render_document_files,
    render_index_md,
    render_topic_md,
    topic_count,
)

DOC_ID = "d_0123456789ab"
# The key lists as EverOS 1.x's KnowledgeWriter writes them (reference §4), spelled out here so a
# change to the module constants cannot silently change the format.
EVEROS_INDEX_KEYS = ["type", "id", "doc_id", "category_id", "title", "schema_version", "source_name", "source_type"]
EVEROS_TOPIC_KEYS = [
    "type", "id", "node_id", "doc_id", "category_id", "topic_index", "topic_name", "topic_path", "summary",
    "depth", "parent_node_id", "children_node_ids", "content_labels", "schema_version",
]


def extracted() -> ExtractedDocument:
    child = TopicNode("Linux", "On Linux.", "Use apt.")
    tree = TopicNode(
        "Guide",
        "A guide.",
        "",
        children=(
            TopicNode("Install", "How to install.", "Install it.\n\nThen run it.", ("personal_info",), (child,)),
            TopicNode("Use", "How to use.", "Use it."),
        ),
    )
    return ExtractedDocument("en", "A guide.", ("guide", "install"), "Technology", tree)


def topics() -> list[KnowledgeTopic]:
    return flatten(DOC_ID, "Guide", extracted())


def frontmatter(text: str) -> dict:
    meta, _ = parse_markdown(text)
    return meta


def test_index_keys_match_everos_in_order() -> None:
    assert list(INDEX_KEYS) == EVEROS_INDEX_KEYS
    doc = KnowledgeDocument(DOC_ID, "Guide", "Technology", "Summary.", source_name="g.md", source_type="file")
    assert list(frontmatter(render_index_md(doc))) == EVEROS_INDEX_KEYS


def test_index_omits_unset_source_fields() -> None:
    meta = frontmatter(render_index_md(KnowledgeDocument(DOC_ID, "Guide", "Technology", "S.")))
    assert list(meta) == EVEROS_INDEX_KEYS[:6]


def test_index_values_field_by_field() -> None:
    doc = KnowledgeDocument(DOC_ID, "Guide", "Technology", "S.", source_name="g.md", source_type="file")
    assert frontmatter(render_index_md(doc)) == {
        "type": "knowledge_document", "id": DOC_ID, "doc_id": DOC_ID, "category_id": "Technology",
        "title": "Guide", "schema_version": 1, "source_name": "g.md", "source_type": "file",
    }


def test_index_everos_extras_come_after_everos_keys() -> None:
    doc = KnowledgeDocument(DOC_ID, "Guide", "Technology", "S.", language="en", keywords=("a", "b"))
    meta = frontmatter(render_index_md(doc))
    assert list(meta) == EVEROS_INDEX_KEYS[:6] + ["language", "keywords"]
    assert meta["keywords"] == ["a", "b"]


def test_index_md_exact_text() -> None:
    """Pins the bytes: yaml.safe_dump(sort_keys=False) block, then the summary and one newline."""
    doc = KnowledgeDocument(DOC_ID, "Guide", "Technology", "Summary line.", source_name="g.md")
    assert render_index_md(doc) == (
        "---\n"
        "type: knowledge_document\n"
        f"id: {DOC_ID}\n"
        f"doc_id: {DOC_ID}\n"
        "category_id: Technology\n"
        "title: Guide\n"
        "schema_version: 1\n"
        "source_name: g.md\n"
        "---\n"
        "Summary line.\n"
    )


def test_topic_keys_match_everos_in_order() -> None:
    assert list(TOPIC_KEYS) == EVEROS_TOPIC_KEYS
    for topic in topics()[1:]:
        assert list(frontmatter(render_topic_md(topic))) == EVEROS_TOPIC_KEYS


def test_topic_values_field_by_field() -> None:
    _, install, linux, _ = topics()
    assert frontmatter(render_topic_md(install)) == {
        "type": "knowledge_topic", "id": f"{DOC_ID}_1", "node_id": f"{DOC_ID}_1", "doc_id": DOC_ID,
        "category_id": "Technology", "topic_index": 1, "topic_name": "Install", "topic_path": "Guide > Install",
        "summary": "How to install.", "depth": 1, "parent_node_id": None, "children_node_ids": [f"{DOC_ID}_2"],
        "content_labels": ["personal_info"], "schema_version": 1,
    }
    meta = frontmatter(render_topic_md(linux))
    assert (meta["depth"], meta["parent_node_id"], meta["children_node_ids"]) == (2, f"{DOC_ID}_1", [])
    assert meta["topic_path"] == "Guide > Install > Linux"


def test_topic_body_is_the_prose() -> None:
    text = render_topic_md(topics()[1])
    assert text.endswith("---\nInstall it.\n\nThen run it.\n")


def test_render_topic_rejects_the_root() -> None:
    with pytest.raises(ValueError):
        render_topic_md(topics()[0])


def test_render_document_files_writes_index_and_one_file_per_topic() -> None:
    files = render_document_files(DOC_ID, "Guide", extracted(), source_name="g.md", source_type="file")
    assert list(files) == ["index.md", "1_Install.md", "2_Linux.md", "3_Use.md"]
    assert len(files) - 1 == topic_count(topics())
    assert parse_index_md(files["index.md"]).summary == "A guide."
    assert [parse_topic_md(files[name]) for name in list(files)[1:]] == topics()[1:]


def test_index_round_trip() -> None:
    doc = KnowledgeDocument(DOC_ID, "机器学习: 入门", "Technology", "第一句。\n\nSecond para.",
                            source_name="a.md", source_type="file", language="zh", keywords=("机器",))
    assert parse_index_md(render_index_md(doc)) == doc


HOSTILE_STRINGS = [
    "---",
    "a\n---\nb",
    "key: value",
    "yes",
    "null",
    "2024-05-01",
    "123",
    "'quoted' \"double\"",
    "# heading",
    "- item",
    "tab\there",
    "trailing space ",
    "emoji 😀 and \u202e",
    "\x07 bell",
    "x" * 500,
]


@pytest.mark.parametrize("hostile", HOSTILE_STRINGS)
def test_topic_round_trip_with_hostile_strings(hostile: str) -> None:
    topic = KnowledgeTopic(
        doc_id=DOC_ID, topic_index=2, topic_id=f"{DOC_ID}_2", topic_name=hostile, topic_path=f"T > {hostile}",
        depth=2, summary=hostile, content=f"{hostile}\n\n---\n\nmore", content_labels=(hostile,),
        parent_index=1, children_index=(3, 4), category_id="Others",
    )
    assert parse_topic_md(render_topic_md(topic)) == topic


@pytest.mark.parametrize("hostile", HOSTILE_STRINGS)
def test_index_round_trip_with_hostile_strings(hostile: str) -> None:
    doc = KnowledgeDocument(DOC_ID, hostile, "Others", f"{hostile} summary", source_name=hostile)
    assert parse_index_md(render_index_md(doc)) == doc


def test_parse_markdown_without_frontmatter() -> None:
    assert parse_markdown("# Just markdown\n") == ({}, "# Just markdown\n")
    assert parse_markdown("---\nnot closed\n") == ({}, "---\nnot closed\n")
    assert parse_markdown("") == ({}, "")


def test_parse_markdown_tolerates_crlf_and_bom() -> None:
    meta, body = parse_markdown("\ufeff---\r\ntype: x\r\n---\r\nbody\r\nline\r\n")
    assert meta == {"type": "x"}
    assert body == "body\nline\n"


def test_parse_markdown_edge_delimiters() -> None:
    assert parse_markdown("---\n---\nbody") == ({}, "body")
    assert parse_markdown("---\na: 1\n---") == ({"a": 1}, "")
    assert parse_markdown("---\na: 1\n---\nx\n---\ny\n") == ({"a": 1}, "x\n---\ny\n")


@pytest.mark.parametrize("block", ["a: [1, 2\n", "- a\n- b\n", "just a string\n", "d: 2024-99-99\n", "[" * 5000 + "\n"])
def test_parse_markdown_rejects_bad_frontmatter(block: str) -> None:
    with pytest.raises(InvalidInput):
        parse_markdown(f"---\n{block}---\nbody\n")


@pytest.mark.parametrize("block", ['title: "\\uD800"\n', "title: \ud800\n", "title: .nan\n", "a: &x [*x]\n"])
def test_frontmatter_reads_as_yaml_safe_loader_reads_it(block: str) -> None:
    """libyaml reads first; what it refuses (an escaped lone surrogate) or cannot take (a raw one)
    yaml.SafeLoader reads again, so the answer is SafeLoader's either way."""
    try:
        expected: object = yaml.safe_load(block)
    except yaml.YAMLError:
        with pytest.raises(InvalidInput):
            parse_markdown(f"---\n{block}---\nbody\n")
        return
    assert repr(parse_markdown(f"---\n{block}---\nbody\n")) == repr((expected, "body\n"))


def test_parse_markdown_rejects_huge_frontmatter() -> None:
    with pytest.raises(InvalidInput):
        parse_markdown("---\n" + "a: b\n" * 300_000 + "---\n")


def test_parse_index_md_reads_an_everos_file() -> None:
    """A file as EverOS 1.x writes it (no everos extras) reads without loss."""
    text = yaml.safe_dump(
        {"type": "knowledge_document", "id": DOC_ID, "doc_id": DOC_ID, "category_id": "Finance",
         "title": "Q3", "schema_version": 1}, sort_keys=False, allow_unicode=True,
    )
    doc = parse_index_md(f"---\n{text}---\nQuarter summary.\n")
    assert doc == KnowledgeDocument(DOC_ID, "Q3", "Finance", "Quarter summary.")


def test_parse_index_md_coerces_scalar_title() -> None:
    doc = parse_index_md(f"---\ntype: knowledge_document\ndoc_id: {DOC_ID}\ntitle: 2024\n---\n")
    assert doc.title == "2024" and doc.category_id == "Others" and doc.summary == ""


@pytest.mark.parametrize(
    "meta",
    [
        f"type: knowledge_topic\ndoc_id: {DOC_ID}\ntitle: T\n",
        "type: knowledge_document\ndoc_id: d_bad\ntitle: T\n",
        f"type: knowledge_document\nid: d_aaaaaaaaaaaa\ndoc_id: {DOC_ID}\ntitle: T\n",
        f"type: knowledge_document\ndoc_id: {DOC_ID}\n",
        f"type: knowledge_document\ndoc_id: {DOC_ID}\ntitle: [a]\n",
        f"type: knowledge_document\ndoc_id: {DOC_ID}\ntitle: T\nkeywords: {{a: 1}}\n",
    ],
)
def test_parse_index_md_rejects_malformed(meta: str) -> None:
    with pytest.raises(InvalidInput):
        parse_index_md(f"---\n{meta}---\nbody\n")


def test_parse_index_md_rejects_missing_frontmatter() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_index_md("just a summary\n")
    assert info.value.field == "type"


def topic_text(**changes: object) -> str:
    meta = yaml.safe_load(render_topic_md(topics()[2]).split("---\n")[1])
    meta.update(changes)
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\nbody\n"


def test_parse_topic_md_derives_missing_index_fields() -> None:
    meta = yaml.safe_load(render_topic_md(topics()[1]).split("---\n")[1])
    for key in ("id", "topic_index", "doc_id", "topic_path", "summary", "content_labels", "category_id"):
        meta.pop(key)
    topic = parse_topic_md("---\n" + yaml.safe_dump(meta) + "---\nbody\n")
    assert (topic.topic_index, topic.doc_id, topic.topic_path, topic.parent_index) == (1, DOC_ID, "Install", 0)


@pytest.mark.parametrize(
    "changes",
    [
        {"type": "knowledge_document"},
        {"node_id": "d_bad_1"},
        {"id": f"{DOC_ID}_9"},
        {"doc_id": "d_aaaaaaaaaaaa"},
        {"topic_index": 5},
        {"node_id": f"{DOC_ID}_0", "id": f"{DOC_ID}_0", "topic_index": 0},
        {"depth": 0},
        {"depth": "deep"},
        {"parent_node_id": None},
        {"parent_node_id": "d_aaaaaaaaaaaa_1"},
        {"children_node_ids": ["d_aaaaaaaaaaaa_3"]},
        {"topic_name": None},
        {"content_labels": {"a": 1}},
    ],
)
def test_parse_topic_md_rejects_inconsistent_ids(changes: dict) -> None:
    with pytest.raises(InvalidInput):
        parse_topic_md(topic_text(**changes))


TOPIC_HEAD = "---\ntype: knowledge_topic\nid: {id}\ntopic_name: Wiring\n"


@pytest.mark.parametrize(("lines", "field"), [
    ("", "node_id"),                                                   # an id index of 5,000 digits
    ("topic_index: '²'\n", "topic_index"),                             # a digit int() does not read
    ("depth: '" + "9" * 5000 + "'\n", "depth"),                        # more digits than int() reads
    ("depth: 99999999999999999999\n", "depth"),                        # no SQLite integer holds it
    ("depth: 2\nparent_node_id: d_0123456789ab_" + "1" * 5000 + "\n", "parent_node_id"),
    ("children_node_ids: [d_0123456789ab_" + "2" * 5000 + "]\n", "children_node_ids"),
])
def test_parse_topic_md_refuses_numbers_it_cannot_store(lines: str, field: str) -> None:
    """Found by fuzz/ (markdown target): each raised ValueError out of the parser (the cascade
    then failed the row as INTERNAL_ERROR instead of INVALID_INPUT), or, for a depth of 20 digits,
    parsed into a row SQLite cannot store."""
    topic_id = f"{DOC_ID}_" + "1" * 5000 if field == "node_id" else f"{DOC_ID}_1"
    with pytest.raises(InvalidInput) as caught:
        parse_topic_md(TOPIC_HEAD.format(id=topic_id) + lines + "---\nbody\n")
    assert caught.value.field == field


def test_parse_topic_md_reads_an_index_written_as_text() -> None:
    topic = parse_topic_md(TOPIC_HEAD.format(id=f"{DOC_ID}_3") + "topic_index: '3'\ndepth: ' 1 '\n---\n")
    assert (topic.topic_index, topic.depth) == (3, 1)


@pytest.mark.parametrize("lines", [
    "parent_node_id: d_0123456789ab_3\n",             # depth 1 under topic 3: written back as the document's
    "depth: 2\nparent_node_id: d_0123456789ab_3\n",  # its own parent
    "depth: 2\nparent_node_id: d_0123456789ab_5\n",  # a parent numbered after it
    "depth: 2\nparent_node_id: d_0123456789ab_0\n",  # the document, below depth 1
])
def test_parse_topic_md_refuses_a_parent_that_is_no_tree(lines: str) -> None:
    """Found by fuzz/ (markdown target): a depth-1 topic naming a parent parsed into a record that
    rendered back as a different one (EverOS writes no parent at depth 1); a topic could be its
    own parent."""
    with pytest.raises(InvalidInput) as caught:
        parse_topic_md(TOPIC_HEAD.format(id=f"{DOC_ID}_3") + lines + "---\n")
    assert caught.value.field == "parent_node_id"


# -- the frontmatter is yaml.safe_dump's, byte for byte, whichever emitter makes it ------------------

_DUMP_ALPHABET = [*"abc XYZ 019 .:#-?'\"\\,[]{}&*!|>%@`~=+", "\n", "\t", "\r", "\x00", "\x07", "\x1b", "\x7f",
                  "\x85", "\x9f", "\xa0", "é", "中文", "\u200b", "\u2028", "\u2029", "\u202e", "\ufeff", "\ufffd",
                  "\ufffe", "😀", "\U0010fffe", "\ud800", "  ", "\n\n", " \n", "\n ", "- ", ": ", " #", "---",
                  "...", "null", "true", "1.5", "~", "yes", "2024-05-01", "07", "<<"]


def _dump_samples(count: int) -> list[dict]:
    """Frontmatters shaped like a topic's, their strings drawn from the characters and words on
    which the two emitters part (seeded: the same every run)."""
    rng = random.Random(17)
    samples = []
    for _ in range(count):
        if rng.random() < 0.3:  # long prose: folded lines, CJK widths, a word here and there
            text = " ".join(rng.choice(["w" * rng.randint(1, 12), "中文" * rng.randint(1, 30), *_DUMP_ALPHABET])
                            for _ in range(rng.randint(1, 60)))
        else:
            text = "".join(rng.choice(_DUMP_ALPHABET) for _ in range(rng.randint(0, rng.choice([3, 20, 90, 400]))))
        samples.append({"type": "knowledge_topic", "id": f"{DOC_ID}_3", "topic_index": rng.randint(1, 10**6),
                        "topic_name": text[:rng.randint(0, 140)], "summary": text, "parent_node_id": None,
                        "children_node_ids": [f"{DOC_ID}_4"] * rng.randint(0, 2), "content_labels": [text[:12]],
                        "schema_version": 1, text[:rng.randint(0, 140)] or "k": [{"a": text[:50]}]})
    return samples


def test_frontmatter_is_yaml_safe_dumps_byte_for_byte() -> None:
    """Files keep the bytes EverOS's writer gives (yaml.safe_dump): libyaml's emitter writes the
    frontmatter only where its output is the same; a double-quoted scalar (which it folds
    otherwise), a character it quotes that safe_dump does not (NEL, past U+FFFF), a lone
    surrogate (which it cannot encode), a key of 128 bytes but fewer characters (which it writes
    as a complex key) go to yaml.safe_dump. 3,000 seeded frontmatters, and the
    files of a rendered document."""
    from everos.knowledge import _markdown

    assert _markdown._FAST_SAFE_DUMPER is not None  # PyYAML's wheels have libyaml: the fast path is tested
    options = {"sort_keys": False, "allow_unicode": True, "default_flow_style": False}
    fast = 0
    for meta in _dump_samples(3000):
        expected = yaml.safe_dump(meta, **options)
        assert _markdown.dump_frontmatter_yaml(meta) == expected, meta
        fast += not _markdown._MAY_DIFFER.search(expected)
    assert fast > 300  # these strings are hostile; plain prose takes the fast path, below
    real_safe_dump, slow = yaml.safe_dump, []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(yaml, "safe_dump", lambda *a, **k: slow.append(1) or real_safe_dump(*a, **k))
        files = render_document_files(DOC_ID, "Guide", extracted(), source_name="g.md")
    assert not slow
    for text in files.values():
        block = text.split("---\n")[1]
        assert block == yaml.safe_dump(parse_markdown(text)[0], **options)


def test_frontmatter_without_libyaml_is_yaml_safe_dumps(monkeypatch: pytest.MonkeyPatch) -> None:
    from everos.knowledge import _markdown

    with_libyaml = [_markdown.dump_frontmatter_yaml(meta) for meta in _dump_samples(200)]
    monkeypatch.setattr(_markdown, "_FAST_SAFE_DUMPER", None)
    assert [_markdown.dump_frontmatter_yaml(meta) for meta in _dump_samples(200)] == with_libyaml
