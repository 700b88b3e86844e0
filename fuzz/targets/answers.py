"""Target: what a model endpoint answers, read by everos (``providers/_answers.py``, the topic
tree, the facts and the classification).

An answer body is read as the OpenAI client reads it: ``_loads`` (JSON), ``count_usage``, then one
of ``chat_content`` + ``parse_json_object`` (chat), ``parse_embeddings``, ``parse_rerank``; a
streamed one through ``EventStream``. Their contract: ``AnswerError`` only (the client turns it into
``ProviderResponseError``), the stream ``ProviderError`` only. A model's text goes on into the
topic tree (``topics_from_answer``: ``InvalidAnswer`` only; the extractor also takes a
``RecursionError`` there as a malformed answer) and the batched facts (``facts_by_passage``:
never raises), and through the whole ``LLMExtractor`` with a scripted chat, where every answer is
either used or falls back to the built-in extractor, and the category is always a known one or
``Others`` (the classification call included). Invariants: vectors of the asked count and width,
finite; rerank pairs in range, best first; topics that hold every paragraph exactly once, no
deeper than asked; facts bounded in number and length.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import trio

from everos.config import Config
from everos.errors import ExtractionEmpty
from everos.knowledge import DEFAULT_CATEGORIES, OTHERS_CATEGORY
from everos.knowledge._extractor import SourceDocument
from everos.knowledge._llm_batches import split_paragraphs
from everos.knowledge._llm_extractor import LLMExtractor
from everos.knowledge._llm_topics import InvalidAnswer, topics_from_answer
from everos.knowledge._models import TopicNode
from everos.cascade._facts import facts_by_passage
from everos.providers import (
    AnswerError,
    ProviderError,
    ProviderResponseError,
    chat_content,
    parse_embeddings,
    parse_json_object,
    parse_rerank,
)
from everos.providers._openai import _loads, count_usage
from everos.providers._stream import EventStream

__all__ = [
    "FUZZ_DOCUMENT",
    "check_answer_body",
    "check_answer_bytes",
    "check_facts_answer",
    "check_llm_extraction",
    "check_stream_body",
    "check_topic_answer",
]

FUZZ_DOCUMENT = "Solar panels turn light into power.\n\nMount them facing south.\n\nClean them twice a year."
"""The document the topic-tree answers are about: three paragraphs, [0] to [2]."""
_NAME_MAX_CHARS = 120
_FACT_MAX_CHARS = 500
_KNOWN = {c.id for c in DEFAULT_CATEGORIES}


def check_answer_body(raw: bytes, *, expected_count: int, dim: int, document_count: int) -> None:
    """An unstreamed answer body, read by each of the client's decoders."""
    try:
        answer = _loads(raw, "/fuzz")
    except AnswerError:
        return
    prompt, completion = count_usage("llm", answer)
    assert isinstance(prompt, int) and isinstance(completion, int) and prompt >= 0 and completion >= 0
    try:
        chat_text = chat_content(answer)
    except AnswerError:
        pass
    else:
        assert isinstance(chat_text, str) and chat_text.strip()
        try:
            assert isinstance(parse_json_object(chat_text), dict)
        except AnswerError:
            pass
    try:
        vectors = parse_embeddings(answer, expected_count=expected_count, dim=dim)
    except AnswerError:
        pass
    else:
        assert len(vectors) == expected_count
        assert all(len(v) == dim and all(isinstance(x, float) and math.isfinite(x) for x in v) for v in vectors)
    try:
        pairs = parse_rerank(answer, document_count=document_count)
    except AnswerError:
        pass
    else:
        assert len({i for i, _ in pairs}) == len(pairs) and all(0 <= i < document_count for i, _ in pairs)
        assert all(math.isfinite(s) for _, s in pairs)
        assert [s for _, s in pairs] == sorted((s for _, s in pairs), reverse=True)


def check_stream_body(raw: bytes, chunk_size: int = 7) -> None:
    """A streamed answer (server-sent events) fed in pieces of ``chunk_size`` bytes."""
    events = EventStream("fuzz", 1 << 20)
    try:
        for start in range(0, len(raw), max(1, chunk_size)):
            events.feed(raw[start:start + max(1, chunk_size)])
        answer = events.answer()
    except ProviderError:
        return
    assert isinstance(chat_content_or_empty(answer), str)


def chat_content_or_empty(answer: Any) -> str:
    try:
        return chat_content(answer)
    except AnswerError:
        return ""


def check_topic_answer(text: str, paragraphs: Sequence[str], *, first: int = 0, max_depth: int = 3,
                       max_facts: int = 0) -> None:
    """A model's text as a topic-tree answer for ``paragraphs`` numbered from ``first``."""
    try:
        answer = parse_json_object(text)
    except AnswerError:
        return
    try:
        batch = topics_from_answer(answer, paragraphs, first, max_depth, max_facts)
    except (InvalidAnswer, RecursionError):
        return
    owned: list[str] = []
    for node in batch.topics:
        _check_node(node, 1, max_depth, max_facts, owned)
    assert Counter(owned) == Counter(paragraphs), "a paragraph was lost or written twice"
    assert len(batch.keywords) <= 5 and all(isinstance(k, str) and k for k in batch.keywords)
    assert isinstance(batch.language, str) and batch.language


def _check_node(node: TopicNode, depth: int, max_depth: int, max_facts: int, owned: list[str]) -> None:
    assert depth <= max_depth, f"a topic at depth {depth} of at most {max_depth}"
    assert node.name and len(node.name) <= _NAME_MAX_CHARS and node.summary
    assert len(node.facts) <= max_facts and all(0 < len(f) <= _FACT_MAX_CHARS for f in node.facts)
    assert node.content or node.children
    if node.content:
        owned.extend(node.content.split("\n\n"))
    for child in node.children:
        _check_node(child, depth + 1, max_depth, max_facts, owned)


def check_facts_answer(answer: Any, *, passages: int, max_facts: int) -> None:
    """A batched facts answer for ``passages`` passages."""
    found = facts_by_passage(answer, passages, max_facts)
    for number, facts in found.items():
        assert isinstance(number, int) and 1 <= number <= passages
        assert 0 < len(facts) <= max_facts and len(set(facts)) == len(facts)
        assert all(isinstance(f, str) and 0 < len(f) <= _FACT_MAX_CHARS for f in facts)
        assert all(f == " ".join(f.split()) for f in facts)


class _ScriptedChat:
    """A chat client answering each call with the next text of ``answers`` (the last one again
    when they run out), read as ``ChatClient.complete_json`` reads a model's text."""

    def __init__(self, answers: Sequence[str]) -> None:
        self._answers = list(answers) or [""]
        self.calls = 0

    async def complete_json(self, messages: Any, *, budget: Any, schema_hint: Any = None) -> dict[str, Any]:
        text = self._answers[min(self.calls, len(self._answers) - 1)]
        self.calls += 1
        try:
            return parse_json_object(text)
        except AnswerError as exc:
            raise ProviderResponseError("fuzz", str(exc), content=exc.content) from None

    async def aclose(self) -> None:
        return None


_LLM_SETTINGS = Config().llm


def check_llm_extraction(answers: Sequence[str], *, document: str = FUZZ_DOCUMENT, facts_per_topic: int = 0,
                         category_id: str | None = None) -> None:
    """The LLM extractor over ``document`` with a chat that answers ``answers`` in turn: a topic
    tree, a repair, a classification."""
    chat = _ScriptedChat(answers)

    async def extract() -> Any:
        extractor = LLMExtractor(chat, _LLM_SETTINGS, trio.CapacityLimiter(1),  # type: ignore[arg-type]
                                 facts_per_topic=facts_per_topic)
        source = SourceDocument(doc_id="d_0123456789ab", title="Fuzz", text=document, category_id=category_id)
        return await extractor.extract(source, DEFAULT_CATEGORIES)

    try:
        extracted = trio.run(extract)
    except ExtractionEmpty:
        assert not split_paragraphs(document)
        return
    assert extracted.category_id in ({category_id} if category_id else _KNOWN | {OTHERS_CATEGORY})
    assert extracted.extractor == "llm" or extracted.extractor.startswith("builtin (llm fallback: ")
    assert extracted.root.children and chat.calls <= 3


def check_answer_bytes(data: bytes) -> None:
    """Every reader of this target on one fuzzer input: the bytes as an answer body (plain and
    streamed), and their text as a model's topic-tree, facts and classification answers."""
    head, body = (data[0], data[1:]) if data else (0, b"")
    check_answer_body(body, expected_count=1 + head % 3, dim=1 + head % 4, document_count=1 + head % 5)
    check_stream_body(body, chunk_size=1 + head % 16)
    text = body.decode("utf-8", "replace")
    check_topic_answer(text, split_paragraphs(FUZZ_DOCUMENT), first=head % 2, max_depth=1 + head % 3,
                       max_facts=head % 4)
    try:
        facts_answer = json.loads(body)
    except (ValueError, RecursionError):
        facts_answer = None
    check_facts_answer(facts_answer, passages=1 + head % 4, max_facts=1 + head % 8)
    check_llm_extraction([text], facts_per_topic=head % 3)
