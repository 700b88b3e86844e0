"""The LLM extractor: EverOS's topic-tree JSON from a chat model, validated, with one repair.

The text is cut into numbered paragraphs (blank-line separated blocks) and packed into batches of
about ``[llm] max_input_tokens`` (estimated as characters / 4), in a worker thread (G5). Each batch
is one chat call asking for EverOS's topic tree (EverOS reference §7): ``{language, summary,
keywords, topics: [{topic, summary, block_refs: "0-2,5", content_labels, children}]}``. Then,
unless the upload named its category, one classification call ``{"category_id": …}`` over the
taxonomy (an unknown or empty answer means ``Others``).

Validation (:func:`topics_from_answer`, pure): block refs must parse and point into the batch,
topics deeper than ``[llm] max_topic_depth`` are folded into their ancestor at that depth. Each
paragraph is written once: it belongs to the first topic referencing it in post-order, so a child
wins over its parent and a parent keeps only prose of its own. A paragraph no topic references goes
to the topic owning the nearest paragraph before it (after it, at the start of a batch), which keeps
reading order and invents no catch-all topic. Leaves left without prose are dropped.

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
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, final

import trio

from everos.errors import ExtractionEmpty
from everos.knowledge._extractor import BuiltinExtractor, SourceDocument
from everos.knowledge._models import OTHERS_CATEGORY, ExtractedDocument, TopicNode
from everos.knowledge._taxonomy import Category
from everos.knowledge._text import bounded, clean_inline, lead_sentences, name_from_text
from everos.providers import Budget, ChatClient, ProviderError, ProviderResponseError

if TYPE_CHECKING:
    from everos.config import LLMSettings

__all__ = [
    "CHARS_PER_TOKEN",
    "Batch",
    "BatchTopics",
    "InvalidAnswer",
    "LLMExtractor",
    "estimate_tokens",
    "model_phase_seconds",
    "pack_batches",
    "parse_block_refs",
    "split_paragraphs",
    "topics_from_answer",
]

CHARS_PER_TOKEN: Final = 4
"""The token estimate: characters / 4, close enough for English and safe for CJK-light text."""

_TOPIC_NAME_MAX_CHARS: Final = 120
_SUMMARY_MAX_CHARS: Final = 300
_KEYWORD_COUNT: Final = 5
_REPAIR_EXCERPT_CHARS: Final = 4000
_REASON_MAX_CHARS: Final = 300
# The model phase gets at most this share of the job's deadline, so the built-in fallback, the
# rendering and the publish still fit in the job after a model that stalls.
MODEL_PHASE_SHARE: Final = 0.75
_CLASSIFY_NAMES: Final = 30
_BLANK_LINE_RE: Final = re.compile(r"\n[ \t]*\n")
# A paragraph line that would read as a paragraph number "[n]" is escaped in the prompt.
_NUMBER_LIKE_RE: Final = re.compile(r"^(\s*)\[(\d+)\]", re.MULTILINE)
_REF_RE: Final = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")

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

_CLASSIFY_SYSTEM: Final = """\
Choose the category of a document. Answer with one JSON object only: {"category_id": "<one id \
from the list, or an empty string when none fits>"}."""


class InvalidAnswer(ValueError):
    """A topic-tree answer that does not validate; the message says what is wrong."""


@dataclass(frozen=True)
class Batch:
    """Paragraphs ``first`` … ``first + len(paragraphs) - 1`` and their rendered prompt."""

    first: int
    paragraphs: tuple[str, ...]
    prompt: str


def split_paragraphs(text: str) -> list[str]:
    """The blank-line separated blocks of ``text``, without surrounding blank lines. Pure."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return [block.strip("\n").rstrip() for block in _BLANK_LINE_RE.split(text) if block.strip()]


def estimate_tokens(text: str) -> int:
    """Characters / 4, rounded up."""
    return -(-len(text) // CHARS_PER_TOKEN)


def pack_batches(paragraphs: Sequence[str], max_tokens: int) -> list[Batch]:
    """Pack consecutive paragraphs into batches of at most ``max_tokens`` (estimated). Pure.

    A paragraph larger than ``max_tokens`` on its own gets a batch of its own (it is not cut:
    cutting would put one paragraph into two topics). Numbers are global across batches.
    """
    batches: list[Batch] = []
    start, used = 0, 0
    for index, paragraph in enumerate(paragraphs):
        tokens = estimate_tokens(paragraph) + 2  # the "[n] " prefix and the blank line
        if index > start and used + tokens > max_tokens:
            batches.append(_batch(paragraphs, start, index))
            start, used = index, 0
        used += tokens
    if start < len(paragraphs):
        batches.append(_batch(paragraphs, start, len(paragraphs)))
    return batches


def _batch(paragraphs: Sequence[str], start: int, end: int) -> Batch:
    lines = [
        f"[{number}] " + _NUMBER_LIKE_RE.sub(r"\1\\[\2]", paragraphs[number]) for number in range(start, end)
    ]
    return Batch(first=start, paragraphs=tuple(paragraphs[start:end]), prompt="\n\n".join(lines))


def _prepare(text: str, max_tokens: int) -> list[Batch]:
    return pack_batches(split_paragraphs(text), max_tokens)


# -- validation (pure) ----------------------------------------------------------------------------


@dataclass
class _Draft:
    name: str
    summary: str
    labels: tuple[str, ...]
    refs: list[int]
    children: list[_Draft]
    owned: list[int]


@dataclass(frozen=True)
class BatchTopics:
    """A validated batch: its topics and its document-level fields."""

    language: str
    summary: str
    keywords: tuple[str, ...]
    topics: tuple[TopicNode, ...]
    notes: tuple[str, ...]


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


def _draft(item: Any, first: int, count: int, depth: int, max_depth: int) -> _Draft:
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
    )
    for child in children:
        sub = _draft(child, first, count, depth + 1, max_depth)
        if depth >= max_depth:
            # Too deep: the child's paragraphs (and its descendants') fold into this topic.
            draft.refs.extend(_all_refs(sub))
        else:
            draft.children.append(sub)
    return draft


def _all_refs(draft: _Draft) -> list[int]:
    refs = list(draft.refs)
    for child in draft.children:
        refs.extend(_all_refs(child))
    return refs


def _post_order(drafts: Sequence[_Draft]) -> list[_Draft]:
    out: list[_Draft] = []
    for draft in drafts:
        out.extend(_post_order(draft.children))
        out.append(draft)
    return out


def topics_from_answer(answer: Any, paragraphs: Sequence[str], first: int, max_depth: int) -> BatchTopics:
    """Validate one batch's topic-tree answer and build its topics (see the module doc). Pure.

    Raises:
        InvalidAnswer: the answer is not a topic tree over these paragraphs.
    """
    if not isinstance(answer, Mapping):
        raise InvalidAnswer("the answer must be a JSON object")
    raw_topics = answer.get("topics")
    if not isinstance(raw_topics, list) or not raw_topics:
        raise InvalidAnswer("'topics' must be a non-empty list")
    count = len(paragraphs)
    drafts = [_draft(item, first, count, 1, max_depth) for item in raw_topics]
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
    )


def _node(draft: _Draft, paragraphs: Sequence[str], first: int) -> TopicNode | None:
    children = tuple(node for node in (_node(c, paragraphs, first) for c in draft.children) if node is not None)
    content = "\n\n".join(paragraphs[number - first] for number in draft.owned)
    if not content and not children:
        return None
    name = draft.name or name_from_text(content) or (children[0].name if children else "Topic")
    summary = draft.summary or lead_sentences(content, _SUMMARY_MAX_CHARS) or name
    return TopicNode(name=name, summary=summary, content=content, content_labels=draft.labels, children=children)


# -- the extractor --------------------------------------------------------------------------------


def model_phase_seconds(settings: LLMSettings, job_timeout_seconds: float | None) -> float:
    """The deadline of the model's part of one extraction: ``extraction_timeout_seconds``, at most
    :data:`MODEL_PHASE_SHARE` of the job's deadline (when there is one)."""
    if job_timeout_seconds is None:
        return settings.extraction_timeout_seconds
    return min(settings.extraction_timeout_seconds, MODEL_PHASE_SHARE * job_timeout_seconds)


class _FallBack(Exception):
    """The model's answer stayed malformed after the repair; ``reason`` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@final
class LLMExtractor:
    """The :class:`~everos.knowledge.Extractor` that asks a chat model (see the module doc).

    ``chat`` is owned by the extractor from now on: :meth:`aclose` closes it. ``settings`` gives
    ``max_input_tokens``, ``max_topic_depth``, ``fallback`` and ``extraction_timeout_seconds``;
    ``job_timeout_seconds`` (the ingest job's deadline) caps the model phase; ``cpu_limiter``
    bounds the splitting and the built-in fallback (G5).
    """

    def __init__(self, chat: ChatClient, settings: LLMSettings, cpu_limiter: trio.CapacityLimiter, *,
                 job_timeout_seconds: float | None = None) -> None:
        self._chat = chat
        self._max_tokens = settings.max_input_tokens
        self._max_depth = settings.max_topic_depth
        self._falls_back = settings.fallback == "builtin"
        self._model_phase_s = model_phase_seconds(settings, job_timeout_seconds)
        self._cpu_limiter = cpu_limiter
        self._fallback = BuiltinExtractor(cpu_limiter)

    async def aclose(self) -> None:
        """Close the chat client. Idempotent, bounded, shielded."""
        await self._chat.aclose()

    async def extract(self, source: SourceDocument, categories: Sequence[Category]) -> ExtractedDocument:
        """Extract ``source`` with one chat call per batch (two with a repair) and one classification.

        A checkpoint; every call is bounded by the chat client's deadlines (G3) on the
        interactive budget, and, with ``fallback = "builtin"``, the whole model phase by its own
        deadline, past which (or on a provider failure) the built-in extractor runs instead.
        Cancellation abandons the request in flight; nothing is written.

        Raises:
            ExtractionEmpty: the text holds no paragraph.
            ProviderError: the model endpoint failed and ``fallback = "none"`` (a malformed answer
                always falls back to the built-in extractor, with a note).
        """
        prepare = functools.partial(_prepare, source.text, self._max_tokens)
        batches = await trio.to_thread.run_sync(prepare, limiter=self._cpu_limiter, abandon_on_cancel=True)
        if not batches:
            raise ExtractionEmpty("the document holds no text")
        if not self._falls_back:
            return await self._with_model(source, categories, batches)
        try:
            with trio.fail_after(self._model_phase_s):
                return await self._with_model(source, categories, batches)
        except trio.TooSlowError:
            reason = f"the model did not finish within {self._model_phase_s:g} s"
        except ProviderError as exc:
            reason = exc.message
        return await self._builtin(source, categories, reason)

    async def _with_model(self, source: SourceDocument, categories: Sequence[Category],
                          batches: list[Batch]) -> ExtractedDocument:
        """The model's topic tree (the built-in one when its answers stay malformed). Raises
        ProviderError."""
        try:
            results = [await self._extract_batch(source.title, batch) for batch in batches]
        except _FallBack as fallback:
            return await self._builtin(source, categories, fallback.reason)
        first = results[0]
        notes = [note for result in results for note in result.notes]
        if len(batches) > 1:
            notes.append(f"extracted in {len(batches)} batches of about {self._max_tokens} tokens")
        category_id = source.category_id
        if category_id is None:
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
        )

    async def _extract_batch(self, title: str, batch: Batch) -> BatchTopics:
        """The batch's validated topics, after at most one repair. Raises _FallBack."""
        last = batch.first + len(batch.paragraphs) - 1
        messages: list[dict[str, str]] = [
            {"role": "system", "content": _TOPIC_SYSTEM.replace("{depth}", str(self._max_depth))},
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
        try:
            return topics_from_answer(answer, batch.paragraphs, batch.first, self._max_depth)
        except InvalidAnswer as exc:
            return str(exc), json.dumps(answer, ensure_ascii=False)
        except RecursionError:  # absurdly nested children: a malformed answer, not a crash
            return "topics are nested far too deeply", ""

    async def _classify(self, title: str, first: BatchTopics, names: list[str],
                        categories: Sequence[Category]) -> str:
        """One classification call; an unknown or empty id means ``Others``."""
        known = {category.id for category in categories}
        if not known:
            return OTHERS_CATEGORY
        listing = "\n".join(f"- {c.id}: {' '.join(c.description.split())}" for c in categories)
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
