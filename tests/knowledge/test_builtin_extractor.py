"""The built-in extractor: structure from headings and paragraphs, offline and deterministic (G11)."""

from __future__ import annotations

import pytest

from everos.errors import ExtractionEmpty
from everos.knowledge import (
    DEFAULT_CATEGORIES,
    MAX_TOPICS,
    ExtractedDocument,
    TopicNode,
    extract_structure,
    flatten,
    render_document_files,
    topic_count,
)

GUIDE = """# Kubernetes Guide

This guide explains how to deploy Python services on Kubernetes. It covers containers and clusters.

## Installing

Install docker and kubectl. Then configure the cluster.

```bash
# not a heading
kubectl apply -f app.yaml
```

### Linux

On Linux use apt.

## Deploying ##

Deploy with `kubectl apply`. Read [the docs](http://example.com) first.
"""


def extract(text: str, title: str = "Doc", **kwargs: object) -> ExtractedDocument:
    return extract_structure(text, title, DEFAULT_CATEGORIES, **kwargs)


def outline(node: TopicNode, depth: int = 0) -> list[tuple[int, str]]:
    rows = [(depth, node.name)] if depth else []
    for child in node.children:
        rows.extend(outline(child, depth + 1))
    return rows


def test_headings_become_a_tree_under_an_unwrapped_title() -> None:
    doc = extract(GUIDE)
    assert outline(doc.root) == [(1, "Kubernetes Guide"), (1, "Installing"), (2, "Linux"), (1, "Deploying")]


def test_topic_content_is_its_own_prose_without_the_heading() -> None:
    installing = extract(GUIDE).root.children[1]
    assert installing.content.startswith("Install docker and kubectl.")
    assert "```bash\n# not a heading\n" in installing.content
    assert "On Linux" not in installing.content
    assert installing.children[0].content == "On Linux use apt."


def test_summaries_are_leading_sentences_in_plain_text() -> None:
    doc = extract(GUIDE)
    assert doc.root.children[1].summary == "Install docker and kubectl. Then configure the cluster."
    assert doc.root.children[2].summary == "Deploy with kubectl apply. Read the docs first."
    assert doc.summary.startswith("This guide explains how to deploy Python services on Kubernetes.")
    assert doc.root.summary == doc.summary


def test_fences_of_every_kind_hide_headings() -> None:
    text = "# A\nx\n~~~\n# hidden\n~~~\n````\n```\n# hidden too\n````\n    # indented code\n# B\ny\n"
    assert [name for _, name in outline(extract(text).root)] == ["A", "B"]


def test_unclosed_fence_hides_the_rest() -> None:
    assert outline(extract("# A\nx\n```\n# B\n").root) == [(1, "A")]


def test_hash_without_space_is_not_a_heading() -> None:
    assert len(extract("# A\n#hashtag and ####### seven\n# B\n").root.children) == 2


def test_text_before_the_first_heading_is_an_intro_topic() -> None:
    doc = extract("Some preface here.\n\n# One\nfirst\n# Two\nsecond\n")
    assert outline(doc.root) == [(1, "Introduction"), (1, "One"), (1, "Two")]
    assert doc.root.children[0].content == "Some preface here."


def test_several_top_level_headings_are_kept() -> None:
    assert outline(extract("# A\nx\n# B\ny\n").root) == [(1, "A"), (1, "B")]


def test_skipped_levels_nest_under_the_nearest_heading() -> None:
    assert outline(extract("# A\nx\n### A1\ny\n## A2\nz\n# B\nw\n").root) == [
        (1, "A"), (2, "A1"), (2, "A2"), (1, "B"),
    ]


def test_empty_heading_is_named_from_its_text() -> None:
    doc = extract("# A\nx\n#\nQuarterly numbers went up. More text.\n")
    assert doc.root.children[1].name == "Quarterly numbers went up"


def test_parent_without_prose_summarises_its_children() -> None:
    doc = extract("# A\n## A1\nx\n## A2\ny\n# B\nz\n")
    assert doc.root.children[0].summary == "Covers: A1, A2."


def test_plain_text_groups_paragraphs() -> None:
    paragraphs = [f"Paragraph {i} talks about item {i}. " * 10 for i in range(30)]
    doc = extract("\n\n".join(paragraphs))
    assert 1 < len(doc.root.children) < 30
    assert all(not child.children for child in doc.root.children)
    joined = "\n\n".join(child.content for child in doc.root.children)
    assert all(p.strip() in joined for p in paragraphs)


def test_short_plain_text_is_one_topic_named_by_its_first_words() -> None:
    doc = extract("Cats are small domestic animals that like to sleep all day.\n\nThey purr.")
    assert [child.name for child in doc.root.children] == ["Cats are small domestic animals that like to"]


def test_many_headings_are_capped() -> None:
    text = "".join(f"## Section {i}\nBody of section {i}.\n" for i in range(3 * MAX_TOPICS))
    doc = extract(text)
    assert len(doc.root.children) <= MAX_TOPICS
    assert doc.notes
    assert "Body of section 599." in doc.root.children[-1].content


def test_deep_headings_become_text_before_sections_merge() -> None:
    details = "".join(f"### Detail {{i}}.{j}\nd\n" for j in range(5))
    text = "".join(f"# Part {i}\nintro {i}\n" + details.format(i=i) for i in range(60))
    doc = extract(text)
    assert [depth for depth, _ in outline(doc.root)] == [1] * 60
    assert "### Detail 0.4" in doc.root.children[0].content


def test_huge_flat_text_is_capped() -> None:
    doc = extract("\n\n".join(f"Sentence number {i} of a very long text." for i in range(40_000)))
    assert 1 < len(doc.root.children) <= MAX_TOPICS


def test_a_few_mib_complete() -> None:
    """Linear time: a few MiB of mixed markdown finishes (no wall-clock assertion; see bench/)."""
    block = "## Heading {i}\n\n" + "Words about markets, banks and stocks. " * 50 + "\n\n```\n# code\n```\n"
    text = "".join(block.format(i=i) for i in range(2000)) + "x" * 1_000_000 + "\n\n" + "a\n\n" * 500_000
    doc = extract(text)
    assert 0 < topic_count(flatten("d_0123456789ab", "Big", doc)) <= MAX_TOPICS


def test_hostile_heading_flood_is_read_as_text() -> None:
    doc = extract("#\n" * 600_000)
    assert 0 < len(doc.root.children) <= MAX_TOPICS
    assert any("read as text" in note for note in doc.notes)


@pytest.mark.parametrize("text", ["", " ", "\n\n\t\r\n"])
def test_empty_text_raises_extraction_empty(text: str) -> None:
    with pytest.raises(ExtractionEmpty):
        extract(text)


def test_summaries_and_names_are_bounded() -> None:
    doc = extract("# " + "Long heading " * 50 + "\n" + "word " * 5000 + "\n\n# B\nb\n")
    first = doc.root.children[0]
    assert len(first.name) <= 120 and len(first.summary) <= 300 and len(doc.summary) <= 600


def test_language_guess() -> None:
    assert extract(GUIDE).language == "en"
    assert extract("人工智能是计算机科学的一个分支。机器学习是人工智能的核心。").language == "zh"
    assert extract("Привет, как дела? Это текст на русском языке.").language == "other"
    assert extract("1234 5678").language == "other"


def test_chinese_text_gets_chinese_labels_and_names() -> None:
    doc = extract("前言部分。\n\n# 第一章\n人工智能是计算机科学的一个分支。\n# 第二章\n机器学习。\n")
    assert [child.name for child in doc.root.children] == ["引言", "第一章", "第二章"]
    assert "章节：" in doc.summary


def test_keywords_are_frequent_terms() -> None:
    assert extract(GUIDE).keywords[:2] == ("kubernetes", "guide")
    assert len(extract(GUIDE).keywords) == 5


def test_category_is_classified_unless_given() -> None:
    assert extract(GUIDE).category_id == "Technology"
    assert extract(GUIDE, category_id="Legal").category_id == "Legal"
    assert extract("Lorem ipsum dolor sit amet.").category_id == "Others"


def test_crlf_input_matches_lf() -> None:
    assert extract(GUIDE.replace("\n", "\r\n")) == extract(GUIDE)


def test_extraction_is_deterministic() -> None:
    assert extract(GUIDE) == extract(GUIDE)


def test_output_renders_to_everos_files() -> None:
    files = render_document_files("d_0123456789ab", "K8s", extract(GUIDE))
    assert list(files) == ["index.md", "1_Kubernetes_Guide.md", "2_Installing.md", "3_Linux.md", "4_Deploying.md"]
