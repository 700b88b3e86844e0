"""Markdown read by a CommonMark parser in the built-in extractor (issue #12 item 3)."""

from __future__ import annotations

import pytest

from everos.knowledge import DEFAULT_CATEGORIES, ExtractedDocument, TopicNode, extract_structure, render_document_files
from everos.knowledge._markdown import parse_topic_md
from everos.knowledge._outline import PARSE_LINE_LIMIT, normalize_label, read_outline
from everos.knowledge._text import clean_inline


def extract(text: str) -> ExtractedDocument:
    return extract_structure(text, "Doc", DEFAULT_CATEGORIES)


def names(node: TopicNode, depth: int = 0) -> list[tuple[int, str]]:
    rows = [(depth, node.name)] if depth else []
    for child in node.children:
        rows.extend(names(child, depth + 1))
    return rows


def topic(doc: ExtractedDocument, name: str) -> TopicNode:
    pending = list(doc.root.children)
    while pending:
        node = pending.pop(0)
        if node.name == name:
            return node
        pending.extend(node.children)
    raise AssertionError(f"no topic {name!r} in {names(doc.root)}")


README = """[![CI](https://ci.example/badge.svg)](https://ci.example) [![PyPI](https://img/pypi.svg)](https://pypi)
<!-- generated from docs/readme.md; edit that file -->

# Widget

Widget turns text into topics. It runs offline.

## Install

```sh
pip install widget
```

## Usage

Call `widget.run()` and read the docs.
"""


def test_setext_headings_are_topics() -> None:
    """issue #12 item 3: `===` and `---` underlined headings become topics with levels 1 and 2."""
    doc = extract("Alpha\n=====\n\nfirst text\n\nAlpha one\n---------\n\none text\n\nBeta\n====\n\nsecond\n")
    assert names(doc.root) == [(1, "Alpha"), (2, "Alpha one"), (1, "Beta")]
    assert topic(doc, "Alpha one").content == "one text"


def test_setext_and_atx_headings_mix() -> None:
    """issue #12 item 3: setext and ATX headings nest by level in one tree."""
    doc = extract("# A\nx\n\nB\n-\ny\n\n### B1\nz\n")
    assert names(doc.root) == [(1, "A"), (1, "B"), (2, "B1")]


@pytest.mark.parametrize("body", [
    "```\n# fenced\n```\n",
    "~~~md\n# fenced\n~~~\n",
    "- item\n\n  # in a list\n",
    "1. # numbered item heading\n",
    "> # quoted\n",
    "> quote\n>\n> Quoted\n> ======\n",
])
def test_headings_inside_fences_lists_and_quotes_are_not_topics(body: str) -> None:
    """issue #12 item 3: `#` lines in fences, list items and block quotes stay text."""
    doc = extract(f"# A\nx\n\n{body}\n# B\ny\n")
    assert names(doc.root) == [(1, "A"), (1, "B")]
    assert body.strip() in doc.root.children[0].content


def test_definition_used_by_two_topics_is_in_both() -> None:
    """issue #12 item 3: a reference definition travels to every topic that uses its label."""
    text = ("# A\nSee [the guide][guide].\n\n[guide]: https://guide.example \"Guide\"\n\n"
            "# B\nAlso [Guide][] here.\n\n# C\nAnd [guide] again.\n\n# D\nNo links.\n")
    doc = extract(text)
    definition = '[guide]: https://guide.example "Guide"'
    for name in ("A", "B", "C"):
        assert topic(doc, name).content.count(definition) == 1
    assert definition not in topic(doc, "D").content


def test_first_definition_of_a_label_wins() -> None:
    """issue #12 item 3: of two definitions of one label the first travels, as CommonMark reads it."""
    text = "# A\nUse [x][Ref].\n\n# B\n[ref]: https://first.example\n\n# C\n[REF]: https://second.example\n"
    doc = extract(text)
    assert topic(doc, "A").content.endswith("[ref]: https://first.example")
    assert "second.example" not in topic(doc, "A").content
    assert topic(doc, "C").content == "[REF]: https://second.example"


def test_inline_link_text_is_not_a_label_use() -> None:
    """issue #12 item 3: `[guide](url)` is an inline link, so the `guide` definition does not travel."""
    doc = extract("# A\n[guide](https://other.example)\n\n# B\n[guide]: https://guide.example\n")
    assert "guide.example" not in topic(doc, "A").content


def test_readme_with_badges_and_comment_is_summarised_from_prose() -> None:
    """issue #12 item 3: badge line and HTML comment stay in content, the summary is the first prose."""
    doc = extract(README)
    assert names(doc.root) == [(1, "Widget"), (1, "Install"), (1, "Usage")]
    widget = topic(doc, "Widget")
    assert widget.summary == "Widget turns text into topics. It runs offline."
    assert widget.content.startswith("[![CI](https://ci.example/badge.svg)]")
    assert "<!-- generated" in widget.content
    assert doc.summary.startswith("Widget turns text into topics.")


def test_badges_and_html_never_name_a_topic() -> None:
    """issue #12 item 3: text without a heading is named by its prose, not its badges or HTML."""
    doc = extract("[![CI](https://ci.example/b.svg)](https://ci.example)\n\n<div align=\"center\">\n<img src=x>\n"
                  "</div>\n\nCats sleep all day long. They purr.\n")
    (only,) = doc.root.children
    assert only.name == "Cats sleep all day long"
    assert only.summary == "Cats sleep all day long. They purr."


def test_code_only_topic_has_no_code_as_summary() -> None:
    """issue #12 item 3: a topic of code alone is summarised by its name, never by its code."""
    doc = extract(README)
    install = topic(doc, "Install")
    assert "pip install widget" in install.content
    assert install.summary == "Install"
    indented = topic(extract("# A\nx\n\n# Run\n\n    make all\n    make test\n"), "Run")
    assert indented.summary == "Run"


def test_definitions_never_summarise() -> None:
    """issue #12 item 3: a topic of link definitions alone is not summarised by them."""
    doc = extract("# A\n[a][x]\n\n# Refs\n[x]: https://x.example\n")
    assert topic(doc, "Refs").summary == "Refs"


def test_reference_links_render_as_their_text() -> None:
    """issue #12 item 3: clean_inline turns `[t][label]`, `[t][]` and badges into plain text."""
    text = "See [the docs][docs] and [FAQ][] or [x](http://a.b/c_(d))."
    assert clean_inline(text) == "See the docs and FAQ or x."
    assert clean_inline("[![CI](https://ci/b.svg)](https://ci)") == "CI"


def test_outline_lines_and_ranges() -> None:
    """issue #12 item 3: the outline gives top-level headings, first definitions and non-prose lines."""
    outline = read_outline("# T\n\nSub\n---\n\n```\ncode\n```\n\n<!-- c -->\n\n[a]: /1\n[A]: /2\n")
    assert outline is not None
    assert [(h.line, h.body_line, h.level, h.text) for h in outline.headings] == [(0, 1, 1, "T"), (2, 4, 2, "Sub")]
    first = outline.definitions[normalize_label("a")]
    assert (first.start, first.end) == (11, 12)
    assert outline.not_prose == ((5, 8), (9, 10), (11, 13))


def test_over_the_line_limit_the_line_scan_finds_topics() -> None:
    """issue #12 item 3: above PARSE_LINE_LIMIT lines the ATX line scan is used and still gives topics."""
    filler = "line of text\n" * (PARSE_LINE_LIMIT // 2)
    text = f"# A\n{filler}\nSetext\n======\n\n# B\n{filler}"
    assert read_outline(text) is None
    doc = extract(text)
    # The line scan knows ATX headings only: the setext heading stays text there.
    assert names(doc.root) == [(1, "A"), (1, "B")]
    assert "Setext\n======" in doc.root.children[0].content


def test_round_trip_through_topic_files() -> None:
    """issue #12 item 3: topics with travelling definitions render to topic files and parse back."""
    doc = extract(README + "\nSee [Widget docs][wd].\n\n[wd]: https://wd.example\n\n## More\n\nUse [wd].\n")
    files = render_document_files("d_0123456789ab", "Widget", doc)
    more = parse_topic_md(files["4_More.md"])
    assert more.content == "Use [wd].\n\n[wd]: https://wd.example"


@pytest.mark.parametrize("text", [
    "[" * 200_000,
    "> " * 10_000,
    "`" * 50_000,
    "# T\n" + "[" * 200_000 + "\n\n# U\n" + "![" * 100_000,
    "# " + "[a](" * 50_000 + "\n\n" + "[x]: y\n" * 1000 + "[x]" * 50_000,
    "# A\n" + "- " * 20_000 + "\n# B\n" + "<!--" * 50_000,
])
def test_hostile_markdown_returns_topics(text: str) -> None:
    """issue #12 item 3: bracket floods, deep quotes and unclosed backticks return with topics."""
    doc = extract(text)
    assert doc.root.children


def test_front_matter_is_neither_a_topic_nor_a_summary() -> None:
    """issue #12 item 3: a leading `---` YAML block is no setext heading and stays in the content."""
    doc = extract("---\ntitle: Widget\ntags: [a, b]\n---\n\n# Widget\n\nWidget does things.\n\n## Use\n\nRun it.\n")
    assert names(doc.root) == [(1, "Widget"), (1, "Use")]
    widget = topic(doc, "Widget")
    assert widget.content.startswith("---\ntitle: Widget\n")
    assert widget.summary == "Widget does things."
    outline = read_outline("---\na: b\n---")
    assert outline is not None and outline.not_prose == ((0, 3),) and not outline.headings
