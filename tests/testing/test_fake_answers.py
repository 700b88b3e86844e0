"""The fake server's deterministic answers: topic trees, classification, rerank, embeddings."""

import math

from everos.testing import (
    chat_answer,
    classification_answer,
    embedding_vectors,
    format_block_refs,
    paragraphs_of,
    rerank_results,
    topic_tree_answer,
)


def user(text):
    return {"role": "user", "content": text}


DOCUMENT = "\n".join([
    "Split the document into topics.",
    "[0] Trio runs tasks in nurseries. Every task has a parent.",
    "[1] Cancel scopes bound how long work may take.",
    "continued on a second line.",
    "",
    "[2] Capacity limiters bound concurrency.",
    "[3] Deadlines keep servers responsive.",
])


def leaves(topics):
    for topic in topics:
        if topic["children"]:
            yield from leaves(topic["children"])
        else:
            yield topic


def test_paragraphs_are_numbered_lines_with_continuations():
    paragraphs = paragraphs_of([{"role": "system", "content": "[9] not a paragraph"}, user(DOCUMENT)])
    assert [number for number, _ in paragraphs] == [0, 1, 2, 3]
    assert paragraphs[1][1] == "Cancel scopes bound how long work may take. continued on a second line."


def test_without_numbers_blocks_become_paragraphs():
    assert paragraphs_of([user("First block.\n\nSecond\nblock.")]) == [(0, "First block."), (1, "Second block.")]


def test_block_refs_are_compressed_to_ranges():
    assert format_block_refs([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert format_block_refs([3]) == "3"
    assert format_block_refs([]) == ""


def test_topic_tree_covers_every_paragraph_once():
    tree = topic_tree_answer(paragraphs_of([user(DOCUMENT)]))
    assert set(tree) == {"language", "summary", "subject", "keywords", "content_labels", "topics"}
    assert [t["block_refs"] for t in tree["topics"]] == ["0-2", "3"]
    assert [leaf["block_refs"] for leaf in leaves(tree["topics"])] == ["0", "1", "2", "3"]
    assert tree["language"] == "en"
    assert tree["summary"] == "Trio runs tasks in nurseries."
    assert 1 <= len(tree["keywords"]) <= 5
    assert all(len(t["topic"]) <= 20 for t in leaves(tree["topics"]))


def test_topic_tree_detects_chinese():
    tree = topic_tree_answer([(0, "结构化并发让每个任务都有父任务。"), (1, "取消作用域限制时间。")])
    assert tree["language"] == "zh"
    assert tree["topics"][0]["children"][0]["topic"] == "结构化并发让每个"  # 8 characters


def test_classification_picks_the_category_sharing_most_words():
    messages = [
        {"role": "system", "content": 'Answer {"category_id": "<id>"} using one of:\n'
                                      "- Technology: software and computers\n- Finance: money, banks and markets"},
        user("Title: Quarterly markets report\nBanks raised money."),
    ]
    assert classification_answer(messages) == {"category_id": "Finance"}


def test_classification_without_overlap_answers_empty():
    messages = [user('Pick a category_id.\n- Legal: courts and law\nThe weather is sunny.')]
    assert classification_answer(messages) == {"category_id": ""}


def test_chat_answer_dispatches_on_the_prompt():
    assert "category_id" in chat_answer([user("Return category_id.\n- Science: physics\nphysics lecture")])
    assert "topics" in chat_answer([user(DOCUMENT)])


def test_rerank_by_word_overlap():
    results = rerank_results("cancel scopes", ["limiters", "cancel scopes bound work", "scopes"], top_n=2)
    assert [(r["index"], r["relevance_score"]) for r in results] == [(1, 1.0), (2, 0.5)]
    assert results[0]["document"] == {"text": "cancel scopes bound work"}


def test_embeddings_are_deterministic_and_normalised():
    first = embedding_vectors(["hello", "world"], 24)
    assert first == embedding_vectors(["hello", "world"], 24)
    assert all(len(v) == 24 and math.isclose(sum(x * x for x in v), 1.0) for v in first)
