"""The fuzz targets under hypothesis, in CI: the same one-input checks the atheris entry points
run (``fuzz/targets/``), fed by structured strategies (``fuzz/strategies.py``) and the corpus.

Deterministic and bounded: ``derandomize=True``, no example database, a fixed number of examples
per target (all of them together run in about 25-28 s on one core). A failure prints the
smallest input hypothesis found; turn it into a regression test next to the code it breaks (see
``fuzz/README.md``). ``EVEROS_FUZZ_SCALE=N`` runs N times the examples, random ones.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from everos.knowledge._llm_batches import split_paragraphs
from fuzz import strategies as fs
from fuzz.targets import answers, config, markdown, requests, upload

CORPUS = Path(__file__).parent / "corpus"


# EVEROS_FUZZ_SCALE=20 runs 20 times the examples, random ones (a longer local search); 1, the
# default, is CI's run: the same examples every time.
SCALE = float(os.environ.get("EVEROS_FUZZ_SCALE", "1"))


def ci(max_examples: int) -> settings:
    """Settings for a CI run: the same examples every time, no deadline (a slow machine is not a
    failure), no database left behind."""
    return settings(max_examples=max(1, round(max_examples * SCALE)), derandomize=SCALE == 1, database=None,
                    deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much], print_blob=True)


def corpus(target: str) -> list[bytes]:
    return [path.read_bytes() for path in sorted((CORPUS / target).iterdir()) if path.is_file()]


# -- uploads ----------------------------------------------------------------------------------------


@ci(150)
@given(fs.multipart_requests())
def test_upload_refuses_before_any_write(request: upload.UploadRequest) -> None:
    upload.check_upload(request)


@pytest.mark.parametrize("data", corpus("upload"))
def test_upload_corpus(data: bytes) -> None:
    upload.check_upload(upload.upload_request_from_bytes(data))


# -- markdown ---------------------------------------------------------------------------------------


@ci(300)
@given(fs.markdown_texts())
def test_markdown_readers_and_extractor_keep_their_contract(text: str) -> None:
    markdown.check_markdown(text)


@ci(100)
@given(st.text(max_size=400))
def test_markdown_of_any_text(text: str) -> None:
    markdown.check_markdown(text)


@pytest.mark.parametrize("data", corpus("markdown"))
def test_markdown_corpus(data: bytes) -> None:
    markdown.check_markdown(data.decode("utf-8", "replace"))


# -- model answers ----------------------------------------------------------------------------------


@ci(400)
@given(fs.answer_bodies(), st.integers(1, 3), st.integers(1, 4), st.integers(1, 5))
def test_answer_bodies_raise_only_answer_errors(raw: bytes, count: int, dim: int, documents: int) -> None:
    answers.check_answer_body(raw, expected_count=count, dim=dim, document_count=documents)


@ci(200)
@given(fs.stream_bodies(), st.integers(1, 16))
def test_streamed_answers_raise_only_provider_errors(raw: bytes, chunk_size: int) -> None:
    answers.check_stream_body(raw, chunk_size)


@ci(300)
@given(fs.model_texts(), st.integers(0, 1), st.integers(1, 3), st.integers(0, 3))
def test_topic_answers_keep_every_paragraph_once(text: str, first: int, depth: int, facts: int) -> None:
    paragraphs = split_paragraphs(answers.FUZZ_DOCUMENT)
    answers.check_topic_answer(text, paragraphs, first=first, max_depth=depth, max_facts=facts)


@ci(200)
@given(fs.facts_answers(), st.integers(1, 5), st.integers(1, 8))
def test_facts_answers_are_bounded(answer: object, passages: int, max_facts: int) -> None:
    answers.check_facts_answer(answer, passages=passages, max_facts=max_facts)


@ci(60)
@given(st.lists(fs.model_texts(), min_size=1, max_size=3), st.integers(0, 2),
       st.sampled_from([None, "Technology"]))
def test_llm_extraction_falls_back_or_uses_the_answer(texts: list[str], facts: int, category: str | None) -> None:
    answers.check_llm_extraction(texts, facts_per_topic=facts, category_id=category)


@pytest.mark.parametrize("data", corpus("answers"))
def test_answers_corpus(data: bytes) -> None:
    answers.check_answer_bytes(data)


# -- requests ---------------------------------------------------------------------------------------


@ci(400)
@given(fs.search_bodies(), st.integers(1, 100))
def test_search_requests_refuse_with_invalid_input(body: dict, cap: int) -> None:
    requests.check_search(body, top_k_cap=cap)


@ci(300)
@given(st.sampled_from(requests.BODY_MODELS), fs.request_bodies())
def test_request_bodies_refuse_with_invalid_input(model: type, body: dict) -> None:
    requests.check_body(model, body)


@ci(200)
@given(st.sampled_from(requests.QUERY_MODELS), fs.query_args())
def test_query_strings_refuse_with_invalid_input(model: type, args: dict) -> None:
    requests.check_query(model, args)


@ci(200)
@given(fs.PATH_IDS)
def test_path_ids_refuse_with_invalid_input(text: str) -> None:
    requests.check_path_id(text)


@pytest.mark.parametrize("data", corpus("requests"))
def test_requests_corpus(data: bytes) -> None:
    requests.check_request_bytes(data)


# -- configuration ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("config")


@ci(200)
@given(st.one_of(st.none(), fs.config_toml()), fs.config_environ())
def test_config_refuses_with_config_error(config_root: Path, toml: bytes | None, environ: dict) -> None:
    config.check_config(config_root, toml, environ)


@pytest.mark.parametrize("data", corpus("config"))
def test_config_corpus(config_root: Path, data: bytes) -> None:
    config.check_config(config_root, *config.config_input_from_bytes(data))
