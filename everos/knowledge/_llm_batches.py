"""The model's input: a text cut into numbered paragraphs (blank-line separated blocks) and packed
into batches of a token budget (the LLM extractor's ``input_budget`` of ``[llm] context_tokens``), estimated as characters / 4. Paragraph numbers
are global across batches, and a line that would read as a paragraph number is escaped. Pure:
the LLM extractor runs it in a worker thread (G5).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["CHARS_PER_TOKEN", "Batch", "batches_of_text", "estimate_tokens", "pack_batches", "split_paragraphs"]

CHARS_PER_TOKEN: Final = 4
"""The token estimate: characters / 4, close enough for English and safe for CJK-light text."""
_BLANK_LINE_RE: Final = re.compile(r"\n[ \t]*\n")
# A paragraph line that would read as a paragraph number "[n]" is escaped in the prompt.
_NUMBER_LIKE_RE: Final = re.compile(r"^(\s*)\[(\d+)\]", re.MULTILINE)


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


def batches_of_text(text: str, max_tokens: int) -> list[Batch]:
    """The batches of ``text``: :func:`split_paragraphs`, then :func:`pack_batches`. Pure."""
    return pack_batches(split_paragraphs(text), max_tokens)
