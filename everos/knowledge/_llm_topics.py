"""The model's topic-tree answer for one batch, validated into topics (:func:`topics_from_answer`).
Pure.

Block refs must parse and point into the batch, topics deeper than ``[llm] max_topic_depth`` are
folded into their ancestor at that depth. Each paragraph is written once: it belongs to the first
topic referencing it in post-order, so a child wins over its parent and a parent keeps only prose
of its own. A paragraph no topic references goes to the topic owning the nearest paragraph before
it (after it, at the start of a batch), which keeps reading order and invents no catch-all topic.
Leaves left without prose are dropped. A topic's ``facts`` (when the prompt asked for them) are
kept as strings, cleaned, at most ``max_facts``; a malformed ``facts`` value is not an invalid
answer, the topic just has no model facts (the cascade's splitter covers it). An answer that does not validate raises
:class:`InvalidAnswer`, whose message is what the repair request tells the model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from everos.knowledge._models import TopicNode
from everos.knowledge._text import bounded, clean_inline, lead_sentences, name_from_text

__all__ = ["BatchTopics", "InvalidAnswer", "clean_facts", "parse_block_refs", "topics_from_answer"]

_TOPIC_NAME_MAX_CHARS: Final = 120
_SUMMARY_MAX_CHARS: Final = 300
_KEYWORD_COUNT: Final = 5
_FACT_MAX_CHARS: Final = 500
_REF_RE: Final = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")


class InvalidAnswer(ValueError):
    """A topic-tree answer that does not validate; the message says what is wrong."""


@dataclass
class _Draft:
    name: str
    summary: str
    labels: tuple[str, ...]
    refs: list[int]
    children: list[_Draft]
    owned: list[int]
    facts: list[str]


@dataclass(frozen=True)
class BatchTopics:
    """A validated batch: its topics and its document-level fields."""

    language: str
    summary: str
    keywords: tuple[str, ...]
    topics: tuple[TopicNode, ...]
    notes: tuple[str, ...]
    category_id: str | None = None
    """The answer's ``category_id`` as given (unchecked), None when the answer has no such string."""


def parse_block_refs(value: Any, first: int, count: int) -> list[int]:
    """``"0-2,5"`` (or a list of numbers and such strings) → ``[0, 1, 2, 5]``, each checked to be in
    ``[first, first + count)``. Raises :class:`InvalidAnswer`."""
    parts: list[Any]
    if isinstance(value, str):
        parts = [part for part in value.split(",") if part.strip()]
    elif isinstance(value, list):
        parts = value
    elif value is None:
        return []
    else:
        raise InvalidAnswer(f"block_refs must be a string like '0-2,5', not {type(value).__name__}")
    numbers: list[int] = []
    last = first + count - 1
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            low = high = part
        else:
            match = _REF_RE.fullmatch(str(part))
            if match is None:
                raise InvalidAnswer(f"block_refs part {str(part)[:40]!r} is not a number or a range like 0-2")
            low = int(match.group(1))
            high = int(match.group(2)) if match.group(2) is not None else low
        if low > high or low < first or high > last:
            raise InvalidAnswer(f"block_refs {low}-{high} is outside the paragraphs [{first}] to [{last}]")
        numbers.extend(range(low, high + 1))
    return numbers


def clean_facts(facts: Any, max_facts: int) -> list[str]:
    """Strings only, whitespace collapsed, blank and repeated ones dropped, at most ``max_facts``,
    in order; anything but a list gives none. Pure."""
    if not isinstance(facts, list):
        return []
    seen: set[str] = set()
    cleaned: list[str] = []
    for fact in facts:
        if len(cleaned) >= max_facts:
            break
        text = " ".join(fact.split()) if isinstance(fact, str) else ""
        if text and text not in seen:
            seen.add(text)
            cleaned.append(bounded(text, _FACT_MAX_CHARS))
    return cleaned


def _draft(item: Any, first: int, count: int, depth: int, max_depth: int, max_facts: int = 0) -> _Draft:
    if not isinstance(item, Mapping):
        raise InvalidAnswer(f"a topic must be an object, not {type(item).__name__}")
    name, summary = item.get("topic", ""), item.get("summary", "")
    if not isinstance(name, str) or not isinstance(summary, str):
        raise InvalidAnswer("topic and summary must be strings")
    labels = item.get("content_labels") or []
    children = item.get("children") or []
    if not isinstance(labels, list) or not isinstance(children, list):
        raise InvalidAnswer("content_labels and children must be lists")
    draft = _Draft(
        name=bounded(clean_inline(name), _TOPIC_NAME_MAX_CHARS),
        summary=" ".join(summary.split()),
        labels=tuple(label for label in labels if isinstance(label, str)),
        refs=parse_block_refs(item.get("block_refs"), first, count),
        children=[],
        owned=[],
        facts=clean_facts(item.get("facts"), max_facts),
    )
    for child in children:
        sub = _draft(child, first, count, depth + 1, max_depth, max_facts)
        if depth >= max_depth:
            # Too deep: the child's paragraphs (and its descendants') fold into this topic, and so
            # do their facts.
            draft.refs.extend(_all_refs(sub))
            draft.facts = clean_facts(draft.facts + _all_facts(sub), max_facts)
        else:
            draft.children.append(sub)
    return draft


def _all_refs(draft: _Draft) -> list[int]:
    refs = list(draft.refs)
    for child in draft.children:
        refs.extend(_all_refs(child))
    return refs


def _all_facts(draft: _Draft) -> list[str]:
    facts = list(draft.facts)
    for child in draft.children:
        facts.extend(_all_facts(child))
    return facts


def _post_order(drafts: Sequence[_Draft]) -> list[_Draft]:
    out: list[_Draft] = []
    for draft in drafts:
        out.extend(_post_order(draft.children))
        out.append(draft)
    return out


def topics_from_answer(answer: Any, paragraphs: Sequence[str], first: int, max_depth: int,
                       max_facts: int = 0) -> BatchTopics:
    """Validate one batch's topic-tree answer and build its topics (see the module doc); each
    topic keeps at most ``max_facts`` of its ``facts`` (0: none asked, none kept). Pure.

    Raises:
        InvalidAnswer: the answer is not a topic tree over these paragraphs.
    """
    if not isinstance(answer, Mapping):
        raise InvalidAnswer("the answer must be a JSON object")
    raw_topics = answer.get("topics")
    if not isinstance(raw_topics, list) or not raw_topics:
        raise InvalidAnswer("'topics' must be a non-empty list")
    count = len(paragraphs)
    drafts = [_draft(item, first, count, 1, max_depth, max_facts) for item in raw_topics]
    owner: dict[int, _Draft] = {}
    for draft in _post_order(drafts):
        for number in draft.refs:
            if number not in owner:
                owner[number] = draft
    if not owner:
        raise InvalidAnswer("no topic references any paragraph")
    notes: list[str] = []
    missing = [number for number in range(first, first + count) if number not in owner]
    for number in missing:
        before = [n for n in range(number - 1, first - 1, -1) if n in owner]
        after = [n for n in range(number + 1, first + count) if n in owner]
        owner[number] = owner[before[0]] if before else owner[after[0]]
    if missing:
        notes.append(f"{len(missing)} paragraphs no topic referenced were added to the topic before them")
    for number in sorted(owner):
        owner[number].owned.append(number)
    topics = tuple(node for node in (_node(d, paragraphs, first) for d in drafts) if node is not None)
    if not topics:
        raise InvalidAnswer("no topic holds any paragraph")
    summary = answer.get("summary")
    language = answer.get("language")
    raw_keywords = answer.get("keywords")
    return BatchTopics(
        language=language.strip() if isinstance(language, str) and language.strip() else "other",
        summary=" ".join(summary.split()) if isinstance(summary, str) and summary.strip() else topics[0].summary,
        keywords=tuple(k.strip() for k in raw_keywords if isinstance(k, str) and k.strip())[:_KEYWORD_COUNT]
        if isinstance(raw_keywords, list) else (),
        topics=topics,
        notes=tuple(notes),
        category_id=answer["category_id"].strip() if isinstance(answer.get("category_id"), str) else None,
    )


def _node(draft: _Draft, paragraphs: Sequence[str], first: int) -> TopicNode | None:
    children = tuple(node for node in (_node(c, paragraphs, first) for c in draft.children) if node is not None)
    content = "\n\n".join(paragraphs[number - first] for number in draft.owned)
    if not content and not children:
        return None
    name = draft.name or name_from_text(content) or (children[0].name if children else "Topic")
    summary = draft.summary or lead_sentences(content, _SUMMARY_MAX_CHARS) or name
    return TopicNode(name=name, summary=summary, content=content, content_labels=draft.labels, children=children,
                     facts=tuple(draft.facts))
