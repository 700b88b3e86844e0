"""The built-in atomic-fact splitter."""

from __future__ import annotations

from everos.search import MAX_FACT_CHARS, split_facts


def test_sentences_become_facts_in_document_order() -> None:
    assert split_facts("The sky is blue today. Grass grows in the spring! Is water wet at all?", 10) == [
        "The sky is blue today.", "Grass grows in the spring!", "Is water wet at all?",
    ]


def test_abbreviations_initials_and_decimals_do_not_end_a_sentence() -> None:
    text = "Dr. Smith measured 3.14 metres, e.g. in the lab. J. R. Tolkien wrote many books. It works."
    assert split_facts(text, 10) == [
        "Dr. Smith measured 3.14 metres, e.g. in the lab.", "J. R. Tolkien wrote many books.",
    ]


def test_a_lower_case_word_after_a_full_stop_continues_the_sentence() -> None:
    assert split_facts("Version 2. and later versions keep the same format.", 5) == [
        "Version 2. and later versions keep the same format.",
    ]


def test_cjk_punctuation_splits_without_spaces() -> None:
    assert split_facts("猫是一种常见的哺乳动物。它们整天都喜欢睡觉！短句。", 10) == [
        "猫是一种常见的哺乳动物。", "它们整天都喜欢睡觉！",
    ]


def test_lines_of_one_paragraph_are_joined_with_normalised_whitespace() -> None:
    assert split_facts("This sentence   is wrapped\nover two lines.\n\n人工智能正在改变\n世界的运作方式。", 5) == [
        "This sentence is wrapped over two lines.", "人工智能正在改变世界的运作方式。",
    ]


def test_markdown_structure_and_markup_are_not_facts() -> None:
    text = (
        "# A heading that is no fact\n\nThe steps are:\n\n- Install the **package** with `pip` today.\n"
        "- Read [the manual](http://example.com) twice.\n\n```\ncode lines are not facts at all.\n```\n\n"
        "| a table | row is not a fact |\n\n---\n\n> Quoted text can be a fact too.\n"
    )
    assert split_facts(text, 10) == [
        "Install the package with pip today.", "Read the manual twice.", "Quoted text can be a fact too.",
    ]


def test_fragments_too_short_to_state_anything_are_dropped() -> None:
    assert split_facts("OK. Yes indeed. This one says something. 短句。", 10) == ["This one says something."]


def test_repeats_are_dropped_and_max_facts_is_respected() -> None:
    assert split_facts("Cats sleep a lot. CATS SLEEP A LOT. Dogs bark at night. Birds sing at dawn.", 2) == [
        "Cats sleep a lot.", "Dogs bark at night.",
    ]
    assert split_facts("Cats sleep a lot.", 0) == []


def test_an_overlong_sentence_is_cut_at_clause_boundaries_then_words() -> None:
    clause = "this clause has several words in it"
    facts = split_facts(", ".join([clause] * 30) + ".", 50)
    assert len(facts) > 1
    assert all(len(fact) <= MAX_FACT_CHARS for fact in facts)
    facts = split_facts(" ".join(f"word{i}" for i in range(400)), 50)
    assert all(len(fact) <= MAX_FACT_CHARS for fact in facts) and len(facts) >= 6


def test_empty_or_blank_text_has_no_facts() -> None:
    assert split_facts("", 5) == [] and split_facts("  \n\n ", 5) == []
