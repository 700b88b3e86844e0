"""What a topic's vector reads (#13 item 2): its path and the words of its content a reader
sees, never the markup around them."""

from __future__ import annotations

import dataclasses
import time

import pytest

from everos.cascade._rows import EMBEDDING_TEXT_CHARS, embedding_text
from everos.knowledge import DEFAULT_CATEGORIES, extract_structure
from everos.knowledge._models import flatten
from everos.knowledge._text import searchable_text

README = """<!-- generated; do not edit -->
[![CI](https://ci.example/badge.svg)](https://ci.example) [![PyPI](https://img.shields.io/pypi/v/x.svg)][pypi]

Fetch pages **fast** with [a client](https://example.org/docs) and read their `headers`.
See <https://example.org> or https://example.org/more for more.

<div align="center"><img src="logo.png" alt="logo"></div>

| option | meaning |
|--------|---------|
| retries | how often to try again |

```python
client.get("/")
```

[pypi]: https://pypi.org/project/x
"""

RST = """|  |downloads| |stars|

.. |downloads| image:: https://img.shields.io/pypi/dm/x.svg
    :target: https://example.org/stats
    :alt: Downloads

Summary
=======

x reads process and system figures.
"""


def test_markup_is_dropped_and_the_words_stay() -> None:
    text = searchable_text(README, 2000)
    assert text.startswith("Fetch pages fast with a client and read their headers.")
    for gone in ("<!--", "badge", "shields", "https://", "<div", "logo.png", "pypi.org", "|", "```", "**", "---"):
        assert gone not in text, gone
    for kept in ("retries how often to try again", 'client.get("/")'):
        assert kept in text


def test_restructuredtext_directives_substitutions_and_underlines_are_dropped() -> None:
    assert searchable_text(RST, 2000) == "Summary x reads process and system figures."


def test_the_text_is_bounded_and_hostile_input_stays_cheap() -> None:
    assert len(searchable_text("word " * 10_000, 100)) <= 100
    hostile = "<!--" + "[" * 50_000 + "<a " * 50_000 + "|x" * 50_000
    started = time.monotonic()
    searchable_text(hostile, EMBEDDING_TEXT_CHARS)
    assert time.monotonic() - started < 5  # liveness: a regex that backtracks would take minutes


@pytest.mark.parametrize("content, expected_body", [
    (README, "Fetch pages fast"),
    ("![only a badge](b.svg)", "the summary"),  # nothing a reader sees: the summary stands in
])
def test_a_topics_vector_reads_its_path_then_its_visible_words(content: str, expected_body: str) -> None:
    extracted = extract_structure(f"# Usage\n\n{content}\n", "httpx", DEFAULT_CATEGORIES)
    topic = dataclasses.replace(flatten("doc1", "httpx", extracted)[1], summary="the summary")
    first, _, body = embedding_text(topic).partition("\n")
    assert first == "httpx > Usage"
    assert body.startswith(expected_body)
