"""Reading OpenAI-compatible answers: JSON in model text, embeddings, rerank shapes."""

import math

import pytest

from everos.providers import (
    AnswerError,
    DimensionMismatch,
    chat_content,
    fit_dimension,
    parse_embeddings,
    parse_json_object,
    parse_rerank,
)


def chat(content):
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}


def test_chat_content_reads_the_first_choice():
    assert chat_content(chat('{"a": 1}')) == '{"a": 1}'


def test_chat_content_joins_content_parts():
    answer = {"choices": [{"message": {"content": [{"type": "text", "text": '{"a"'}, {"text": ": 1}"}]}}]}
    assert chat_content(answer) == '{"a": 1}'


@pytest.mark.parametrize("answer", [{}, {"choices": []}, chat(None), chat("   "), "nope"])
def test_chat_content_refuses_answers_without_text(answer):
    with pytest.raises(AnswerError):
        chat_content(answer)


def test_chat_content_skips_content_parts_whose_text_is_not_text():
    """Found by fuzz/ (answers target): a part ``{"text": 5}`` raised TypeError, not AnswerError."""
    answer = {"choices": [{"message": {"content": [{"text": 5}, {"text": '{"a": 1}'}, {"text": None}]}}]}
    assert chat_content(answer) == '{"a": 1}'
    with pytest.raises(AnswerError):
        chat_content({"choices": [{"message": {"content": [{"text": 5}]}}]})


@pytest.mark.parametrize(
    "text",
    [
        '{"topics": [], "n": 1}',
        'Sure! Here it is:\n```json\n{"topics": [], "n": 1}\n```\nAnything else?',
        '```\n{"topics": [], "n": 1}\n```',
        '<think>maybe {"n": 2}?</think>{"topics": [], "n": 1}',
        'The answer is {"topics": [], "n": 1} as asked.',
        '[1, 2] then {not json} then {"topics": [], "n": 1}',
    ],
)
def test_parse_json_object_finds_the_first_object(text):
    assert parse_json_object(text) == {"topics": [], "n": 1}


def test_parse_json_object_reports_the_text_when_there_is_none():
    with pytest.raises(AnswerError) as caught:
        parse_json_object('{"topics": [ truncated')
    assert caught.value.content == '{"topics": [ truncated'


def test_parse_json_object_reads_past_json_nested_too_deep():
    """Found by fuzz/ (answers target): JSON nested past the decoder's depth raised RecursionError,
    which no caller takes as a malformed answer (the LLM extractor then failed the job instead of
    asking for a repair)."""
    deep = '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(AnswerError):
        parse_json_object(deep)
    assert parse_json_object(deep + ' {"topics": []}') == {"topics": []}


def test_fit_dimension_cuts_and_renormalises_longer_vectors():
    fitted = fit_dimension([3.0, 4.0, 12.0], 2)
    assert fitted == pytest.approx([0.6, 0.8])
    assert math.isclose(sum(x * x for x in fitted), 1.0)


def test_fit_dimension_keeps_vectors_of_the_right_width():
    assert fit_dimension([1, 0], 2) == [1.0, 0.0]


def test_fit_dimension_refuses_narrower_vectors_clearly():
    with pytest.raises(DimensionMismatch, match="returns 2-dimensional vectors but \\[embedding\\] dim = 4"):
        fit_dimension([1.0, 0.0], 4)


def test_parse_embeddings_orders_by_index():
    answer = {"data": [{"index": 1, "embedding": [0.0, 1.0]}, {"index": 0, "embedding": [1.0, 0.0]}]}
    assert parse_embeddings(answer, expected_count=2, dim=2) == [[1.0, 0.0], [0.0, 1.0]]


@pytest.mark.parametrize(
    "answer",
    [
        {},
        {"data": [{"index": 0, "embedding": [1.0, 0.0]}]},  # one vector for two inputs
        {"data": [{"index": 0, "embedding": [1.0, 0.0]}, {"index": 0, "embedding": [0.0, 1.0]}]},
        {"data": [{"index": 0, "embedding": [1.0, 0.0]}, {"index": 5, "embedding": [0.0, 1.0]}]},
        {"data": [{"index": 0, "embedding": [1.0, "x"]}, {"index": 1, "embedding": [0.0, 1.0]}]},
        {"data": [{"index": 0}, {"index": 1, "embedding": [0.0, 1.0]}]},
    ],
)
def test_parse_embeddings_refuses_malformed_answers(answer):
    with pytest.raises(AnswerError):
        parse_embeddings(answer, expected_count=2, dim=2)


@pytest.mark.parametrize(
    "answer",
    [
        # vLLM / Jina: results with the document echoed
        {"results": [{"index": 0, "relevance_score": 0.1, "document": {"text": "a"}},
                     {"index": 1, "relevance_score": 0.9, "document": {"text": "b"}}]},
        # Cohere v1/v2
        {"id": "x", "results": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.1}]},
        # under "data"
        {"data": [{"index": 0, "relevance_score": 0.1}, {"index": 1, "relevance_score": 0.9}]},
        # TEI: a bare list with "score"
        [{"index": 0, "score": 0.1}, {"index": 1, "score": 0.9}],
    ],
)
def test_parse_rerank_accepts_common_shapes(answer):
    assert parse_rerank(answer, document_count=2) == [(1, 0.9), (0, 0.1)]


def test_parse_rerank_breaks_ties_by_index():
    answer = {"results": [{"index": 1, "relevance_score": 0.5}, {"index": 0, "relevance_score": 0.5}]}
    assert parse_rerank(answer, document_count=2) == [(0, 0.5), (1, 0.5)]


@pytest.mark.parametrize(
    "answer",
    [
        {"results": "no"},
        {"results": [{"index": 2, "relevance_score": 0.5}]},
        {"results": [{"index": 0, "relevance_score": 0.5}, {"index": 0, "relevance_score": 0.4}]},
        {"results": [{"index": 0}]},
        {"results": [{"index": 0, "relevance_score": float("nan")}]},
        {"results": [{"index": True, "relevance_score": 0.5}]},
    ],
)
def test_parse_rerank_refuses_malformed_answers(answer):
    with pytest.raises(AnswerError):
        parse_rerank(answer, document_count=2)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), pytest.param(10**400, id="10**400")])
def test_parse_embeddings_refuses_values_that_are_not_finite_numbers(value):
    """Found by fuzz/ (answers target): an integer too large for a float raised OverflowError, and
    NaN or an infinity (which Python's JSON reads) went into the index as a vector."""
    with pytest.raises(AnswerError, match="finite"):
        parse_embeddings({"data": [{"embedding": [0.5, value]}]}, expected_count=1, dim=2)


def test_parse_embeddings_refuses_a_boolean_index():
    with pytest.raises(AnswerError, match="index True"):
        parse_embeddings({"data": [{"embedding": [1.0], "index": 1}, {"embedding": [1.0], "index": True}]},
                         expected_count=2, dim=1)
