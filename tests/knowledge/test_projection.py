"""One document -> its rows: an extraction and its markdown read back give the same rows, which
the store writes and reads back unchanged."""

from __future__ import annotations

import sqlite3

import pytest

from everos.cascade import DocumentFiles, parse_document
from everos.knowledge import (
    DEFAULT_CATEGORIES,
    ExtractedDocument,
    TopicNode,
    document_dir,
    extract_structure,
    render_document_files,
)
from everos.ingest import _repository as repo
from everos.knowledge._fingerprint import WrittenFiles, document_signature, stat_document_files, written_files
from everos.knowledge._projection import DocumentRows, content_from_extraction, project, reads_back
from everos.store._migrations import split_statements

DOC_ID = "d_0123456789ab"


def big_text(target_chars: int = 80_000) -> str:
    parts, n = ["# Big notes\n\n"], 0
    while sum(map(len, parts)) < target_chars:
        n += 1
        parts.append(f"## Section {n}\n\n" + " ".join(f"Sentence {i} of section {n}." for i in range(12)) + "\n\n")
    return "".join(parts)


def by_hand() -> ExtractedDocument:
    """What a model may answer: labels, CR line ends, surrounding newlines, a deep tree."""
    leaf = TopicNode("Leaf: ünïcode", "Deep\nsummary", "\n\nline one\r\nline two\rline three\n\n", ("personal_info",))
    child = TopicNode("Child", "", "  indented body\t", children=(leaf,))
    root = TopicNode("ignored", "", "", children=(child, TopicNode("'quoted' #1", "null", "2024-05-01")))
    return ExtractedDocument("en", "\nThe summary\r\n\n", ("kw", "two words"), "Technology", root, extractor="llm")


EXTRACTIONS = {
    "builtin guide": lambda: extract_structure("# Guide\n\n## A\nText of A.\n\n## B\n\nText of B.\n", "Guide",
                                                DEFAULT_CATEGORIES, category_id="Technology"),
    "builtin 80 KB": lambda: extract_structure(big_text(), "Big notes", DEFAULT_CATEGORIES),
    "builtin flat, CRLF": lambda: extract_structure("one\r\ntwo\r\n\r\nthree " * 400, "Flat", DEFAULT_CATEGORIES),
    "by hand": by_hand,
}


def rows_of_markdown(doc_dir: str, files: dict[str, str]) -> DocumentRows:
    return parse_document(DocumentFiles(doc_dir, "fp", files, "source.md")).rows


@pytest.mark.parametrize("name", sorted(EXTRACTIONS))
def test_an_extraction_and_its_markdown_read_back_give_the_same_rows(tmp_path, name: str) -> None:
    extracted = EXTRACTIONS[name]()
    title = "Title: a > b"
    doc_dir = document_dir(tmp_path, "default", "default", extracted.category_id, title, DOC_ID)
    relative = doc_dir.relative_to(tmp_path).as_posix()
    files = render_document_files(DOC_ID, title, extracted, source_name="source.md", source_type="file")
    content = content_from_extraction(DOC_ID, title, extracted, source_name="source.md", source_type="file")
    assert reads_back(content)
    projected = project(content, doc_dir=relative, app_id="default", project_id="default",
                        original_path=f"{relative}/_original/source.md")
    parsed = rows_of_markdown(relative, files)
    assert projected.document_row() == parsed.document_row()
    assert projected.topic_rows() == parsed.topic_rows()
    assert projected == parsed


def test_a_frontmatter_value_yaml_changes_does_not_read_back() -> None:
    extracted = by_hand()
    title = "Line\x85break"
    content = content_from_extraction(DOC_ID, title, extracted)
    assert not reads_back(content)
    doc_dir = f"default_app/default_project/knowledge/Technology/Line_break_{DOC_ID}"
    parsed = rows_of_markdown(doc_dir, render_document_files(DOC_ID, title, extracted))
    assert parsed.document.title != title  # why: the markdown is what the rows must follow then


def test_no_receipt_for_markdown_that_does_not_read_back(tmp_path) -> None:
    extracted = by_hand()
    for title, expect_receipt in (("Plain", True), ("Line\x85break", False)):
        staging = tmp_path / title
        staging.mkdir()
        files = render_document_files(DOC_ID, title, extracted)
        for file_name, text in files.items():
            (staging / file_name).write_text(text, encoding="utf-8")
        receipt = written_files(staging, "a/b/knowledge/C/D", content_from_extraction(DOC_ID, title, extracted), files)
        if expect_receipt:
            assert receipt == WrittenFiles(stat_document_files(staging).fingerprint,
                                           document_signature("a/b/knowledge/C/D", files))
        else:
            assert receipt is None


def test_written_files_survive_the_queue_payload() -> None:
    receipt = WrittenFiles("f" * 64, "s" * 64)
    assert WrittenFiles.from_payload(receipt.as_payload()) == receipt
    assert WrittenFiles.from_payload(None) is None
    assert WrittenFiles.from_payload({"fingerprint": "f"}) is None


def memory_db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.row_factory = sqlite3.Row
    for step in repo.MIGRATIONS.steps:
        for statement in split_statements(step):
            conn.execute(statement)
    return conn


def test_saved_rows_read_back_as_the_projection_and_keep_times_and_extractor() -> None:
    conn = memory_db()
    content = content_from_extraction(DOC_ID, "Title", by_hand())
    doc_dir = f"default_app/default_project/knowledge/Technology/Title_{DOC_ID}"
    rows = project(content, doc_dir=doc_dir, app_id="default", project_id="default", content_sha256="abc",
                   extractor="llm")
    repo.save_rows(conn, rows, now=10.0)
    assert repo.load_rows(conn, DOC_ID) == rows
    # A writer that does not know the extractor (the cascade, PATCH) keeps it; times are kept too.
    repo.save_rows(conn, project(content, doc_dir=doc_dir, app_id="default", project_id="default"), now=20.0)
    stored = repo.get_document(conn, DOC_ID)
    assert (stored.extractor, stored.created_at, stored.updated_at) == ("llm", 10.0, 20.0)
    assert {row["created_at"] for row in repo.list_topics(conn, DOC_ID)} == {10.0}
    assert stored.topic_count == content.topic_count == len(content.topics) - 1
    assert repo.load_rows(conn, "d_000000000000") is None


def test_hit_details_read_topics_with_their_documents_in_one_query_and_leave_out_what_is_gone() -> None:
    conn = memory_db()
    content = content_from_extraction(DOC_ID, "Title", by_hand())
    doc_dir = f"default_app/default_project/knowledge/Technology/Title_{DOC_ID}"
    repo.save_rows(conn, project(content, doc_dir=doc_dir, app_id="default", project_id="default"), now=10.0)
    topics = repo.list_topics(conn, DOC_ID)
    ids = [row["node_id"] for row in topics]
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    details = repo.hit_details(conn, [*ids, "d_000000000000_1"], with_content=False)
    conn.set_trace_callback(None)
    assert len(statements) == 1 and set(details) == set(ids)
    first = details[ids[1]]
    assert first["topic_name"] == topics[1]["topic_name"] and first["depth"] == topics[1]["depth"]
    assert first["document"] == {"title": "Title", "summary": repo.get_document(conn, DOC_ID).summary}
    assert "content" not in first
    assert repo.hit_details(conn, ids[1:2], with_content=True)[ids[1]]["content"] == topics[1]["content"]
    repo.delete_document(conn, DOC_ID)
    assert repo.hit_details(conn, ids, with_content=True) == {}

