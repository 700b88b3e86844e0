"""From markdown to index rows: parsing, digests, row building (pure)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from everos.cascade import (
    DocumentFiles,
    TopicParts,
    fact_rows,
    locate_document,
    parse_document,
    topic_content_sha256,
    topic_row,
)
from everos.errors import InvalidInput
from everos.knowledge._fingerprint import document_signature, fingerprint_digest

from .conftest import GUIDE, write_document


def files_of(root: Path, doc_dir: str) -> DocumentFiles:
    texts = {p.name: p.read_text(encoding="utf-8") for p in (root / doc_dir).glob("*.md")}
    return DocumentFiles(doc_dir, "fp", texts, "source.md")


def test_locate_document_maps_default_scope_dirs_back_to_ids() -> None:
    found = locate_document("default_app/default_project/knowledge/Technology/Guide_d_0123456789ab")
    assert (found.app_id, found.project_id, found.doc_id) == ("default", "default", "d_0123456789ab")


@pytest.mark.parametrize("doc_dir", [
    "default_app/default_project/notes/Technology/Guide_d_0123456789ab",
    "default_app/default_project/knowledge/Technology/Guide",
    "default_app/default_project/knowledge/Guide_d_0123456789ab",
    "default_app/default_project/knowledge/.tmp/Guide_d_0123456789ab",
])
def test_locate_document_refuses_paths_outside_the_layout(doc_dir: str) -> None:
    with pytest.raises(InvalidInput):
        locate_document(doc_dir)


def test_parse_document_builds_topic_zero_from_index_md(root: Path) -> None:
    doc_dir = write_document(root, "Trio guide", GUIDE)
    parsed = parse_document(files_of(root, doc_dir))
    root_topic = parsed.topics[0]
    assert root_topic.topic_index == 0 and root_topic.depth == 0
    assert root_topic.topic_name == "Trio guide" and root_topic.summary == parsed.document.summary
    assert [t.topic_name for t in parsed.indexed_topics] == ["Cancel scopes", "Nurseries", "Threads"]
    assert root_topic.children_index == (1, 2, 3)
    assert parsed.topic_paths[1] == f"{doc_dir}/1_Cancel_scopes.md"


def test_parse_document_refuses_an_index_md_of_another_document(root: Path) -> None:
    doc_dir = write_document(root, "Trio guide", GUIDE)
    files = files_of(root, doc_dir)
    texts = dict(files.texts)
    texts["index.md"] = texts["index.md"].replace(locate_document(doc_dir).doc_id, "d_ffffffffffff")
    with pytest.raises(InvalidInput, match="does not match the directory"):
        parse_document(dataclasses.replace(files, texts=texts))


def test_parse_document_names_the_file_that_does_not_parse(root: Path) -> None:
    """G10: a broken hand edit is refused with the file named, not guessed at."""
    doc_dir = write_document(root, "Trio guide", GUIDE)
    files = files_of(root, doc_dir)
    texts = dict(files.texts) | {"2_Nurseries.md": "---\ntype: [unclosed\n---\nbody\n"}
    with pytest.raises(InvalidInput, match="2_Nurseries.md"):
        parse_document(dataclasses.replace(files, texts=texts))


def test_parse_document_refuses_two_files_with_one_topic_index(root: Path) -> None:
    doc_dir = write_document(root, "Trio guide", GUIDE)
    files = files_of(root, doc_dir)
    texts = dict(files.texts) | {"1_Copy.md": files.texts["1_Cancel_scopes.md"]}
    with pytest.raises(InvalidInput, match="topic_index 1"):
        parse_document(dataclasses.replace(files, texts=texts))


def test_topic_digest_changes_with_every_field_that_reaches_the_row(root: Path) -> None:
    doc_dir = write_document(root, "Trio guide", GUIDE)
    topic = parse_document(files_of(root, doc_dir)).topics[1]
    base = topic_content_sha256(topic, "a.md")
    assert topic_content_sha256(topic, "a.md") == base
    for change in ({"summary": "x"}, {"topic_name": "x"}, {"topic_path": "x"}, {"category_id": "x"},
                   {"depth": 2, "parent_index": 1}, {"content": "x"}, {"content_labels": ("medical",)}):
        assert topic_content_sha256(dataclasses.replace(topic, **change), "a.md") != base, change
    assert topic_content_sha256(topic, "b.md") != base


def test_fingerprint_ignores_listing_order_but_not_size_or_mtime() -> None:
    entries = [("index.md", 10, 1), ("1_a.md", 5, 2)]
    assert fingerprint_digest(entries) == fingerprint_digest(reversed(entries))
    assert fingerprint_digest([("index.md", 11, 1), ("1_a.md", 5, 2)]) != fingerprint_digest(entries)
    assert fingerprint_digest([("index.md", 10, 3), ("1_a.md", 5, 2)]) != fingerprint_digest(entries)


def test_document_signature_covers_path_names_and_texts() -> None:
    base = document_signature("a/b", {"index.md": "x"})
    assert document_signature("a/c", {"index.md": "x"}) != base
    assert document_signature("a/b", {"index.md": "y"}) != base
    assert document_signature("a/b", {"index.md": "x", "1_t.md": ""}) != base


def test_rows_carry_scope_ids_paths_and_facts(root: Path) -> None:
    doc_dir = write_document(root, "Trio guide", GUIDE, app_id="acme", project_id="kb")
    parsed = parse_document(files_of(root, doc_dir))
    topic = parsed.topics[1]
    parts = TopicParts("s", "c", [0.5] * 3, ["One.", "Two."], ["one.", "two."], [[1.0] * 3, [2.0] * 3])
    row = topic_row(parsed, topic, parts, content_sha256="h", created_at=1.0, updated_at=2.0)
    assert (row.id, row.app_id, row.project_id, row.parent_node_id) == (topic.topic_id, "acme", "kb", "")
    assert row.md_path == f"{doc_dir}/1_Cancel_scopes.md" and row.vector == (0.5, 0.5, 0.5)
    facts = fact_rows(parsed, topic, parts)
    assert [f.id for f in facts] == [f"{topic.topic_id}_f0", f"{topic.topic_id}_f1"]
    assert facts[1].text == "Two." and facts[1].vector == (2.0, 2.0, 2.0) and facts[1].project_id == "kb"
