"""Records, flattening and id rules of the EverOS 1.x contract (reference §2.3, §7)."""

from __future__ import annotations

import pytest

from everos.errors import InvalidInput
from everos.knowledge import (
    DOC_ID_RE,
    ExtractedDocument,
    TopicNode,
    document_record,
    flatten,
    new_doc_id,
    split_topic_id,
    topic_count,
    validate_app_id,
    validate_doc_id,
    validate_project_id,
    validate_scope_id,
    validate_topic_id,
)

DOC_ID = "d_0123456789ab"


def leaf(name: str) -> TopicNode:
    return TopicNode(name=name, summary=f"{name} summary", content=f"{name} prose")


def sample() -> ExtractedDocument:
    tree = TopicNode(
        name="Title",
        summary="doc summary",
        content="",
        children=(
            TopicNode("A", "a", "a prose", ("medical",), (leaf("A.1"), leaf("A.2"))),
            leaf("B"),
        ),
    )
    return ExtractedDocument("en", "doc summary", ("k",), "Technology", tree)


def test_flatten_is_dfs_with_root_first() -> None:
    topics = flatten(DOC_ID, "Title", sample())
    assert [t.topic_name for t in topics] == ["Title", "A", "A.1", "A.2", "B"]
    assert [t.topic_index for t in topics] == [0, 1, 2, 3, 4]
    assert [t.depth for t in topics] == [0, 1, 2, 2, 1]


def test_flatten_ids_and_paths_follow_everos() -> None:
    topics = flatten(DOC_ID, "Title", sample())
    assert [t.topic_id for t in topics] == [f"{DOC_ID}_{i}" for i in range(5)]
    assert topics[2].topic_path == "Title > A > A.1"
    assert topics[0].topic_path == "Title"


def test_flatten_links_parents_and_children() -> None:
    root, a, a1, a2, b = flatten(DOC_ID, "Title", sample())
    assert root.parent_index is None and root.children_index == (1, 4)
    assert a.parent_index == 0 and a.children_index == (2, 3)
    assert a1.parent_index == 1 and b.parent_index == 0


def test_parent_topic_id_is_null_at_depth_one() -> None:
    """EverOS writes parent_node_id: null for depth <= 1, even though topic 0 is the parent."""
    root, a, a1, _, _ = flatten(DOC_ID, "Title", sample())
    assert root.parent_topic_id is None
    assert a.parent_topic_id is None
    assert a1.parent_topic_id == f"{DOC_ID}_1"
    assert a.children_topic_ids == (f"{DOC_ID}_2", f"{DOC_ID}_3")


def test_flatten_root_carries_title_and_document_summary() -> None:
    root = flatten(DOC_ID, "Renamed title", sample())[0]
    assert root.topic_name == "Renamed title"
    assert root.summary == "doc summary"


def test_flatten_gives_every_topic_the_document_category() -> None:
    topics = flatten(DOC_ID, "Title", sample())
    assert {t.category_id for t in topics} == {"Technology"}
    assert topics[1].content_labels == ("medical",)


def test_flatten_empty_category_becomes_others() -> None:
    doc = ExtractedDocument("en", "s", (), "", leaf("Title"))
    assert flatten(DOC_ID, "Title", doc)[0].category_id == "Others"


def test_flatten_deep_tree_does_not_recurse() -> None:
    node = leaf("bottom")
    for i in range(3000):
        node = TopicNode(f"n{i}", "s", "c", children=(node,))
    topics = flatten(DOC_ID, "T", ExtractedDocument("en", "s", (), "Others", node))
    assert len(topics) == 3001
    assert topics[-1].depth == 3000


def test_topic_count_counts_every_non_root_node() -> None:
    """EverOS §7: parents are counted too."""
    assert topic_count(flatten(DOC_ID, "Title", sample())) == 4
    assert topic_count(flatten(DOC_ID, "T", ExtractedDocument("en", "s", (), "Others", leaf("T")))) == 0


def test_document_record_takes_the_extraction_summary() -> None:
    doc = document_record(DOC_ID, "Title", sample(), source_name="a.md", source_type="file")
    assert (doc.summary, doc.category_id, doc.keywords, doc.language) == ("doc summary", "Technology", ("k",), "en")
    assert (doc.source_name, doc.source_type) == ("a.md", "file")


def test_new_doc_id_is_d_and_12_hex() -> None:
    ids = {new_doc_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(DOC_ID_RE.match(i) and len(i) == 14 for i in ids)


@pytest.mark.parametrize("good", ["d_0123456789ab", "d_" + "a" * 32])
def test_validate_doc_id_accepts(good: str) -> None:
    assert validate_doc_id(good) == good


@pytest.mark.parametrize(
    "bad", ["", "d_0123", "d_" + "a" * 33, "d_0123456789AB", "x_0123456789ab", "d_0123456789ab\n", None, 5]
)
def test_validate_doc_id_rejects_with_field(bad: object) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_doc_id(bad)
    assert info.value.field == "doc_id"


def test_validate_topic_id_and_split() -> None:
    assert validate_topic_id(f"{DOC_ID}_12") == f"{DOC_ID}_12"
    assert split_topic_id(f"{DOC_ID}_12") == (DOC_ID, 12)
    assert split_topic_id(f"{DOC_ID}_999999999") == (DOC_ID, 999_999_999)
    # The last: found by fuzz/ (requests target), int() of 5,000 digits raised ValueError.
    for bad in (DOC_ID, f"{DOC_ID}_", f"{DOC_ID}_x", f"{DOC_ID}_1/../2", f"{DOC_ID}_1\n", f"{DOC_ID}_1234567890",
                f"{DOC_ID}_" + "1" * 5000):
        with pytest.raises(InvalidInput) as info:
            split_topic_id(bad)
        assert info.value.field == "topic_id"


@pytest.mark.parametrize("good", ["default", "my-app", "a.b", "user@example.com", "a+b", "A_1", "a..."])
def test_validate_scope_id_accepts(good: str) -> None:
    assert validate_scope_id(good, "app_id") == good


# A leading dot would be a hidden directory, skipped by every scan (and .index / .tmp are everos's).
@pytest.mark.parametrize("bad", ["", ".", "..", "...", ".hidden", ".index", "a/b", "a\\b", "a b", "ü", "a\x00",
                                 "default\n", "x" * 256, None])
def test_validate_scope_id_rejects_with_field(bad: object) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_scope_id(bad, "project_id")
    assert info.value.field == "project_id"


def test_default_dir_names_are_reserved_ids() -> None:
    """1.5.1 rejects the on-disk names of the default scope, so the mapping stays reversible."""
    with pytest.raises(InvalidInput):
        validate_app_id("default_app")
    with pytest.raises(InvalidInput):
        validate_project_id("default_project")
    assert validate_app_id("default_project") == "default_project"
    assert validate_project_id("default_app") == "default_app"
