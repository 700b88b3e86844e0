"""The category taxonomy: EverOS's defaults, the editable ``.taxonomy.md``, offline classification (G11)."""

from __future__ import annotations

import pytest
import yaml

from everos.knowledge import (
    DEFAULT_CATEGORIES,
    Category,
    classify,
    parse_markdown,
    parse_taxonomy_md,
    render_taxonomy_md,
)

EVEROS_DEFAULT_IDS = [
    "Technology", "Science", "Medical", "Finance", "Legal", "Education", "Business", "Engineering", "Arts",
    "Sports", "Travel", "Food", "Environment", "Politics", "History", "Psychology", "Agriculture", "RealEstate",
    "Media", "Others",
]


def test_default_categories_are_everos_twenty_in_order() -> None:
    assert [c.id for c in DEFAULT_CATEGORIES] == EVEROS_DEFAULT_IDS


def test_default_categories_have_one_line_descriptions_and_keywords() -> None:
    for category in DEFAULT_CATEGORIES:
        assert category.description and "\n" not in category.description and len(category.description) < 120
        assert "---" not in category.description  # EverOS's reader splits the file on "---"
        if category.id != "Others":
            assert len(category.keywords) >= 10
            assert all(k == k.strip() and k for k in category.keywords)


def test_render_taxonomy_md_shape() -> None:
    meta, body = parse_markdown(render_taxonomy_md(DEFAULT_CATEGORIES))
    assert body == ""
    assert list(meta) == ["kind", "categories"]
    assert meta["kind"] == "knowledge_taxonomy"
    assert [list(entry)[:2] for entry in meta["categories"]] == [["id", "description"]] * 20


def test_render_omits_empty_keywords() -> None:
    meta, _ = parse_markdown(render_taxonomy_md([Category("X", "d")]))
    assert meta["categories"] == [{"id": "X", "description": "d"}]


def test_taxonomy_round_trip() -> None:
    assert parse_taxonomy_md(render_taxonomy_md(DEFAULT_CATEGORIES)) == DEFAULT_CATEGORIES


def test_parse_reads_an_everos_file() -> None:
    """EverOS writes id and description only."""
    text = "---\n" + yaml.safe_dump(
        {"kind": "knowledge_taxonomy", "categories": [{"id": "Technology", "description": "Computers."},
                                                      {"id": "Others", "description": "Rest."}]},
        sort_keys=False,
    ) + "---\n"
    assert parse_taxonomy_md(text) == (Category("Technology", "Computers."), Category("Others", "Rest."))


def test_parse_is_tolerant_of_hand_edits() -> None:
    text = """---
kind: knowledge_taxonomy
categories:
  - id: Real Estate
    description: Houses.
    keywords: house, rent , mortgage
  - Cooking
  - id: ../../etc
  - id: ".."
  - id: ""
  - id: [not, an, id]
  - id: true
  - description: no id
  - 42
  - id: cooking
    description: duplicate, ignoring case
  - id: 2024
---
"""
    assert parse_taxonomy_md(text) == (
        Category("Real_Estate", "Houses.", ("house", "rent", "mortgage")),
        Category("Cooking", ""),
        Category("etc", ""),
        Category("2024", ""),
    )


@pytest.mark.parametrize(
    "text",
    ["", "no frontmatter at all", "---\nkind: x\n---\n", "---\ncategories: {a: 1}\n---\n", "---\n[unclosed\n---\n"],
)
def test_parse_without_usable_categories_is_empty(text: str) -> None:
    assert parse_taxonomy_md(text) == ()


def test_parse_caps_the_number_of_categories() -> None:
    text = "---\n" + yaml.safe_dump({"categories": [f"C{i}" for i in range(2000)]}) + "---\n"
    assert len(parse_taxonomy_md(text)) == 500


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Deploying Python microservices on Kubernetes with Docker and a Postgres database.", "Technology"),
        ("The patient was given a new drug after the diagnosis; the clinical treatment reduced symptoms.", "Medical"),
        ("Investors watched the stock market as bond yields rose and bank earnings beat forecasts.", "Finance"),
        ("The court ruled the contract clause void; the plaintiff's lawyer cited the statute.", "Legal"),
        ("Knead the dough, add the ingredients from the recipe and bake in the kitchen oven.", "Food"),
        ("The team won the football match and the coach praised every player in the league.", "Sports"),
        ("我们使用人工智能算法和数据库来构建软件。", "Technology"),
        ("Mortgage rates and rent levels decide whether a tenant buys a house.", "RealEstate"),
    ],
)
def test_classify_matches_terms(text: str, expected: str) -> None:
    assert classify(text, DEFAULT_CATEGORIES) == expected


def test_classify_without_a_clear_match_is_others() -> None:
    assert classify("Lorem ipsum dolor sit amet.", DEFAULT_CATEGORIES) == "Others"
    assert classify("", DEFAULT_CATEGORIES) == "Others"
    assert classify("software software", []) == "Others"


def test_classify_needs_more_than_one_weak_hit() -> None:
    assert classify("One mention of software in passing.", DEFAULT_CATEGORIES) == "Others"


def test_classify_folds_plurals() -> None:
    assert classify("databases and servers", [Category("Tech", "", ("database", "server"))]) == "Tech"


def test_classify_uses_custom_categories() -> None:
    custom = (Category("Gardening", "Growing plants.", ("compost", "seedling")), Category("Others", ""))
    assert classify("Add compost around each seedling.", custom) == "Gardening"


def test_classify_never_scores_others() -> None:
    custom = (Category("Others", "", ("compost",)),)
    assert classify("compost compost compost", custom) == "Others"


def test_classify_ties_go_to_the_earlier_category() -> None:
    cats = (Category("A", "", ("alpha",)), Category("B", "", ("alpha",)))
    assert classify("alpha alpha", cats) == "A"
    assert classify("alpha alpha", cats[::-1]) == "B"


def test_classify_caps_a_repeated_term() -> None:
    cats = (Category("A", "", ("alpha",)), Category("B", "", ("beta", "gamma", "delta")))
    assert classify("alpha " * 100 + "beta gamma delta " * 2, cats) == "B"
