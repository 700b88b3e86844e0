"""The hang-replay scenarios against the real server over loopback, scaled down for CI (G1, G2, G6, G7, G9)."""

from __future__ import annotations

import pytest

from everos.testing.replay import SCENARIOS, ReplayOptions, make_corpus, run_scenario

pytestmark = pytest.mark.slow


def test_corpus_is_deterministic_distinct_and_sized() -> None:
    corpus = make_corpus(6, 2_000, ("en", "zh"), seed=1)
    assert corpus == make_corpus(6, 2_000, ("en", "zh"), seed=1)
    assert len({body for _, body in corpus}) == 6
    assert all(len(body) >= 2_000 for _, body in corpus)
    assert "太" in corpus[1][1].decode() or "风" in corpus[1][1].decode()


def check(report: dict) -> dict:
    assert report["breaches"] == [], report
    assert report["health"]["failures"] == 0
    assert report["server_exit_code"] == 0
    return report


@pytest.mark.parametrize("name", ["seed-316", "llm-flaky", "burst", "fd-256"])
async def test_scenario_recovers_with_every_document_listed(name: str) -> None:
    report = check(await run_scenario(name, ReplayOptions(scale=0.3)))
    end = report["end"]
    assert end["documents_dead"] == 0 and not end["documents_missing"]
    assert end["documents_listed"] == end["documents_indexed"] == report["documents"]


async def test_embed_stall_answers_uploads_and_indexing_resumes_by_itself() -> None:
    report = check(await run_scenario("embed-stall", ReplayOptions(scale=0.5)))
    assert report["uploads"]["unanswered"] == 0 and report["uploads"]["failed"] == 0
    assert report["end"]["documents_listed"] == report["documents"]
    assert report["end"]["documents_indexed"] == report["documents"]  # after the endpoint came back


@pytest.mark.parametrize("name", ["llm-stall", "llm-slow"])
async def test_dead_model_gives_answers_and_visible_failures_never_silence(name: str) -> None:
    # llm-stall stalls from the 7th model call on: enough documents to get past it.
    report = check(await run_scenario(name, ReplayOptions(scale=0.6 if name == "llm-stall" else 0.3)))
    assert report["uploads"]["unanswered"] == 0
    assert report["end"]["documents_dead"] >= 1  # the model never answered them: dead, with an error


async def test_kill_restart_keeps_every_acknowledged_document_once() -> None:
    report = check(await run_scenario("kill-restart", ReplayOptions(scale=0.5)))
    assert report["uploads"]["accepted"] == report["documents"]
    assert report["end"]["documents_listed"] == report["documents"]
    assert report["end"]["jobs_running_after_drain"] == 0


async def test_burst_five_times_keeps_memory_and_threads_flat() -> None:
    report = check(await run_scenario("burst", ReplayOptions(scale=0.4, rounds=5)))
    rounds = report["server_resources_per_round"]
    assert len(rounds) == 5
    # Rounds 1-2 warm the pools (trio's thread cache, the thread limiters, LanceDB's runtime);
    # threads level off in the mid-40s (10 rounds measured: 33, 45, 45, ... 46) and memory grows
    # only with the index.
    warm, last = rounds[1], rounds[-1]
    assert last["threads"] <= warm["threads"] + 10, rounds
    assert last["open_files"] <= warm["open_files"] + 16, rounds
    assert last["rss_kib"] <= warm["rss_kib"] * 1.3, rounds


def test_every_scenario_named_in_the_issue_exists() -> None:
    assert set(SCENARIOS) == {"seed-316", "llm-stall", "llm-flaky", "llm-slow", "burst", "embed-stall",
                              "fd-256", "kill-restart"}
