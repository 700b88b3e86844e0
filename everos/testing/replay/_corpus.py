"""The synthetic corpus a scenario uploads: deterministic markdown documents in English and
Chinese, each holding one word no other document holds (:func:`corpus_word`), so a keyword search
proves it searchable.
"""

from __future__ import annotations

import random

__all__ = ["corpus_word", "make_corpus"]

WORDS_EN = ("solar wind river engine budget court lesson market signal garden protein orbit harbor "
            "ledger theory canvas glacier voltage harvest treaty archive sensor").split()
WORDS_ZH = "太阳 风能 河流 引擎 预算 法院 课程 市场 信号 花园 蛋白 轨道 港口 账本 理论 画布 冰川 电压 收获 条约".split()


def corpus_word(index: int) -> str:
    """The word only document ``index`` of a corpus holds (``tagaaabq`` for 1): a keyword search
    for it finds that document and no other."""
    return "tag" + "".join("abcdfghjkl"[int(digit)] for digit in f"{index:05d}") + "q"


def make_corpus(count: int, size_bytes: int, languages: tuple[str, ...], seed: int) -> list[tuple[str, bytes]]:
    """``count`` markdown documents of about ``size_bytes`` each: headings, paragraphs, a mix of
    ``languages`` ("en", "zh"), and in the introduction :func:`corpus_word` of the document's
    index. Deterministic for a seed; every document is distinct."""
    rng = random.Random(seed)
    corpus = []
    for index in range(count):
        language = languages[index % len(languages)]
        words = WORDS_ZH if language == "zh" else WORDS_EN
        joiner = "" if language == "zh" else " "
        parts = [f"# Document {index}\n\nIntroduction {index}: {corpus_word(index)}.\n"]
        size, section = 0, 0
        while size < size_bytes:
            section += 1
            paragraph = joiner.join(rng.choice(words) for _ in range(60)) + ("。" if language == "zh" else ".")
            text = f"\n## Section {section}\n\n{paragraph}\n\n{paragraph[::-1]}\n"
            parts.append(text)
            size += len(text.encode())
        corpus.append((f"Document {index} {language}", "".join(parts).encode()))
    return corpus
