"""The block structure of a markdown text, read by a CommonMark parser (markdown-it-py).

:func:`read_outline` parses block level only (no inline pass) and keeps what the built-in
extractor needs, in 0-based source lines (``token.map``): the top-level headings (ATX and setext,
never inside a fence, a list or a block quote), the reference-link definitions (the first one of a
label wins, as in CommonMark), and the line ranges that are not prose: code blocks (fenced and
indented), HTML blocks (comments included), definitions, a leading YAML front matter block
(``---`` lines around it, as Jekyll, Hugo and Obsidian write it) and badge lines (a paragraph line made of
images and links around images only, like ``[![CI](badge.svg)](ci)``). Those stay in a topic's
content but never become its summary or its name.

The parser is linear but not cheap (a few seconds per 100,000 lines of dense markdown), so a text
of more than :data:`PARSE_LINE_LIMIT` lines is not parsed: :func:`read_outline` returns ``None``
and the caller falls back to its ATX line scan. Pure functions only; deterministic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from markdown_it import MarkdownIt
from markdown_it.common.utils import normalizeReference
from markdown_it.token import Token

from everos.knowledge._text import is_badge_line

__all__ = ["PARSE_LINE_LIMIT", "Definition", "OutlineHeading", "Outline", "normalize_label", "read_outline"]

PARSE_LINE_LIMIT: Final = 100_000
"""Most lines parsed; a longer text is read by the caller's ATX line scan instead."""

# Front matter: "---" on the first line, closed by "---" or "..." within the first 64 KiB.
_FRONT_MATTER_RE: Final = re.compile(r"---[ \t]*\n(?:[^\n]*\n)*?(?:---|\.\.\.)[ \t]*(?:\n|\Z)")
_FRONT_MATTER_MAX_CHARS: Final = 65_536
_NOT_PROSE_TOKENS: Final = frozenset({"fence", "code_block", "html_block", "definition"})


@dataclass(frozen=True)
class OutlineHeading:
    """A top-level heading: ``line`` is its first source line, ``body_line`` the line after it
    (a setext heading spans its text lines and the underline)."""

    line: int
    body_line: int
    level: int
    text: str


@dataclass(frozen=True)
class Definition:
    """A reference-link definition, source lines ``[start, end)``."""

    label: str
    start: int
    end: int


@dataclass(frozen=True)
class Outline:
    """What :func:`read_outline` found; ``not_prose`` ranges are sorted and do not overlap."""

    headings: tuple[OutlineHeading, ...]
    definitions: dict[str, Definition]
    not_prose: tuple[tuple[int, int], ...]


def _parser() -> MarkdownIt:
    # inline_definitions: markdown-it-py pushes a "definition" token (with its map) for each one.
    md = MarkdownIt("commonmark", {"inline_definitions": True})
    # The rule chains are compiled on first use; compile them now, so worker threads sharing the
    # parser only read it (each parse keeps its state in its own StateBlock).
    md.block.parse("# x\n", md, {}, [])
    return md


_MD: Final = _parser()


def normalize_label(label: str) -> str:
    """A link label as CommonMark matches it: case-folded, inner whitespace collapsed."""
    return normalizeReference(label)


def read_outline(text: str) -> Outline | None:
    """The outline of ``text`` (``\\n`` line ends), or ``None`` above :data:`PARSE_LINE_LIMIT` lines."""
    if text.count("\n") >= PARSE_LINE_LIMIT:
        return None
    ranges: list[tuple[int, int]] = []
    front = _FRONT_MATTER_RE.match(text[:_FRONT_MATTER_MAX_CHARS]) if text.startswith("---") else None
    if front is not None:
        # Parsed as blank lines (so it is no rule and no setext heading), line numbers unchanged.
        end_line = text.count("\n", 0, front.end()) + (not front.group().endswith("\n"))
        ranges.append((0, end_line))
        text = "\n" * front.group().count("\n") + text[front.end():]
    env: dict[str, object] = {}
    tokens: list[Token] = []
    _MD.block.parse(text, _MD, env, tokens)
    lines: list[str] | None = None
    headings: list[OutlineHeading] = []
    definitions: dict[str, Definition] = {}
    for i, token in enumerate(tokens):
        if token.map is None:
            continue
        start, end = token.map
        if token.type == "heading_open" and token.level == 0:
            inline = tokens[i + 1]
            headings.append(OutlineHeading(start, end, int(token.tag[1]), inline.content))
        elif token.type in _NOT_PROSE_TOKENS:
            ranges.append((start, end))
            if token.type == "definition":
                label = token.meta["id"]
                definitions.setdefault(label, Definition(label, start, end))
        elif token.type == "paragraph_open":
            content = tokens[i + 1].content
            if "![" in content:
                if lines is None:
                    lines = text.split("\n")
                ranges.extend((n, n + 1) for n in range(start, end) if is_badge_line(lines[n]))
    return Outline(tuple(headings), definitions, _merged(ranges))


def _merged(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return tuple(merged)
