"""The built-in atomic-fact splitter: a topic's prose cut into short standalone sentences (G11).

With no LLM configured, a topic's facts are its sentences. The markdown is read as blocks
(paragraphs and list items; headings, tables, code and rules are skipped), inline markup is
removed, and each block is cut into sentences:

* after ``。！？；`` always (Chinese and Japanese put no space after them);
* after ``.``, ``!`` or ``?`` (and any closing quotes or brackets) followed by whitespace, unless
  the next word starts in lower case, or the ``.`` ends a known abbreviation (``e.g.``, ``Dr.``,
  ``etc.``) or an initial (``J. Smith``). A decimal (``3.14``) has no space after its dot, so it
  never splits.

Fragments too short to state anything (fewer than three words or six CJK characters) and lead-ins
ending in a colon are dropped; sentences over ``MAX_FACT_CHARS`` are cut at ``;`` or ``,``, then at
whitespace. Whitespace is normalised and repeats are dropped. Everything here is pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

__all__ = ["MAX_FACT_CHARS", "split_facts"]

MAX_FACT_CHARS: Final = 300
_MIN_WEIGHT: Final = 6  # a word outside CJK weighs 2, a CJK character 1

_CJK: Final = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_CHAR: Final = re.compile(rf"[{_CJK}]")
_WORD: Final = re.compile(rf"[^\W_{_CJK}]+")
_SPACE_BETWEEN_CJK: Final = re.compile(rf"(?<=[{_CJK}，。！？；：、])\s+(?=[{_CJK}])")

_FENCE: Final = re.compile(r"^\s*(```|~~~)")
_HEADING: Final = re.compile(r"^\s*#{1,6}(\s|$)")
_LIST_ITEM: Final = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+")
_RULE: Final = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$")
_TABLE_ROW: Final = re.compile(r"^\s*\|")
_QUOTE: Final = re.compile(r"^\s*>\s?")

_IMAGE: Final = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK: Final = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_HTML_TAG: Final = re.compile(r"</?[A-Za-z][^>]{0,200}>")
_EMPHASIS: Final = re.compile(r"(\*\*|__|\*|`)(?=\S)(.+?)(?<=\S)\1")

_BOUNDARY: Final = re.compile(r"([。！？；]+[”’」』）)]*)\s*|([.!?]+['\"”’)\]]*)(\s+)(?=\S)")
_WORD_BEFORE: Final = re.compile(r"([A-Za-z][A-Za-z.]*)$")
_ABBREVIATIONS: Final = frozenset(
    "e.g i.e etc vs cf al approx ca mr mrs ms dr prof sr jr st mt no nos vol fig figs eq eqs ch sec "
    "inc ltd co corp dept est jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k a.m p.m ph.d".split()
)
_SOFT_CUT: Final = re.compile(r"(?<=[;,；，])\s*")


def split_facts(text: str, max_facts: int) -> list[str]:
    """At most ``max_facts`` standalone sentences of the markdown ``text``, in document order."""
    facts: list[str] = []
    if max_facts <= 0:
        return facts
    seen: set[str] = set()
    for block in _blocks(text):
        for sentence in _sentences(block):
            for fact in _limit_length(sentence):
                key = fact.casefold()
                if key in seen or not _states_something(fact):
                    continue
                seen.add(key)
                facts.append(fact)
                if len(facts) >= max_facts:
                    return facts
    return facts


def _blocks(text: str) -> Iterator[str]:
    """Paragraphs and list items of markdown ``text``, inline markup removed, whitespace normalised."""
    lines: list[str] = []
    in_fence = False
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
            yield from _flush(lines)
            continue
        if in_fence:
            continue
        if not line.strip() or _HEADING.match(line) or _RULE.match(line) or _TABLE_ROW.match(line):
            yield from _flush(lines)
            continue
        item = _LIST_ITEM.match(line)
        if item:
            yield from _flush(lines)
            line = line[item.end():]
        lines.append(_QUOTE.sub("", line))
    yield from _flush(lines)


def _flush(lines: list[str]) -> Iterator[str]:
    if not lines:
        return
    block = " ".join(lines)
    lines.clear()
    block = _IMAGE.sub(r"\1", block)
    block = _LINK.sub(r"\1", block)
    block = _HTML_TAG.sub(" ", block)
    block = _EMPHASIS.sub(r"\2", block)
    block = " ".join(block.split())
    block = _SPACE_BETWEEN_CJK.sub("", block)
    if block:
        yield block


def _sentences(block: str) -> Iterator[str]:
    start = 0
    for match in _BOUNDARY.finditer(block):
        if match.group(1):
            end = match.start(1) + len(match.group(1))
        else:
            following = block[match.end()]
            if following.islower():
                continue
            if match.group(2) == "." and _is_abbreviation(block[start:match.start()]):
                continue
            end = match.start(3)
        sentence = block[start:end].strip()
        if sentence:
            yield sentence
        start = match.end()
    rest = block[start:].strip()
    if rest:
        yield rest


def _is_abbreviation(before: str) -> bool:
    found = _WORD_BEFORE.search(before)
    if not found:
        return False
    word = found.group(1).lower().strip(".")
    return len(word) == 1 or word in _ABBREVIATIONS


def _limit_length(sentence: str) -> Iterator[str]:
    if len(sentence) <= MAX_FACT_CHARS:
        yield sentence
        return
    piece = ""
    for part in _SOFT_CUT.split(sentence):
        if piece and len(piece) + 1 + len(part) > MAX_FACT_CHARS:
            yield from _hard_wrap(piece)
            piece = part
        else:
            piece = f"{piece} {part}" if piece and not _CJK_CHAR.match(part[:1]) else piece + part
    if piece:
        yield from _hard_wrap(piece)


def _hard_wrap(text: str) -> Iterator[str]:
    while len(text) > MAX_FACT_CHARS:
        cut = text.rfind(" ", 0, MAX_FACT_CHARS + 1)
        cut = cut if cut > MAX_FACT_CHARS // 2 else MAX_FACT_CHARS
        yield text[:cut].strip()
        text = text[cut:].strip()
    if text:
        yield text


def _states_something(fact: str) -> bool:
    if fact.endswith((":", "：")):
        return False  # a lead-in to a list, not a statement
    weight = 2 * len(_WORD.findall(fact)) + len(_CJK_CHAR.findall(fact))
    return weight >= _MIN_WEIGHT
