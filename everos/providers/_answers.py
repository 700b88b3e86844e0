"""Reading OpenAI-compatible answers: plain functions over decoded JSON, no I/O.

Each raises :class:`AnswerError` (a ``ValueError``) with a message for people when the answer does
not have the expected shape; the HTTP clients turn it into ``ProviderResponseError``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

__all__ = [
    "AnswerError",
    "DimensionMismatch",
    "chat_content",
    "fit_dimension",
    "parse_embeddings",
    "parse_json_object",
    "parse_rerank",
]

_CONTENT_EXCERPT_CHARS = 4000
_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)


class AnswerError(ValueError):
    """An answer is not in the expected shape. ``content`` is the model's text, when any."""

    def __init__(self, message: str, *, content: str = "") -> None:
        super().__init__(message)
        self.content = content[:_CONTENT_EXCERPT_CHARS]


class DimensionMismatch(AnswerError):
    """Embedding vectors are narrower than the configured dimension."""


def chat_content(answer: Any) -> str:
    """The text of the first choice of a chat-completions answer."""
    try:
        message = answer["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        raise AnswerError(f"chat answer has no choices[0].message: {_excerpt(answer)}") from None
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):  # some servers answer with content parts
        content = "".join(part["text"] for part in content
                          if isinstance(part, dict) and isinstance(part.get("text"), str))
    if not isinstance(content, str) or not content.strip():
        raise AnswerError(f"chat answer has an empty message content: {_excerpt(answer)}")
    return content


def parse_json_object(text: str) -> dict[str, Any]:
    """The first JSON object in a model's text: inside a ```json fence or bare, after any
    ``<think>…</think>`` block.

    Raises:
        AnswerError: no JSON object could be read; ``content`` holds the text.
    """
    cleaned = _THINK.sub("", text)
    candidates = [m.group(1) for m in _FENCE.finditer(cleaned)] + [cleaned]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        start = candidate.find("{")
        while start != -1:
            try:
                value, _ = decoder.raw_decode(candidate, start)
            except (ValueError, RecursionError):  # RecursionError: nested deeper than the decoder goes
                start = candidate.find("{", start + 1)
                continue
            if isinstance(value, dict):
                return value
            start = candidate.find("{", start + 1)
    raise AnswerError(f"no JSON object in the model's answer: {text[:200]!r}", content=text)


def fit_dimension(vector: Sequence[float], dim: int) -> list[float]:
    """``vector`` with exactly ``dim`` entries: a longer one is cut and L2-normalised again (as
    EverOS does for Matryoshka-style models); an equal one is returned as floats.

    Raises:
        DimensionMismatch: the vector is shorter than ``dim``.
    """
    if len(vector) < dim:
        raise DimensionMismatch(
            f"the model returns {len(vector)}-dimensional vectors but [embedding] dim = {dim}; "
            f"set dim to {len(vector)} (and rebuild the index) or use a wider model"
        )
    if len(vector) == dim:
        return [float(x) for x in vector]
    cut = [float(x) for x in vector[:dim]]
    norm = math.sqrt(sum(x * x for x in cut))
    return [x / norm for x in cut] if norm > 0 else cut


def parse_embeddings(answer: Any, *, expected_count: int, dim: int) -> list[list[float]]:
    """Vectors of an embeddings answer ``{"data": [{"embedding": [...], "index": i}, ...]}``, in
    input order, each fitted to ``dim`` with :func:`fit_dimension`.

    Raises:
        AnswerError: wrong shape, wrong count, values that are not finite numbers.
        DimensionMismatch: vectors narrower than ``dim``.
    """
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list):
        raise AnswerError(f"embeddings answer has no data list: {_excerpt(answer)}")
    if len(data) != expected_count:
        raise AnswerError(f"embeddings answer has {len(data)} vectors for {expected_count} inputs")
    rows: list[tuple[int, list[float]]] = []
    for position, item in enumerate(data):
        vector = item.get("embedding") if isinstance(item, dict) else None
        if not isinstance(vector, list) or not vector:
            raise AnswerError(f"embeddings answer item {position} has no embedding list")
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vector):
            raise AnswerError(f"embeddings answer item {position} holds non-numeric values")
        floats = _finite_floats(vector)
        if floats is None:
            raise AnswerError(f"embeddings answer item {position} holds a value that is not a finite number")
        index = item.get("index", position)
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < expected_count:
            raise AnswerError(f"embeddings answer item {position} has index {index!r} out of range")
        rows.append((index, fit_dimension(floats, dim)))
    if len({index for index, _ in rows}) != expected_count:
        raise AnswerError("embeddings answer repeats an index")
    rows.sort(key=lambda row: row[0])
    return [vector for _, vector in rows]


def parse_rerank(answer: Any, *, document_count: int) -> list[tuple[int, float]]:
    """``(index, score)`` pairs of a rerank answer, best first (ties by index).

    Accepts the vLLM / Jina / Cohere shape ``{"results": [{"index", "relevance_score"}]}``, the
    same under ``"data"``, a bare list, and ``"score"`` for the score (TEI).

    Raises:
        AnswerError: wrong shape, an index out of range or repeated, a non-numeric score.
    """
    items = answer
    if isinstance(answer, dict):
        items = answer.get("results", answer.get("data"))
    if not isinstance(items, list):
        raise AnswerError(f"rerank answer has no results list: {_excerpt(answer)}")
    pairs: list[tuple[int, float]] = []
    seen: set[int] = set()
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise AnswerError(f"rerank result {position} is not an object")
        index = item.get("index")
        score = item.get("relevance_score", item.get("score"))
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < document_count:
            raise AnswerError(f"rerank result {position} has index {index!r}; {document_count} documents were sent")
        if index in seen:
            raise AnswerError(f"rerank answer repeats index {index}")
        if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score):
            raise AnswerError(f"rerank result {position} has no numeric relevance_score")
        seen.add(index)
        pairs.append((index, float(score)))
    pairs.sort(key=lambda pair: (-pair[1], pair[0]))
    return pairs


def _finite_floats(values: Sequence[Any]) -> list[float] | None:
    """``values`` as floats, or None when one is not a finite number (NaN, an infinity, or an
    integer too large for a float)."""
    try:
        floats = [float(x) for x in values]
    except OverflowError:
        return None
    return floats if all(math.isfinite(x) for x in floats) else None


def _excerpt(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text[:200]
