"""The built-in extractor: a topic tree from headings and paragraphs, offline and deterministic (G11).

The text is read by a CommonMark parser (:mod:`everos.knowledge._outline`): its top-level
headings, ATX (``#`` to ``######``) and setext (underlined with ``===``/``---``), become the topic
tree; headings inside code, lists or block quotes stay text. Text before the first heading becomes
an intro topic; a document with exactly one top-level heading (the usual ``# Title``) is unwrapped
so its sections are the top-level topics (text before it without prose, badges or an HTML comment
say, goes with the title's own prose). A reference-link definition stays where it is and is also
appended to every other topic that uses its label, so each topic file renders its links. A text of
more than :data:`~everos.knowledge._outline.PARSE_LINE_LIMIT` lines is not parsed: an ATX line
scan outside fences finds its headings. Text without headings is cut at blank lines into topics of
about :data:`FLAT_TOPIC_TARGET_CHARS`. A document never yields more than :data:`MAX_TOPICS`
topics: deeper headings are kept as text first, then neighbouring sections are merged; a text with
more than :data:`HEADING_SCAN_LIMIT` heading or fence lines at the levels considered (a huge
commented script, say) is treated as text without headings.

Summaries are the leading sentences of a topic's prose (code, HTML blocks and comments, badges and
link definitions stay in its content but never make a summary or a name), keywords the most
frequent terms, the language a guess by script (``en``, ``zh`` or ``other``); the category comes
from :func:`~everos.knowledge.classify`. Statistics read the first :data:`SAMPLE_CHARS`
characters. Every step is linear in the size of the text; parsing costs a few seconds per 100,000
lines, so a 50 MiB document takes seconds in one thread. Pure CPU work: callers run it in a worker
thread (G5).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from everos.errors import ExtractionEmpty
from everos.knowledge._models import ExtractedDocument, TopicNode
from everos.knowledge._outline import Definition, normalize_label, read_outline
from everos.knowledge._taxonomy import Category, classify
from everos.knowledge._text import bounded, guess_language, heading_name, keywords, lead_sentences, name_from_text

__all__ = ["FLAT_TOPIC_TARGET_CHARS", "HEADING_SCAN_LIMIT", "MAX_TOPICS", "SAMPLE_CHARS", "extract_structure"]

MAX_TOPICS: Final = 200
"""Most topics (tree nodes below the root) one document yields."""
FLAT_TOPIC_TARGET_CHARS: Final = 2000
"""Size text without headings is cut into (grows so that a huge text still fits MAX_TOPICS)."""
SAMPLE_CHARS: Final = 1_000_000
"""How much of the text language, keyword and category statistics read."""
HEADING_SCAN_LIMIT: Final = 500_000
"""Most heading and fence lines examined; past it the text is treated as having no headings."""

_SUMMARY_MAX_CHARS: Final = 300
_DOC_LEAD_MAX_CHARS: Final = 400
_TOPIC_NAME_MAX_CHARS: Final = 120
_KEYWORD_COUNT: Final = 5
_LISTED_SECTIONS: Final = 8
_LANGUAGE_SAMPLE_CHARS: Final = 200_000
_NAMES_FOR_STATS: Final = 4 * MAX_TOPICS
_LEAD_WINDOW_CHARS: Final = 4000

_FENCE_CLOSE_RE: Final = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*")
_CLOSING_HASHES_RE: Final = re.compile(r"(?:^|[ \t]+)#+$")
_BLANK_LINE_RE: Final = re.compile(r"\n[ \t]*\n")
_LEADING_BLANK_LINES_RE: Final = re.compile(r"(?:[ \t]*\n)+")
# A link label in use: [text][label], [label][] or [label] (not followed by "(": an inline link).
_LABEL_USE_RE: Final = re.compile(r"\[([^\[\]\n]*)\](?:\[([^\[\]\n]*)\]|(?!\())")
# (intro topic name, prefix listing children, separator, full stop, prefix listing sections)
_LABELS: Final = {
    "en": ("Introduction", "Covers: ", ", ", ".", "Sections: "),
    "zh": ("引言", "包含：", "、", "。", "章节："),
}


@functools.cache
def _candidate_re(max_level: int) -> re.Pattern[str]:
    # One pattern finds ATX headings up to max_level and fence lines, so lines that are neither
    # cost nothing in Python.
    return re.compile(
        rf"^ {{0,3}}(?:(#{{1,{max_level}}})(?:[ \t]+([^\n]*?))?[ \t]*$|(`{{3,}}|~{{3,}})([^\n]*)$)",
        re.MULTILINE,
    )


class _Heading(NamedTuple):
    start: int
    body_start: int
    level: int
    raw_name: str


@dataclass
class _Section:
    name: str
    content: str
    lead: str = ""
    """The start of the section's prose (no code, HTML, badges or definitions), for summaries."""
    children: list[_Section] = field(default_factory=list)
    uses: set[str] = field(default_factory=set)
    """The normalized link labels the section's heading and prose use."""
    spans: tuple[tuple[int, int], ...] = ()
    """Where the content comes from in the text (offsets)."""


class _Source(NamedTuple):
    """The text and its prose: the same offsets, code and markup not prose blanked to spaces."""

    text: str
    prose: str
    definitions: dict[str, Definition]
    line_starts: list[int]

    def section(self, name: str, start: int, end: int, heading: str = "") -> _Section:
        content = _trim(self.text[start:end])
        lead = _lead_window(self.prose, start, end)
        uses: set[str] = set()
        if self.definitions:
            for match in _LABEL_USE_RE.finditer(f"{heading}\n{self.prose[start:end]}"):
                label = normalize_label(match.group(2) or match.group(1))
                if label in self.definitions:
                    uses.add(label)
        return _Section(name, content, lead, uses=uses, spans=((start, end),))


def extract_structure(
    text: str, title: str, categories: Sequence[Category], category_id: str | None = None
) -> ExtractedDocument:
    """Extract a topic tree from ``text`` without any model. Blocks (CPU); deterministic.

    ``category_id``, when given, is used as it is; otherwise the text is classified against
    ``categories`` (``Others`` when nothing matches). ``notes`` say when topics were merged.

    Raises:
        ExtractionEmpty: ``text`` is empty or whitespace only.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text or text.isspace():
        raise ExtractionEmpty("the document holds no text")
    sample = text[:SAMPLE_CHARS]
    language = guess_language(sample[:_LANGUAGE_SAMPLE_CHARS])
    labels = _LABELS.get(language, _LABELS["en"])
    notes: list[str] = []
    source, headings = _read(text, notes)
    if headings:
        sections = _sections_from_headings(source, headings, labels[0], notes)
    else:
        sections = _sections_from_text(source, notes)
    if source.definitions:
        _attach_definitions(source, sections)
    topics = tuple(_to_node(section, labels) for section in sections)
    summary = _document_summary(sections, topics, labels)
    names = [heading_name(h.raw_name) for h in headings[:_NAMES_FOR_STATS]]
    if category_id is None:
        category_id = classify("\n".join([title, title, *names, sample]), categories)
    return ExtractedDocument(
        language=language,
        summary=summary,
        keywords=keywords(sample, names, _KEYWORD_COUNT),
        category_id=category_id,
        root=TopicNode(name=title, summary=summary, content="", children=topics),
        notes=tuple(notes),
    )


def _read(text: str, notes: list[str]) -> tuple[_Source, list[_Heading]]:
    """The text's headings and prose from the parsed outline, or from the ATX line scan above
    the parser's line limit (then the prose is the text and there are no definitions)."""
    outline = read_outline(text)
    if outline is None:
        return _Source(text, text, {}, []), _scan_headings(text, notes)
    starts = [0]
    find = text.find
    pos = find("\n")
    while pos != -1:
        starts.append(pos + 1)
        pos = find("\n", pos + 1)
    starts.append(len(text))  # one past the last line, so a range's end line always has an offset

    def offset(line: int) -> int:
        return starts[min(line, len(starts) - 1)]

    pieces: list[str] = []
    done = 0
    for first, end in outline.not_prose:
        start, stop = offset(first), offset(end)
        pieces.append(text[done:start])
        pieces.append("\n".join(" " * len(line) for line in text[start:stop].split("\n")))
        done = stop
    pieces.append(text[done:])
    prose = "".join(pieces)
    headings = [_Heading(offset(h.line), offset(h.body_line), h.level, h.text) for h in outline.headings]
    return _Source(text, prose, outline.definitions, starts), headings


def _scan_headings(text: str, notes: list[str]) -> list[_Heading]:
    if "#" not in text and "```" not in text and "~~~" not in text:
        return []  # C-speed shortcut: plain text has nothing for the scan to find
    max_level = 6
    if text.count("\n#") > HEADING_SCAN_LIMIT:
        max_level = _level_within_budget(text)
        notes.append(f"over {HEADING_SCAN_LIMIT} heading lines; headings below level {max_level} kept as text")
    headings: list[_Heading] = []
    fence: str | None = None
    for count, match in enumerate(_candidate_re(max_level).finditer(text)):
        if count == HEADING_SCAN_LIMIT:
            notes.append(f"more than {HEADING_SCAN_LIMIT} heading or fence lines; read as text without headings")
            return []
        hashes, raw_name, fence_marker, fence_rest = match.groups()
        if fence is not None:
            # Inside a fence only its closing line matters: same character, at least as long.
            closing = _FENCE_CLOSE_RE.fullmatch(match.group())
            if closing and closing.group(1)[0] == fence[0] and len(closing.group(1)) >= len(fence):
                fence = None
        elif fence_marker is not None:
            # A backtick fence's info string may not contain backticks (CommonMark).
            if not (fence_marker[0] == "`" and "`" in fence_rest):
                fence = fence_marker
        elif hashes is not None:
            name = _CLOSING_HASHES_RE.sub("", raw_name or "")
            headings.append(_Heading(match.start(), min(match.end() + 1, len(text)), len(hashes), name))
    return headings


def _level_within_budget(text: str) -> int:
    """The deepest heading level whose count, with all shallower levels, fits the topic budget.

    Counts lines starting with hashes and a blank, ignoring fences and indentation: an estimate
    that keeps the exact scan from visiting headings that would be dropped anyway.
    """
    total, level = 0, 1
    for depth in range(1, 7):
        marker = "\n" + "#" * depth
        total += text.count(marker + " ") + text.count(marker + "\t") + text.count(marker + "\n")
        if total > MAX_TOPICS:
            break
        level = depth
    return level


def _sections_from_headings(
    source: _Source, headings: list[_Heading], intro_name: str, notes: list[str]
) -> list[_Section]:
    text = source.text
    budget = MAX_TOPICS - 1  # one slot stays free for the intro
    kept = headings
    for threshold in sorted({h.level for h in headings}, reverse=True):
        kept = [h for h in headings if h.level <= threshold]
        if len(kept) <= budget:
            break
    if len(kept) < len(headings):
        notes.append(f"{len(headings)} headings exceed {MAX_TOPICS} topics; "
                     f"headings below level {max(h.level for h in kept)} kept as text")
    intro = source.section(intro_name, 0, headings[0].start)
    if len(kept) > budget:
        return _grouped_sections(source, intro, kept, budget, notes)
    top_level = min(h.level for h in kept)
    if len(kept) > 1 and not intro.lead and kept[0].level == top_level \
            and sum(h.level == top_level for h in kept) == 1:
        # The usual "# Title" wrapper: its own prose is the intro, its sections the topics. What
        # comes before the title without prose (badges, an HTML comment) goes with that prose.
        title = kept[0]
        own = source.section(heading_name(title.raw_name) or intro_name, title.body_start, kept[1].start,
                             title.raw_name)
        if intro.content:
            own.content = "\n\n".join(part for part in (intro.content, own.content) if part)
            own.uses |= intro.uses
            own.spans = intro.spans + own.spans
        intro = own
        kept = kept[1:]
    roots: list[_Section] = [intro] if intro.content else []
    stack: list[tuple[int, _Section]] = []
    for i, heading in enumerate(kept):
        end = kept[i + 1].start if i + 1 < len(kept) else len(text)
        section = source.section("", heading.body_start, end, heading.raw_name)
        section.name = heading_name(heading.raw_name) or name_from_text(section.lead) or f"Section {i + 1}"
        while stack and stack[-1][0] >= heading.level:
            stack.pop()
        (stack[-1][1].children if stack else roots).append(section)
        stack.append((heading.level, section))
    return roots


def _grouped_sections(
    source: _Source, intro: _Section, kept: list[_Heading], budget: int, notes: list[str]
) -> list[_Section]:
    per_group = -(-len(kept) // budget)
    sections = [intro] if intro.content else []
    for i in range(0, len(kept), per_group):
        group = kept[i : i + per_group]
        end = kept[i + per_group].start if i + per_group < len(kept) else len(source.text)
        first, last = heading_name(group[0].raw_name), heading_name(group[-1].raw_name)
        name = first if len(group) == 1 else f"{first} … {last}"
        sections.append(source.section(name.strip("… ") or f"Part {len(sections) + 1}", group[0].start, end))
    notes.append(f"{len(kept)} sections merged into {len(sections)} topics")
    return sections


def _sections_from_text(source: _Source, notes: list[str]) -> list[_Section]:
    """Cut text without headings at the first blank line after each ``target`` characters.

    Works on offsets, never per paragraph, so a text of millions of tiny paragraphs costs no
    more than one long paragraph. A paragraph longer than twice ``target`` is cut at its last
    line break or space in the window.
    """
    text = source.text
    target = max(FLAT_TOPIC_TARGET_CHARS, -(-len(text) // (MAX_TOPICS - 1)))
    sections: list[_Section] = []
    pos, size = 0, len(text)
    while pos < size:
        end = _cut_point(text, pos, target)
        if size - end < target // 4:
            end = size  # no tiny tail topic
        section = source.section("", pos, end)
        if section.content.strip():
            section.name = name_from_text(section.lead) or name_from_text(section.content) \
                or f"Part {len(sections) + 1}"
            sections.append(section)
        pos = end
    if len(sections) > 1:
        notes.append(f"text without headings cut into {len(sections)} topics of about {target} characters")
    return sections


def _cut_point(text: str, pos: int, target: int) -> int:
    low, high = pos + target, pos + 2 * target
    if low >= len(text):
        return len(text)
    blank = _BLANK_LINE_RE.search(text, low, high)
    if blank is not None:
        return blank.start()
    for separator in ("\n", " "):
        cut = text.rfind(separator, low, high)
        if cut != -1:
            return cut
    return min(high, len(text))


def _trim(content: str) -> str:
    # Blank lines around a topic carry nothing; indentation inside it does.
    match = _LEADING_BLANK_LINES_RE.match(content)
    return (content[match.end() :] if match else content).rstrip()


def _lead_window(prose: str, start: int, end: int) -> str:
    """The first non-blank lines of ``prose[start:end]``, about :data:`_LEAD_WINDOW_CHARS` of them.

    Blanked code or HTML before the first paragraph is skipped a line at a time, each line once.
    """
    lines: list[str] = []
    total = 0
    pos = start
    while pos < end and total < _LEAD_WINDOW_CHARS:
        stop = prose.find("\n", pos, end)
        if stop == -1:
            stop = end
        if prose[pos:stop].strip():
            line = prose[pos : min(stop, pos + _LEAD_WINDOW_CHARS)]
            lines.append(line)
            total += len(line) + 1
        pos = stop + 1
    return "\n".join(lines)


def _attach_definitions(source: _Source, sections: list[_Section]) -> None:
    """Append each definition a section uses and does not hold to its content (first one wins)."""
    starts = source.line_starts
    pending = list(sections)
    while pending:
        section = pending.pop()
        pending.extend(section.children)
        missing = []
        for label in section.uses:
            definition = source.definitions[label]
            first, stop = starts[definition.start], starts[min(definition.end, len(starts) - 1)]
            if not any(a <= first and stop <= b for a, b in section.spans):
                missing.append((first, source.text[first:stop].strip("\n")))
        if missing:
            block = "\n".join(text for _, text in sorted(missing))
            section.content = "\n\n".join(part for part in (section.content, block) if part)


def _to_node(section: _Section, labels: tuple[str, ...]) -> TopicNode:
    children = tuple(_to_node(child, labels) for child in section.children)
    summary = lead_sentences(section.lead, _SUMMARY_MAX_CHARS)
    if not summary and children:
        names = labels[2].join(child.name for child in children[:_LISTED_SECTIONS])
        summary = f"{labels[1]}{names}{labels[3]}"
    name = bounded(section.name, _TOPIC_NAME_MAX_CHARS)
    return TopicNode(name=name, summary=summary or name, content=section.content, children=children)


def _document_summary(sections: list[_Section], topics: tuple[TopicNode, ...], labels: tuple[str, ...]) -> str:
    lead = ""
    pending = list(reversed(sections))
    while pending and not lead:
        section = pending.pop()
        lead = lead_sentences(section.lead, _DOC_LEAD_MAX_CHARS)
        pending.extend(reversed(section.children))
    if len(topics) > 1:
        listed = labels[2].join(topic.name for topic in topics[:_LISTED_SECTIONS])
        more = labels[2] + "…" if len(topics) > _LISTED_SECTIONS else ""
        lead = f"{lead} {labels[4]}{listed}{more}{labels[3]}".strip()
    return lead or topics[0].summary
