"""Search tokens: the words documents and queries meet on."""

from __future__ import annotations

import logging

import pytest
import trio

from everos.search import STOP_WORDS, search_tokens, warm_up


def test_latin_text_is_lowercased_split_into_words_and_stripped_of_noise() -> None:
    assert search_tokens("The Rust borrow-checker, in 2024: a B-tree & I/O!") == [
        "rust", "borrow", "checker", "2024", "tree",
    ]


def test_repeats_are_kept_because_they_weigh_in_bm25() -> None:
    assert search_tokens("cache cache CACHE") == ["cache", "cache", "cache"]


def test_chinese_is_segmented_with_the_shorter_words_inside_long_ones() -> None:
    tokens = search_tokens("我们在北京大学学习人工智能")
    assert {"北京", "大学", "北京大学", "人工智能"} <= set(tokens)
    assert "在" not in tokens  # a stop word


def test_single_cjk_characters_are_kept() -> None:
    assert "猫" in search_tokens("猫和狗")


def test_mixed_scripts_and_full_width_forms_meet_their_ascii_spelling() -> None:
    tokens = search_tokens("ＬａｎｃｅＤＢ是一个向量数据库")
    assert tokens[0] == "lancedb"
    assert "数据库" in tokens


def test_stop_words_cover_both_languages() -> None:
    assert {"the", "and", "的", "是"} <= STOP_WORDS
    assert search_tokens("the and of 的 是") == []


async def test_warm_up_loads_the_dictionary_in_a_thread_without_logging(caplog: pytest.LogCaptureFixture) -> None:
    """G5: the one-second dictionary load happens off the event loop, quietly."""
    with caplog.at_level(logging.DEBUG, logger="jieba"):
        await trio.to_thread.run_sync(warm_up)
    assert not [r for r in caplog.records if r.name == "jieba" and r.levelno < logging.WARNING]
