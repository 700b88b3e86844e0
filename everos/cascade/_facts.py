"""Atomic facts per topic: the LLM on the background budget when one is configured, else (and
whenever its answer is unusable) the built-in sentence splitter.

A fact is a short self-contained statement taken from a topic's content (its summary when it has
no content). The splitter is a callable ``split_facts(text, max_facts) -> list[str]`` run in a
worker thread under the cpu limiter (G5). The LLM is asked topic by topic, all topics of a
document at once (its client's background budget bounds how many attempts are in flight, G4),
within ``llm_time_budget_seconds``: a topic whose answer is missing, malformed or late gets the
splitter's facts instead, so facts never hold a row back for long and a slow or broken LLM never
stops indexing (G11).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import trio

from everos.knowledge._models import KnowledgeTopic
from everos.providers import Budget, ProviderError

__all__ = ["FACTS_SCHEMA_HINT", "FactExtractor", "clean_facts", "facts_from_answer"]

log = logging.getLogger("everos.cascade")

FACTS_SCHEMA_HINT = {"facts": ["One self-contained statement.", "Another one."]}

_SYSTEM_PROMPT = (
    "You split a passage of a document into atomic facts for a search index. Each fact is one short, "
    "self-contained statement that is true according to the passage, understandable without the passage "
    "(name the subject instead of using pronouns), and written in the passage's language. Cover every "
    "distinct piece of information; do not add anything the passage does not say. Answer with one JSON "
    'object: {"facts": ["...", "..."]}, at most %d facts.'
)

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
    """The facts of an LLM answer ``{"facts": [str, ...]}``, or None when it is malformed (not
    that shape, or no usable fact in it)."""
    if not isinstance(answer, dict) or not isinstance(answer.get("facts"), list):
        return None
    facts = clean_facts(answer["facts"], max_facts)
    return facts or None


def fact_source_text(topic: KnowledgeTopic) -> str:
    """What a topic's facts are taken from: its content, else its summary."""
    return topic.content.strip() or topic.summary.strip()


class FactExtractor:
    """Facts for the topics of one document; see the module docstring.

    ``chat`` is a :class:`~everos.providers.ChatClient` (anything with ``complete_json``) or None.
    ``llm_input_chars`` cuts each passage sent to the LLM.
    """

    def __init__(
        self,
        split_facts: SplitFacts,
        cpu_limiter: trio.CapacityLimiter,
        *,
        chat: Any | None = None,
        max_facts: int = 16,
        llm_input_chars: int = 12_000,
        llm_time_budget_seconds: float = 60.0,
    ) -> None:
        self._split_facts = split_facts
        self._cpu_limiter = cpu_limiter
        self._chat = chat
        self.max_facts = max_facts
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
            failures: list[str] = []
            with trio.move_on_after(self._llm_time_budget_seconds):
                async with trio.open_nursery() as nursery:
                    for topic in topics:
                        nursery.start_soon(self._ask_llm, topic, results, failures)
            late = len(topics) - len(results) - len(failures)
            if failures or late:
                log.warning("LLM facts fell back to the splitter for %d topics (%d late): %s",
                            len(failures) + late, late, failures[0] if failures else "time budget spent")
        missing = [topic for topic in topics if topic.topic_id not in results]
        if missing:
            texts = [fact_source_text(topic) for topic in missing]
            split = await trio.to_thread.run_sync(self._split_all, texts, limiter=self._cpu_limiter)
            for topic, facts in zip(missing, split, strict=True):
                results[topic.topic_id] = (facts, "splitter")
        return results

    def _split_all(self, texts: list[str]) -> list[list[str]]:
        return [clean_facts(self._split_facts(text, self.max_facts), self.max_facts) if text else [] for text in texts]

    async def _ask_llm(self, topic: KnowledgeTopic, results: dict, failures: list[str]) -> None:
        text = fact_source_text(topic)
        if not text:
            results[topic.topic_id] = ([], "llm")
            return
        messages = [
            {"role": "system", "content": _SYSTEM_PROMPT % self.max_facts},
            {"role": "user", "content": f"Topic: {topic.topic_path}\n\n{text[: self._llm_input_chars]}"},
        ]
        try:
            answer = await self._chat.complete_json(messages, budget=Budget.BACKGROUND, schema_hint=FACTS_SCHEMA_HINT)
        except ProviderError as exc:
            failures.append(f"{exc.__class__.__name__}: {exc}")
            return
        facts = facts_from_answer(answer, self.max_facts)
        if facts is None:
            failures.append(f"malformed answer for {topic.topic_id}")
            return
        results[topic.topic_id] = (facts, "llm")
