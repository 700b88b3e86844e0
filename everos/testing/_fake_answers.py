"""Deterministic, valid answers of the fake LLM server, derived from the request. No I/O.

**Chat** answers one JSON object, chosen from the messages:

* *Classification* — the messages mention ``category_id`` and hold no numbered paragraph. The
  categories are lines ``- <category_id>: <description>``; the answer is
  ``{"category_id": <id>}`` for the category whose id and description share the most words with
  the other lines, or ``""`` when none shares any (or no category is listed).
* *Facts* — the system message asks for ``"passages"``: the user message holds passages under
  ``### Passage <n>: <topic path>`` lines; the answer is ``{"passages": [{"passage": n, "facts":
  [its sentences, at most 8]}]}``.
* *Topic tree* — otherwise. Paragraphs are lines ``[n] text`` in the user messages; a paragraph
  continues on the following lines up to a blank line or the next ``[m]``. Without any ``[n]``
  line, the blank-line separated blocks of the last user message are paragraphs 0, 1, 2…
  The answer follows EverOS's topic-tree shape: ``language`` ("zh" when CJK characters dominate,
  else "en"), ``summary``, ``subject``, ``keywords`` (up to 5 most frequent words), and
  ``topics``: one topic per run of up to 3 consecutive paragraphs, with ``block_refs`` such as
  ``"0-2"``; a topic over two or more paragraphs has one child per paragraph. Every paragraph is
  covered. The tree is simple on purpose: it proves plumbing, not extraction quality. When the
  system message asks for ``"facts"``, every topic holding paragraphs of its own gets their
  sentences as facts (at most 8); when it asks for ``"category_id"`` and lists categories, the
  answer carries the classification's id too.

**Embeddings** come from the built-in hashing embedder (so similar texts are close).
**Rerank** scores each document by the share of the query's words it contains.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from everos.providers import BuiltinEmbedder

__all__ = [
    "chat_answer",
    "classification_answer",
    "embedding_vectors",
    "facts_answer",
    "format_block_refs",
    "paragraphs_of",
    "rerank_results",
    "topic_tree_answer",
]

_PARAGRAPH = re.compile(r"^\s*\[(\d+)\]\s?(.*)$")
_PASSAGE = re.compile(r"^### Passage (\d+): ")
_CATEGORY = re.compile(r"^\s*-\s*([A-Za-z0-9_.\-]+)\s*:\s*(.*)$")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[^\W\d_]+")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*")
_TOPICS_PER_GROUP = 3
_FACTS_PER_TOPIC = 8


def _text_of(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):
        return "\n".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def paragraphs_of(messages: Sequence[Any]) -> list[tuple[int, str]]:
    """``(id, text)`` of the numbered paragraphs in the user messages (see the module doc)."""
    user_texts = [_text_of(m) for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    found: dict[int, list[str]] = {}
    current: int | None = None
    for text in user_texts:
        for line in text.splitlines():
            match = _PARAGRAPH.match(line)
            if match:
                current = int(match.group(1))
                found[current] = [match.group(2).strip()]
            elif not line.strip():
                current = None
            elif current is not None:
                found[current].append(line.strip())
        current = None
    if found:
        return [(number, " ".join(parts)) for number, parts in sorted(found.items())]
    last = user_texts[-1] if user_texts else ""
    blocks = [" ".join(block.split()) for block in re.split(r"\n\s*\n", last)]
    return list(enumerate(block for block in blocks if block))


def format_block_refs(numbers: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` → ``"0-2,5"``."""
    parts: list[str] = []
    ordered = sorted(set(numbers))
    start = prev = None
    for number in ordered + [None]:
        if start is not None and (number is None or number != prev + 1):
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = None
        if number is not None and start is None:
            start = number
        prev = number
    return ",".join(parts)


def _first_sentence(text: str, limit: int = 200) -> str:
    sentence = _SENTENCE_END.split(text.strip(), maxsplit=1)[0]
    return sentence[:limit].strip()


def _topic_name(text: str) -> str:
    if _CJK.search(text[:20]):
        return "".join(text.split())[:8]
    words = text.split()[:3]
    return " ".join(words)[:20].strip() or "topic"


def _words(text: str) -> list[str]:
    return [word.lower() for word in _WORD.findall(text)]


def _keywords(text: str) -> list[str]:
    counts: Counter[str] = Counter()
    for token in _WORD.findall(text.lower()):
        if _CJK.match(token):
            counts.update(token[i : i + 2] for i in range(max(len(token) - 1, 1)))
        elif len(token) >= 4:
            counts[token] += 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [word for word, _ in ranked[:5]]


def _language(text: str) -> str:
    cjk = len(_CJK.findall(text))
    latin = sum(1 for ch in text if ch.isascii() and ch.isalpha())
    return "zh" if cjk > latin / 2 and cjk > 0 else "en"


def _node(numbers: list[int], texts: dict[int, str]) -> dict[str, Any]:
    first = texts[numbers[0]]
    return {
        "topic": _topic_name(first),
        "summary": _first_sentence(" ".join(texts[n] for n in numbers)),
        "block_refs": format_block_refs(numbers),
        "content_labels": [],
        "children": [],
    }


def _facts(text: str) -> list[str]:
    return [sentence.strip() for sentence in _SENTENCE_END.split(text) if sentence.strip()][:_FACTS_PER_TOPIC]


def topic_tree_answer(paragraphs: Sequence[tuple[int, str]], *, with_facts: bool = False) -> dict[str, Any]:
    """The topic-tree object for ``paragraphs`` (see the module doc)."""
    texts = dict(paragraphs)
    numbers = [number for number, _ in paragraphs]
    everything = " ".join(texts.values())
    topics = []
    for start in range(0, len(numbers), _TOPICS_PER_GROUP):
        group = numbers[start : start + _TOPICS_PER_GROUP]
        node = _node(group, texts)
        if len(group) > 1:
            node["children"] = [_node([number], texts) for number in group]
        if with_facts and len(group) > 1:
            node["facts"] = []
            for child, number in zip(node["children"], group, strict=True):
                child["facts"] = _facts(texts[number])
        elif with_facts:
            node["facts"] = _facts(texts[group[0]])
        topics.append(node)
    first = texts[numbers[0]] if numbers else ""
    return {
        "language": _language(everything),
        "summary": _first_sentence(first, 300),
        "subject": _topic_name(first),
        "keywords": _keywords(everything),
        "content_labels": [],
        "topics": topics,
    }


def classification_answer(messages: Sequence[Any]) -> dict[str, str]:
    """``{"category_id": …}`` for a classification prompt (see the module doc)."""
    categories: list[tuple[str, set[str]]] = []
    other_words: set[str] = set()
    for message in messages:
        for line in _text_of(message).splitlines():
            match = _CATEGORY.match(line)
            if match:
                categories.append((match.group(1), set(_words(match.group(1) + " " + match.group(2)))))
            else:
                other_words.update(word for word in _words(line) if word != "category")
    best, best_overlap = "", 0
    for category_id, words in categories:
        overlap = len(words & other_words)
        if overlap > best_overlap:
            best, best_overlap = category_id, overlap
    return {"category_id": best}


def facts_answer(messages: Sequence[Any]) -> dict[str, Any]:
    """``{"passages": [{"passage": n, "facts": [...]}]}`` for a batched facts prompt (see the module doc)."""
    passages: list[dict[str, Any]] = []
    lines: list[str] = []
    for line in [*_text_of(messages[-1]).splitlines(), "### Passage 0: end"]:
        match = _PASSAGE.match(line)
        if match is None:
            lines.append(line)
            continue
        if passages:
            passages[-1]["facts"] = _facts(" ".join(lines))
        passages.append({"passage": int(match.group(1)), "facts": []})
        lines = []
    return {"passages": passages[:-1]}


def chat_answer(messages: Sequence[Any]) -> dict[str, Any]:
    """The JSON object the fake model answers to ``messages``."""
    all_text = "\n".join(_text_of(m) for m in messages)
    numbered = any(_PARAGRAPH.match(line) for line in all_text.splitlines())
    if "category_id" in all_text and not numbered:
        return classification_answer(messages)
    system = "\n".join(_text_of(m) for m in messages if isinstance(m, dict) and m.get("role") == "system")
    if '"passages"' in system:
        return facts_answer(messages)
    answer = topic_tree_answer(paragraphs_of(messages), with_facts='"facts"' in system)
    if '"category_id"' in system and re.search(_CATEGORY.pattern, system, re.MULTILINE) is not None:
        answer["category_id"] = classification_answer(messages)["category_id"]
    return answer


_EMBEDDERS: dict[int, BuiltinEmbedder] = {}


def embedding_vectors(texts: Sequence[str], dim: int) -> list[list[float]]:
    """Deterministic vectors of ``dim`` floats (the built-in hashing embedder)."""
    embedder = _EMBEDDERS.setdefault(dim, BuiltinEmbedder(dim))
    return embedder.embed_sync(texts)


def rerank_results(query: str, documents: Sequence[str], top_n: int | None = None) -> list[dict[str, Any]]:
    """vLLM/Jina/Cohere-shaped results: share of the query's words found in each document, best
    first (ties by index), at most ``top_n``."""
    query_words = set(_words(query))
    scored = []
    for index, document in enumerate(documents):
        overlap = len(query_words & set(_words(document)))
        scored.append((overlap / len(query_words) if query_words else 0.0, index, document))
    scored.sort(key=lambda item: (-item[0], item[1]))
    limit = len(scored) if top_n is None else max(top_n, 0)
    return [
        {"index": index, "relevance_score": round(score, 6), "document": {"text": document}}
        for score, index, document in scored[:limit]
    ]
