"""Plain-text statistics for the built-in extractor: summaries, names, language, keywords.

Every function reads a bounded prefix or sample of its input, so its cost does not grow with the
size of a document. Pure functions only; deterministic.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Final

__all__ = [
    "bounded", "clean_inline", "guess_language", "heading_name", "is_badge_line", "keywords", "lead_sentences",
    "name_from_text", "searchable_text",
]

# How much of a topic a summary or a name looks at.
_LEAD_WINDOW_CHARS: Final = 4000
_NAME_WINDOW_CHARS: Final = 2000
_NAME_MAX_WORDS: Final = 8
_NAME_MAX_CHARS: Final = 60
# A name without spaces (Chinese, or one long token) is cut shorter.
_NAME_MAX_CHARS_UNSPACED: Final = 20

_FENCE_LINE_RE: Final = re.compile(r" {0,3}(?:`{3,}|~{3,}).*")
# Inline links (a destination may hold one level of parentheses), full and collapsed reference
# links. No class admits "[" or "(", so a flood of brackets costs one step per character (the
# old ``[^\]\n]*`` rescanned the rest of the line from every "[": 20,000 of them took 5 s).
_LINK_RE: Final = re.compile(
    r"!?\[([^\[\]\n]*)\](?:\((?:[^()\n]|\([^()\n]*\))*\)|\[[^\[\]\n]*\])"
)
_IMAGE_RE: Final = re.compile(r"!\[[^\[\]\n]*\](?:\((?:[^()\n]|\([^()\n]*\))*\)|\[[^\[\]\n]*\])?")
_EMPTY_LINK_RE: Final = re.compile(r"\[[ \t]*\](?:\((?:[^()\n]|\([^()\n]*\))*\)|\[[^\[\]\n]*\])")
# clean_inline reads at most this much (a name or a heading; summaries read their own window).
_INLINE_MAX_CHARS: Final = 8000
_LINE_MARKUP_RE: Final = re.compile(r"^\s*(?:#{1,6}(?:\s+|$)|>\s?|[-*+]\s+|\d{1,9}[.)]\s+)+")
_TABLE_RULE_RE: Final = re.compile(r"^\s*\|?[\s:|-]*-{3,}[\s:|-]*$")
_SENTENCE_END_RE: Final = re.compile(r"(?<=[.!?])\s+|(?<=[。！？；])")
_WORD_RE: Final = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")
_HAN_RE: Final = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_HAN_RUN_RE: Final = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]{2,}")
_ASCII_LETTER_RE: Final = re.compile(r"[A-Za-z]")
_LETTER_RE: Final = re.compile(r"[^\W\d_]")
_NAME_TRAILING: Final = " .:;,。：；，、"
_STOPWORDS: Final = frozenset(
    """a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having
    he her here hers herself him himself his how however i if in into is it its itself just like may me might
    more most must my myself no nor not now of off on once only or other our ours ourselves out over own same
    shall she should so some such than that the their theirs them themselves then there these they this those
    through to too under until up upon us use used using very via was we were what when where which while who
    whom why will with within without would yet you your yours yourself yourselves one two etc many much get
    gets make makes new see""".split()
)
_HTML_COMMENT_RE: Final = re.compile(r"<!--.*?(?:-->|$)", re.S)
_HTML_TAG_RE: Final = re.compile(r"</?[A-Za-z][^<>\n]{0,2000}>")
_LINK_DEFINITION_RE: Final = re.compile(r"^ {0,3}\[[^\[\]\n]+\]:[ \t]*\S.*$", re.M)
# reStructuredText (many READMEs): directives and their options, |substitution| references.
_RST_MARKUP_RE: Final = re.compile(r"^[ \t]*(?:\.\. .*|:[\w-]+:.*)$|\|\w[\w -]{0,60}\|(?:_{1,2})?", re.M)
# A setext or reStructuredText underline (``=====``, ``-----``).
_UNDERLINE_RE: Final = re.compile(r"[ \t]*([=\-~^\"'`#*+])\1{2,}[ \t]*")
_BARE_URL_RE: Final = re.compile(r"\b(?:https?|ftp)://[^\s<>()]+")
_HAN_STOP_CHARS: Final = frozenset("的了是在和有我你他她它们这那个不也就都与及或为以上中对等把被从到而之其")


def lead_sentences(content: str, limit: int) -> str:
    """The leading sentences of ``content`` as plain text, at most ``limit`` characters.

    Markdown markup, code blocks and table rules are dropped; a first sentence longer than
    ``limit`` is cut at a word boundary with ``…``. Empty when there is no prose.
    """
    plain = _plain(content[:_LEAD_WINDOW_CHARS])
    if not plain:
        return ""
    summary = ""
    for sentence in _SENTENCE_END_RE.split(plain):
        sentence = sentence.strip()
        if not sentence:
            continue
        joined = summary + sentence if _HAN_RE.match(sentence) else f"{summary} {sentence}".strip()
        if len(joined) > limit:
            break
        summary = joined
    return summary or bounded(plain, limit)


def name_from_text(content: str) -> str:
    """A short name from the first words of ``content`` (up to 8 words or 60 characters)."""
    first_line = next((line for line in content[:_NAME_WINDOW_CHARS].split("\n") if line.strip()), "")
    plain = _plain(first_line[:500])
    first_sentence = _SENTENCE_END_RE.split(plain, maxsplit=1)[0].strip().rstrip(_NAME_TRAILING)
    words = first_sentence.split()
    if len(words) > 1:
        return bounded(" ".join(words[:_NAME_MAX_WORDS]), _NAME_MAX_CHARS)
    return bounded(first_sentence, _NAME_MAX_CHARS_UNSPACED)


def clean_inline(text: str) -> str:
    """Inline markdown to plain text: links to their text, no emphasis or code marks.

    Inline links ``[t](url)`` and reference links ``[t][label]``, ``[t][]`` become ``t``; a
    badge (``[![CI](badge.svg)](ci)``) becomes its image's text. Reads the first 8,000 characters.
    """
    text = _LINK_RE.sub(r"\1", text[:_INLINE_MAX_CHARS])
    text = _LINK_RE.sub(r"\1", text)  # a link around an image: the image went first
    text = text.replace("**", "").replace("__", "").replace("`", "")
    return " ".join(text.split())


def heading_name(raw: str) -> str:
    """A heading's text as a topic name: images and badges dropped, the rest :func:`clean_inline`."""
    raw = raw[:_INLINE_MAX_CHARS]
    return clean_inline(_EMPTY_LINK_RE.sub("", _IMAGE_RE.sub("", raw)))


def is_badge_line(line: str) -> bool:
    """True for a line made of images and links around images only (a README badge row)."""
    if "![" not in line:
        return False
    return not _EMPTY_LINK_RE.sub("", _IMAGE_RE.sub("", line)).strip()


def searchable_text(markdown: str, limit: int) -> str:
    """The words of ``markdown`` a reader sees, as one line of at most ``limit`` characters: what
    an embedder should read. HTML comments and tags, badge rows, images, link definitions, bare
    URLs, reStructuredText directives and substitutions, underlines, fence lines, table rules and
    line markup (``#``, ``>``, list marks) are dropped; links become their text; the text of code
    blocks stays (names people search for live there). Reads at most ``4 * limit`` characters."""
    text = _HTML_COMMENT_RE.sub(" ", markdown[: 4 * limit])
    text = _RST_MARKUP_RE.sub("", _LINK_DEFINITION_RE.sub("", text))
    lines = []
    for line in text.split("\n"):
        if (_FENCE_LINE_RE.fullmatch(line) or _TABLE_RULE_RE.match(line) or _UNDERLINE_RE.fullmatch(line)
                or is_badge_line(line)):
            continue
        lines.append(_LINE_MARKUP_RE.sub("", line))
    text = _HTML_TAG_RE.sub(" ", " ".join(lines))
    text = _EMPTY_LINK_RE.sub("", _IMAGE_RE.sub("", text))
    text = _LINK_RE.sub(r"\1", text)
    text = _BARE_URL_RE.sub("", text).replace("**", "").replace("__", "").replace("`", "").replace("|", " ")
    return " ".join(text.split())[:limit].rstrip()


def bounded(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at a space when one is near, ending in ``…``."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "…"


def guess_language(sample: str) -> str:
    """``zh`` when Han characters make a fifth of the letters; ``en`` for mostly-ASCII text with
    English function words; ``other`` otherwise."""
    letters = len(_LETTER_RE.findall(sample))
    if not letters:
        return "other"
    if len(_HAN_RE.findall(sample)) >= 0.2 * letters:
        return "zh"
    if len(_ASCII_LETTER_RE.findall(sample)) >= 0.8 * letters:
        words = _WORD_RE.findall(sample.casefold())
        if words and sum(word in _STOPWORDS for word in words) >= 0.08 * len(words):
            return "en"
    return "other"


def keywords(sample: str, heading_names: Iterable[str], count: int) -> tuple[str, ...]:
    """The ``count`` most frequent terms: words of 3+ letters that are not stopwords, and Han
    bigrams without function characters. Heading words count three times; ties keep first-seen
    order."""
    counts: Counter[str] = Counter(
        word for word in _WORD_RE.findall(sample.casefold()) if len(word) >= 3 and word not in _STOPWORDS
    )
    for run in _HAN_RUN_RE.findall(sample):
        counts.update(
            run[i : i + 2]
            for i in range(len(run) - 1)
            if run[i] not in _HAN_STOP_CHARS and run[i + 1] not in _HAN_STOP_CHARS
        )
    for name in heading_names:
        for word in _WORD_RE.findall(name.casefold()):
            if len(word) >= 3 and word not in _STOPWORDS:
                counts[word] += 3
    return tuple(word for word, _ in counts.most_common(count))


def _plain(text: str) -> str:
    lines, in_fence = [], False
    for line in text.split("\n"):
        if _FENCE_LINE_RE.fullmatch(line):
            in_fence = not in_fence
            continue
        if in_fence or _TABLE_RULE_RE.match(line):
            continue
        lines.append(_LINE_MARKUP_RE.sub("", line))
    return clean_inline(" ".join(lines))
