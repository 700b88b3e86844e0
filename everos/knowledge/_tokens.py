"""Search tokens: the words full-text search indexes and matches, for any language, CJK included.

Chinese and Japanese have no spaces between words, so their runs are segmented with jieba's
``cut_for_search`` (which also emits the shorter words inside long ones: ``北京大学`` gives
``北京``, ``大学`` and ``北京大学``). Other text is split into runs of letters and digits. Tokens
are NFKC-normalised and lowercased; one-character tokens outside CJK and a small list of stop
words are dropped (as EverOS does). The index stores the tokens space-joined and its own tokenizer
only splits on whitespace (and stems English words), so documents and queries meet on the same
tokens.

Blocking: jieba loads its dictionary (about a second) the first time it is used. Call
:func:`warm_up` in a worker thread at startup so no request pays for it.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Final

import jieba

__all__ = ["STOP_WORDS", "joined_tokens", "search_tokens", "warm_up"]

# jieba logs "Building prefix dict..." to its own stderr handler on first use.
jieba.setLogLevel(logging.WARNING)

# Kana, CJK unified ideographs (with extension A) and compatibility ideographs (as the embedder).
_CJK: Final = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_RUN: Final = re.compile(rf"([{_CJK}]+)|([^\W_{_CJK}]+)")
_CJK_WORD: Final = re.compile(rf"[{_CJK}]+")

STOP_WORDS: Final[frozenset[str]] = frozenset(
    "a an and are as at be been but by can could did do does for from had has have how i if in into "
    "is it its of on or our so than that the their them then there these they this those to too was "
    "we were what when where which who whom why will with would you your "
    "的 了 和 是 在 也 就 都 而 及 与 或 之 其 这 那 有 个 我 你 他 她 它 们 吗 呢 吧 啊".split()
)


def warm_up() -> None:
    """Load jieba's dictionary now. Blocks about a second: call it in a worker thread."""
    jieba.initialize()


def search_tokens(text: str) -> list[str]:
    """The search tokens of ``text``, in order, repeats kept (they weigh in BM25). Blocks (CPU);
    the first call loads jieba's dictionary unless :func:`warm_up` ran."""
    tokens: list[str] = []
    for cjk, word in _RUN.findall(unicodedata.normalize("NFKC", text).lower()):
        if word:
            if len(word) > 1 and word not in STOP_WORDS:
                tokens.append(word)
            continue
        for piece in jieba.cut_for_search(cjk, HMM=True):
            if _CJK_WORD.fullmatch(piece) and piece not in STOP_WORDS:
                tokens.append(piece)
    return tokens


def joined_tokens(tokenize: Callable[[str], list[str]], texts: Sequence[str]) -> list[str]:
    """Each text's tokens (``tokenize``: :func:`search_tokens` or a stand-in), space-joined as the
    index stores them. Blocks (CPU): the index runs it in a worker process, where jieba loads its
    dictionary (about a second, 170 MiB) at the first Chinese or Japanese text only."""
    return [" ".join(tokenize(text)) for text in texts]
