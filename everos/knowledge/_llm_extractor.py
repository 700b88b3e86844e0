"""The LLM extractor: EverOS's topic-tree JSON from a chat model, validated, with one repair.

The text is cut into numbered paragraphs and packed into batches that fit the model's context
window (:func:`input_budget` of ``[llm] context_tokens``: what is left after the instructions and
room for the answer; :mod:`._llm_batches`), in a worker thread (G5). A document that fits is one
chat call. Each batch is one call asking for EverOS's topic tree (EverOS reference §7):
``{language, summary, keywords, category_id, topics: [{topic, summary, block_refs: "0-2,5",
content_labels, facts, children}]}``, validated into topics by
:func:`~everos.knowledge._llm_topics.topics_from_answer` (pure). The first batch also lists the
taxonomy and asks for the ``category_id`` (unless the upload named its category): an unknown or
empty id means ``Others``; only an answer without the field at all costs one classification call
``{"category_id": …}``. With ``facts_per_topic`` > 0 (``[cascade] llm_facts = "with-extraction"``)
each topic comes with its atomic facts in the same answer, so indexing asks the model nothing.

A malformed answer (no JSON object, or JSON that fails validation) gets one repair request: the bad
answer goes back with the validation error. If the repair fails too, the built-in extractor handles
the whole document and ``ExtractedDocument.notes`` says why.

With ``[llm] fallback = "builtin"`` (the default) a failing model degrades the same way: a
provider failure (timeouts, open circuit, HTTP errors, closed connections) or a model phase that
runs past its own deadline (:func:`model_phase_seconds`, inside the job's) hands the document to the
built-in extractor, so the upload still gets a topic tree. ``ExtractedDocument.extractor`` records
which extractor ran (``llm``, or ``builtin (llm fallback: <why>)``). With ``fallback = "none"``
provider failures propagate untouched, so the ingest job retries or fails with that error (G7).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, final

import trio

from everos.errors import ExtractionEmpty
from everos.knowledge._extractor import BuiltinExtractor, SourceDocument
from everos.knowledge._llm_batches import Batch, batches_of_text, estimate_tokens
from everos.knowledge._llm_topics import BatchTopics, InvalidAnswer, topics_from_answer
from everos.knowledge._models import OTHERS_CATEGORY, ExtractedDocument, TopicNode
from everos.knowledge._taxonomy import Category
from everos.knowledge._text import bounded
from everos.providers import Budget, ChatClient, ProviderError, ProviderResponseError

if TYPE_CHECKING:
    from everos.config import LLMSettings

__all__ = ["MODEL_PHASE_SHARE", "LLMExtractor", "answer_tokens", "input_budget", "model_phase_seconds"]

_REPAIR_EXCERPT_CHARS: Final = 4000
_REASON_MAX_CHARS: Final = 300
# The model phase gets at most this share of the job's deadline, so the built-in fallback, the
# rendering and the publish still fit in the job after a model that stalls.
MODEL_PHASE_SHARE: Final = 0.75
_CLASSIFY_NAMES: Final = 30
# Of the context window, this share (at least _ANSWER_MIN_TOKENS) is left for the answer.
_ANSWER_SHARE: Final = 0.25
_ANSWER_MIN_TOKENS: Final = 1024
_MIN_BATCH_TOKENS: Final = 256

_TOPIC_SYSTEM: Final = """\
You organise a document into a topic tree for retrieval. The user message lists the document's \
paragraphs, each starting with its number in brackets, e.g. [3].
Answer with one JSON object only, in the document's language:
{"language": "<ISO code>", "summary": "<the document in up to 5 sentences>", \
"keywords": ["<3 to 5 keywords>"], "topics": [{"topic": "<name, at most 20 characters>", \
"summary": "<what the topic says, up to 5 sentences>", "block_refs": "<paragraph numbers, e.g. 0-2,5>", \
"content_labels": [], "children": [<topics of the same shape>]}]}
Rules: every paragraph number must appear in the block_refs of some topic; use only the numbers \
shown; nest at most {depth} levels; content_labels only from violence, adult, hate_speech, \
personal_info, financial, medical."""

_FACTS_RULE: Final = """
Give every topic also "facts": ["..."], at most {facts} atomic facts from its own paragraphs: \
each one short, self-contained statement (name the subject, no pronouns), in the document's \
language, saying nothing the paragraphs do not say."""

_CATEGORY_RULE: Final = """
Also answer "category_id": the id of the document's category from this list, or "" when none fits:
{listing}"""

_CLASSIFY_SYSTEM: Final = """\
Choose the category of a document. Answer with one JSON object only: {"category_id": "<one id \
from the list, or an empty string when none fits>"}."""


def model_phase_seconds(settings: LLMSettings, job_timeout_seconds: float | None) -> float:
    """The deadline of the model's part of one extraction: ``extraction_timeout_seconds``, at most
    :data:`MODEL_PHASE_SHARE` of the job's deadline (when there is one)."""
    if job_timeout_seconds is None:
        return settings.extraction_timeout_seconds
    return min(settings.extraction_timeout_seconds, MODEL_PHASE_SHARE * job_timeout_seconds)


def input_budget(context_tokens: int, instruction_tokens: int) -> int:
    """Paragraph tokens per batch (estimated): the context window less the instructions and the
    room left for the answer (:data:`_ANSWER_SHARE`, at least :data:`_ANSWER_MIN_TOKENS`); never
    below :data:`_MIN_BATCH_TOKENS`."""
    return max(_MIN_BATCH_TOKENS, context_tokens - answer_tokens(context_tokens) - instruction_tokens)


def answer_tokens(context_tokens: int) -> int:
    """The room of the context window left for the answer: :data:`_ANSWER_SHARE` of it, at least
    :data:`_ANSWER_MIN_TOKENS`."""
    return max(_ANSWER_MIN_TOKENS, int(context_tokens * _ANSWER_SHARE))


def _listing(categories: Sequence[Category]) -> str:
    return "\n".join(f"- {c.id}: {' '.join(c.description.split())}" for c in categories)


class _FallBack(Exception):
    """The model's answer stayed malformed after the repair; ``reason`` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@final
class LLMExtractor:
    """The :class:`~everos.knowledge.Extractor` that asks a chat model (see the module doc).

    ``chat`` is owned by the extractor from now on: :meth:`aclose` closes it. ``settings`` gives
    ``context_tokens``, ``max_topic_depth``, ``fallback`` and ``extraction_timeout_seconds``;
    ``job_timeout_seconds`` (the ingest job's deadline) caps the model phase; ``cpu_limiter``
    bounds the splitting and the built-in fallback (G5); ``facts_per_topic`` > 0 asks for each
    topic's atomic facts in the same answer (``TopicNode.facts``); ``fallback`` is the built-in
    extractor to hand a document to (by default one in threads under ``cpu_limiter``).
    """

    def __init__(self, chat: ChatClient, settings: LLMSettings, cpu_limiter: trio.CapacityLimiter, *,
                 job_timeout_seconds: float | None = None, facts_per_topic: int = 0,
                 fallback: BuiltinExtractor | None = None) -> None:
        self._chat = chat
        self._context_tokens = settings.context_tokens
        self._max_facts = facts_per_topic
        self._max_depth = settings.max_topic_depth
        self._falls_back = settings.fallback == "builtin"
        self._model_phase_s = model_phase_seconds(settings, job_timeout_seconds)
        self._cpu_limiter = cpu_limiter
        self._fallback = fallback if fallback is not None else BuiltinExtractor(cpu_limiter)

    async def aclose(self) -> None:
        """Close the chat client. Idempotent, bounded, shielded."""
        await self._chat.aclose()

    async def extract(self, source: SourceDocument, categories: Sequence[Category]) -> ExtractedDocument:
        """Extract ``source`` with one chat call per batch (two with a repair); the category comes
        with the first (a classification call only when that answer has no ``category_id``).

        A checkpoint; every call is bounded by the chat client's deadlines (G3) on the
        interactive budget, and, with ``fallback = "builtin"``, the whole model phase by its own
        deadline, past which (or on a provider failure) the built-in extractor runs instead.
        Cancellation abandons the request in flight; nothing is written.

        Raises:
            ExtractionEmpty: the text holds no paragraph.
            ProviderError: the model endpoint failed and ``fallback = "none"`` (a malformed answer
                always falls back to the built-in extractor, with a note).
        """
        listing = _listing(categories) if source.category_id is None and categories else ""
        instructions = self._system(listing) + f"Title: {source.title}\n\n"
        budget = input_budget(self._context_tokens, estimate_tokens(instructions))
        prepare = functools.partial(batches_of_text, source.text, budget)
        batches = await trio.to_thread.run_sync(prepare, limiter=self._cpu_limiter, abandon_on_cancel=True)
        if not batches:
            raise ExtractionEmpty("the document holds no text")
        if not self._falls_back:
            return await self._with_model(source, categories, batches, listing, budget)
        try:
            with trio.fail_after(self._model_phase_s):
                return await self._with_model(source, categories, batches, listing, budget)
        except trio.TooSlowError:
            reason = f"the model did not finish within {self._model_phase_s:g} s"
        except ProviderError as exc:
            reason = exc.message
        return await self._builtin(source, categories, reason)

    def _system(self, listing: str) -> str:
        """The system prompt: the topic tree, the facts rule when facts are asked, the taxonomy
        when the category is (``listing`` not empty)."""
        system = _TOPIC_SYSTEM.replace("{depth}", str(self._max_depth))
        if self._max_facts > 0:
            system += _FACTS_RULE.replace("{facts}", str(self._max_facts))
        if listing:
            system += _CATEGORY_RULE.replace("{listing}", listing)
        return system

    async def _with_model(self, source: SourceDocument, categories: Sequence[Category],
                          batches: list[Batch], listing: str, budget: int) -> ExtractedDocument:
        """The model's topic tree (the built-in one when its answers stay malformed). Raises
        ProviderError."""
        try:
            results = [await self._extract_batch(source.title, batch, listing if index == 0 else "")
                       for index, batch in enumerate(batches)]
        except _FallBack as fallback:
            return await self._builtin(source, categories, fallback.reason)
        first = results[0]
        notes = [note for result in results for note in result.notes]
        if len(batches) > 1:
            notes.append(f"extracted in {len(batches)} batches of about {budget} tokens")
        category_id = source.category_id
        known = {category.id for category in categories}
        if category_id is None and not known:
            category_id = OTHERS_CATEGORY
        elif category_id is None and first.category_id is not None:
            category_id = first.category_id if first.category_id in known else OTHERS_CATEGORY
        elif category_id is None:  # the model ignored the field: ask once
            names = [topic.name for result in results for topic in result.topics][:_CLASSIFY_NAMES]
            category_id = await self._classify(source.title, first, names, categories)
        topics = tuple(topic for result in results for topic in result.topics)
        return ExtractedDocument(
            language=first.language,
            summary=first.summary,
            keywords=first.keywords,
            category_id=category_id,
            root=TopicNode(name=source.title, summary=first.summary, content="", children=topics),
            notes=tuple(notes),
            extractor="llm",
            facts_given=self._max_facts > 0,
        )

    async def _extract_batch(self, title: str, batch: Batch, listing: str) -> BatchTopics:
        """The batch's validated topics, after at most one repair. Raises _FallBack."""
        last = batch.first + len(batch.paragraphs) - 1
        messages: list[dict[str, str]] = [
            {"role": "system", "content": self._system(listing)},
            {"role": "user", "content": f"Title: {title}\n\n{batch.prompt}"},
        ]
        outcome = await self._ask_topics(messages, batch)
        if isinstance(outcome, BatchTopics):
            return outcome
        error, bad_text = outcome
        messages += [
            {"role": "assistant", "content": bad_text[:_REPAIR_EXCERPT_CHARS] or "(no JSON object)"},
            {"role": "user", "content": f"That answer is invalid: {error}. Answer again with one corrected JSON "
                                        f"object whose topics cover paragraphs {batch.first} to {last}."},
        ]
        outcome = await self._ask_topics(messages, batch)
        if isinstance(outcome, BatchTopics):
            return outcome
        raise _FallBack(f"the model's answer stayed invalid after one repair ({outcome[0]})")

    async def _ask_topics(self, messages: list[dict[str, str]], batch: Batch) -> BatchTopics | tuple[str, str]:
        """The validated topics, or ``(what is wrong, the bad answer's text)``. Provider failures
        other than a malformed answer raise."""
        try:
            answer = await self._chat.complete_json(messages, budget=Budget.INTERACTIVE)
        except ProviderResponseError as exc:
            return exc.detail, exc.content

        def validate() -> BatchTopics | tuple[str, str]:
            try:
                return topics_from_answer(answer, batch.paragraphs, batch.first, self._max_depth, self._max_facts)
            except InvalidAnswer as exc:
                return str(exc), json.dumps(answer, ensure_ascii=False)
            except RecursionError:  # absurdly nested children: a malformed answer, not a crash
                return "topics are nested far too deeply", ""

        # In a thread (G5): an 80 KB document's answer is hundreds of topics, each cleaned by
        # regular expressions, tens of milliseconds in all.
        return await trio.to_thread.run_sync(validate, limiter=self._cpu_limiter, abandon_on_cancel=True)

    async def _classify(self, title: str, first: BatchTopics, names: list[str],
                        categories: Sequence[Category]) -> str:
        """One classification call; an unknown or empty id means ``Others``."""
        known = {category.id for category in categories}
        if not known:
            return OTHERS_CATEGORY
        listing = _listing(categories)
        document = "\n".join([
            f"Title: {title}",
            f"Summary: {first.summary}",
            f"Keywords: {', '.join(first.keywords)}",
            f"Topics: {', '.join(names)}",
        ])
        messages = [
            {"role": "system", "content": _CLASSIFY_SYSTEM},
            {"role": "user",
             "content": f"Categories:\n{listing}\n\nDocument:\n{document}\n\nAnswer with the category_id."},
        ]
        try:
            answer = await self._chat.complete_json(messages, budget=Budget.INTERACTIVE)
        except ProviderResponseError:
            return OTHERS_CATEGORY  # a category is not worth a repair round: Others is always valid
        category_id = answer.get("category_id")
        return category_id if isinstance(category_id, str) and category_id in known else OTHERS_CATEGORY

    async def _builtin(self, source: SourceDocument, categories: Sequence[Category], reason: str) -> ExtractedDocument:
        extracted = await self._fallback.extract(source, categories)
        reason = bounded(" ".join(reason.split()), _REASON_MAX_CHARS)
        note = f"LLM extraction fell back to the built-in extractor: {reason}"
        return dataclasses.replace(extracted, notes=(note, *extracted.notes),
                                   extractor=f"builtin (llm fallback: {reason})")
