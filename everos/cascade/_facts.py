"""Atomic facts per topic: the LLM on the background budget when one is configured, else (and
whenever its answer is unusable) the built-in sentence splitter.

A fact is a short self-contained statement taken from a topic's content (its summary when it has
no content). The splitter is a callable ``split_facts(text, max_facts) -> list[str]`` run in a
worker thread under the cpu limiter (G5). The LLM is asked for many topics in one call: the
topics of a document are packed into batches that fit the model's context window
(``context_tokens``: the passages within :func:`~everos.knowledge._llm_extractor.input_budget`,
and no more topics than their facts fit in the room left for the answer), each batch one call,
all of a document's batches at once (its client's background budget bounds how many attempts are
in flight, G4), within ``llm_time_budget_seconds``. A topic whose answer is missing, malformed or
late gets the splitter's facts instead, so facts never hold a row back for long and a slow or
broken LLM never stops indexing (G11).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import trio

from everos.knowledge._llm_batches import estimate_tokens
from everos.knowledge._llm_extractor import answer_tokens, input_budget
from everos.knowledge._models import KnowledgeTopic
from everos.knowledge._text import bounded
from everos.providers import Budget, ProviderError

__all__ = ["FACTS_SCHEMA_HINT", "FactExtractor", "clean_facts", "fact_batches", "facts_by_passage",
           "facts_from_answer"]

log = logging.getLogger("everos.cascade")

FACTS_SCHEMA_HINT = {"passages": [{"passage": 1, "facts": ["One self-contained statement.", "Another one."]}]}

_SYSTEM_PROMPT = (
    "You split the numbered passages of a document into atomic facts for a search index. Each fact is "
    "one short, self-contained statement that is true according to its passage, understandable without "
    "it (name the subject instead of using pronouns), and written in the passage's language. Cover every "
    "distinct piece of information; do not add anything a passage does not say. Answer with one JSON "
    'object: {"passages": [{"passage": 1, "facts": ["...", "..."]}, ...]}, one entry per passage, at '
    "most %d facts each."
)
# A model's fact is cut here (a longer one is no atomic fact); the extraction's facts are too.
FACT_MAX_CHARS = 500
# Passage headers in the prompt: "### Passage <n>: <topic path>".
PASSAGE_HEADER = "### Passage "
# Estimated answer tokens per fact (a sentence and its JSON quoting), to size a batch's answer.
_TOKENS_PER_FACT = 32

SplitFacts = Callable[[str, int], list[str]]


def clean_facts(facts: Sequence[Any], max_facts: int) -> list[str]:
    """Strings only, stripped, blank and repeated ones dropped, at most ``max_facts``, in order."""
    seen: set[str] = set()
    cleaned = []
    for fact in facts:
        if not isinstance(fact, str):
            continue
        text = " ".join(fact.split())
        if text and text not in seen:
            seen.add(text)
            cleaned.append(text)
        if len(cleaned) >= max_facts:
            break
    return cleaned


def facts_from_answer(answer: Any, max_facts: int) -> list[str] | None:
    """The facts of an LLM answer ``{"facts": [str, ...]}``, each cut to
    :data:`FACT_MAX_CHARS` as the extraction's are, or None when it is malformed (not that shape,
    or no usable fact in it)."""
    if not isinstance(answer, dict) or not isinstance(answer.get("facts"), list):
        return None
    facts = [bounded(fact, FACT_MAX_CHARS) for fact in clean_facts(answer["facts"], max_facts)]
    return facts or None


def facts_by_passage(answer: Any, passages: int, max_facts: int) -> dict[int, list[str]]:
    """``{passage number (1-based): facts}`` of a batched answer ``{"passages": [{"passage": n,
    "facts": [...]}]}``: entries that are malformed, out of range, repeated or without a usable
    fact are left out (those topics get the splitter's facts). Pure."""
    if not isinstance(answer, dict) or not isinstance(answer.get("passages"), list):
        return {}
    found: dict[int, list[str]] = {}
    for entry in answer["passages"]:
        if not isinstance(entry, dict):
            continue
        number = entry.get("passage")
        if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= passages:
            continue
        facts = facts_from_answer(entry, max_facts)
        if facts is not None and number not in found:
            found[number] = facts
    return found


def fact_batches(texts: Sequence[str], passage_tokens: int, max_passages: int) -> list[list[int]]:
    """The indexes of ``texts`` packed in order into batches of at most ``max_passages`` whose
    estimated tokens stay within ``passage_tokens`` (a text longer than that is a batch alone).
    Pure."""
    batches: list[list[int]] = []
    current: list[int] = []
    used = 0
    for index, text in enumerate(texts):
        tokens = estimate_tokens(text) + 16  # the passage header
        if current and (used + tokens > passage_tokens or len(current) >= max_passages):
            batches.append(current)
            current, used = [], 0
        current.append(index)
        used += tokens
    if current:
        batches.append(current)
    return batches


def fact_source_text(topic: KnowledgeTopic) -> str:
    """What a topic's facts are taken from: its content, else its summary."""
    return topic.content.strip() or topic.summary.strip()


class FactExtractor:
    """Facts for the topics of one document; see the module docstring.

    ``chat`` is a :class:`~everos.providers.ChatClient` (anything with ``complete_json``) or None.
    ``context_tokens`` is the model's context window (``[llm] context_tokens``); ``llm_input_chars``
    cuts each passage sent to the LLM.
    """

    def __init__(
        self,
        split_facts: SplitFacts,
        cpu_limiter: trio.CapacityLimiter,
        *,
        chat: Any | None = None,
        max_facts: int = 8,
        context_tokens: int = 32768,
        llm_input_chars: int = 12_000,
        llm_time_budget_seconds: float = 60.0,
    ) -> None:
        self._split_facts = split_facts
        self._cpu_limiter = cpu_limiter
        self._chat = chat
        self.max_facts = max_facts
        system_tokens = estimate_tokens(_SYSTEM_PROMPT % max_facts)
        self._passage_tokens = input_budget(context_tokens, system_tokens)
        self._max_passages = max(1, answer_tokens(context_tokens) // (max_facts * _TOKENS_PER_FACT))
        self._llm_input_chars = llm_input_chars
        self._llm_time_budget_seconds = llm_time_budget_seconds

    @property
    def source(self) -> str:
        """``llm`` when facts are asked of an LLM, else ``splitter``."""
        return "splitter" if self._chat is None else "llm"

    async def extract(self, topics: Sequence[KnowledgeTopic]) -> dict[str, tuple[list[str], str]]:
        """``{topic_id: (facts, source)}`` for every topic, ``source`` being ``llm`` or
        ``splitter``. A checkpoint; blocks for at most ``llm_time_budget_seconds`` plus one
        splitter pass.

        Raises nothing of the LLM's: its failures fall back to the splitter. Raises what the
        splitter raises.

        Cancellation handling: LLM requests in flight are abandoned; a splitter thread already
        running finishes in the background.
        """
        results: dict[str, tuple[list[str], str]] = {}
        if self._chat is not None and topics:
            asked = []
            for topic in topics:
                text = fact_source_text(topic)[: self._llm_input_chars]
                if text:
                    asked.append((topic, text))
                else:
                    results[topic.topic_id] = ([], "llm")
            failures: list[str] = []
            batches = fact_batches([text for _, text in asked], self._passage_tokens, self._max_passages)
            with trio.move_on_after(self._llm_time_budget_seconds):
                async with trio.open_nursery() as nursery:
                    for batch in batches:
                        nursery.start_soon(self._ask_llm, [asked[i] for i in batch], results, failures)
            missing = sum(topic.topic_id not in results for topic in topics)
            if missing:
                log.warning("LLM facts fell back to the splitter for %d of %d topics: %s", missing,
                            len(topics), failures[0] if failures else "time budget spent")
        missing_topics = [topic for topic in topics if topic.topic_id not in results]
        if missing_topics:
            texts = [fact_source_text(topic) for topic in missing_topics]
            split = await trio.to_thread.run_sync(self._split_all, texts, limiter=self._cpu_limiter)
            for topic, facts in zip(missing_topics, split, strict=True):
                results[topic.topic_id] = (facts, "splitter")
        return results

    def _split_all(self, texts: list[str]) -> list[list[str]]:
        return [clean_facts(self._split_facts(text, self.max_facts), self.max_facts) if text else [] for text in texts]

    async def _ask_llm(self, batch: list[tuple[KnowledgeTopic, str]], results: dict, failures: list[str]) -> None:
        """One call for the passages of ``batch``; each answered passage's facts go to ``results``."""
        passages = "\n\n".join(f"{PASSAGE_HEADER}{number}: {topic.topic_path}\n{text}"
                                for number, (topic, text) in enumerate(batch, start=1))
        messages = [
            {"role": "system", "content": _SYSTEM_PROMPT % self.max_facts},
            {"role": "user", "content": passages},
        ]
        try:
            answer = await self._chat.complete_json(messages, budget=Budget.BACKGROUND, schema_hint=FACTS_SCHEMA_HINT)
        except ProviderError as exc:
            failures.append(f"{exc.__class__.__name__}: {exc}")
            return
        found = facts_by_passage(answer, len(batch), self.max_facts)
        if len(found) < len(batch):
            failures.append(f"the answer gave facts for {len(found)} of {len(batch)} passages")
        for number, facts in found.items():
            results[batch[number - 1][0].topic_id] = (facts, "llm")
