"""The named replay scenarios (:data:`SCENARIOS`: load, faults, the server's settings) and the
options of one run, with the plan a run against someone's server follows (a scope of its own).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from everos.testing._faults import Fault
from everos.testing._slots import ModelSpeed

__all__ = ["FAST_LLM", "LOCAL_MODEL_SPEEDUP", "MODEL_ONLY", "REPLAY_APP_ID", "SCENARIOS", "ReplayOptions", "Scenario",
           "describe_plan", "drain_timeout_s", "plan_for_url"]


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One named load-and-fault script. ``count`` and sizes scale with ``ReplayOptions.scale``."""

    name: str
    description: str
    count: int
    size_bytes: int
    concurrency: int = 1
    languages: tuple[str, ...] = ("en",)
    use_llm: bool = False
    use_embedding_endpoint: bool = False
    faults: Callable[[], list[Fault]] = list
    recover_after_s: float | None = None
    open_files_limit: int | None = None
    kill_restart: bool = False
    respond_async: bool = False
    upload_interval_s: float = 0.0
    model_speed: ModelSpeed | None = None  # the fake as slow as a local model server (slots, rates)
    drain_timeout_s: float | None = None  # at least this long for the drain (a slow model's backlog)
    expect_dead: bool = False
    vectors_stay_pending: bool = False  # the embedder never recovers: the drain does not wait for vectors
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)


# The model only: a stalled or slow model fails the job, to show dead jobs carry their error.
MODEL_ONLY = {"llm__fallback": "none"}


# Small timeouts so a scenario shows its behaviour in seconds, not minutes.
FAST_LLM = {"llm__timeout_seconds": 1.0, "llm__call_deadline_seconds": 4.0, "llm__max_retries": 2,
            "llm__retry_backoff_base_seconds": 0.1, "llm__retry_backoff_max_seconds": 1.0,
            "llm__circuit_cooldown_seconds": 1.0, "ingest__job_timeout_seconds": 10.0,
            "ingest__max_attempts": 3, "ingest__retry_backoff_seconds": 0.5, "ingest__lease_seconds": 6.0,
            "knowledge__sync_wait_seconds": 2.0}

# A 9B model on one consumer GPU (ModelSpeed's defaults), 20 times faster.
LOCAL_MODEL_SPEEDUP = 20.0
LOCAL_MODEL_20X = ModelSpeed(slots=1, prefill_tokens_per_second=1500.0 * LOCAL_MODEL_SPEEDUP,
                             decode_tokens_per_second=40.0 * LOCAL_MODEL_SPEEDUP,
                             embed_tokens_per_second=20000.0 * LOCAL_MODEL_SPEEDUP)

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("seed-316", "20 x 80 KB markdown back-to-back; the LLM closes connections for a while, then recovers",
             count=20, size_bytes=80_000, use_llm=True, settings=FAST_LLM,
             faults=lambda: [Fault.close(at="mid_request", route="chat")], recover_after_s=4.0),
    # A document costs one chat call (its extraction, category included; facts from the splitter),
    # so "after 3 requests" leaves most documents of even a scaled-down run to the fault.
    Scenario("llm-stall", "the LLM stops answering forever after 3 requests ([llm] fallback = none)",
             count=10, size_bytes=4_000, use_llm=True, settings={**FAST_LLM, **MODEL_ONLY}, expect_dead=True,
             faults=lambda: [Fault.stall(route="chat", requests=range(4, 10_000))]),
    Scenario("llm-down", "20 x 80 KB; the LLM closes every connection after 3 requests: built-in topic trees",
             count=20, size_bytes=80_000, use_llm=True, settings=FAST_LLM,
             faults=lambda: [Fault.close(route="chat", requests=range(4, 10_000))]),
    Scenario("llm-flaky", "30 % of LLM calls fail with 500 or 429 + Retry-After",
             count=12, size_bytes=4_000, use_llm=True, settings=FAST_LLM,
             faults=lambda: [Fault.status(500, route="chat", probability=0.15),
                             Fault.status(429, retry_after=0.2, route="chat", probability=0.15)]),
    Scenario("llm-slow", "every LLM call takes longer than the attempt timeout ([llm] fallback = none)",
             count=4, size_bytes=4_000, use_llm=True, settings={**FAST_LLM, **MODEL_ONLY}, expect_dead=True,
             faults=lambda: [Fault.latency(3.0, route="chat")]),
    Scenario("burst", "50 uploads at concurrency 16 with the built-in extractor",
             count=50, size_bytes=6_000, concurrency=16, languages=("en", "zh"),
             settings={"knowledge__dedupe": "none"}),
    # The endpoint never comes back within the run, so the re-embed pass (proved in
    # tests/cascade/test_degrade.py) is kept out of it: its probes would only hold a row each.
    Scenario("embed-stall", "20 x 80 KB; every embedding request from the 7th on is accepted and never answered",
             count=20, size_bytes=80_000, use_embedding_endpoint=True, vectors_stay_pending=True,
             settings={"embedding__timeout_seconds": 1.0, "embedding__call_deadline_seconds": 3.0,
                       "embedding__retry_backoff_base_seconds": 0.1, "embedding__circuit_cooldown_seconds": 5.0,
                       "cascade__embed_timeout_seconds": 5.0, "cascade__reembed_interval_seconds": 3600.0,
                       "cascade__retry_backoff_seconds": 0.5},
             faults=lambda: [Fault.stall(route="embeddings", requests=range(7, 10_000))]),
    Scenario("fd-256", "seed-316 with the server under an open-file limit of 256",
             count=20, size_bytes=80_000, use_llm=True, settings=FAST_LLM, open_files_limit=256,
             faults=lambda: [Fault.close(at="mid_request", route="chat")], recover_after_s=4.0),
    # The seed workload against a model that behaves like llama-server with one slot (a 9B model's
    # 1,500 prefill and 40 decode tokens/s, run 20 times faster so a run takes minutes): the model
    # is the bottleneck, and everos must keep it busy and add little on top.
    Scenario("local-llm", "20 x 80 KB, one upload a second (202), against a one-slot model at 20x a 9B model's speed",
             count=20, size_bytes=80_000, use_llm=True, use_embedding_endpoint=True, respond_async=True,
             upload_interval_s=1.0, model_speed=LOCAL_MODEL_20X, drain_timeout_s=1800.0,
             settings={"llm__slots": 1, "embedding__slots": 1}),
    Scenario("kill-restart", "SIGKILL the server mid-ingest, restart, drain: every acknowledged document once",
             count=30, size_bytes=20_000, kill_restart=True, respond_async=True, settings={"ingest__workers": 1}),
)}


@dataclasses.dataclass
class ReplayOptions:
    scale: float = 1.0
    url: str | None = None
    root: Path | None = None
    health_interval_s: float = 0.25
    health_timeout_s: float = 1.0
    upload_timeout_s: float = 40.0
    drain_timeout_s: float = 120.0
    # After the keyword drain, how long to wait for vectors (fewer documents waiting at least every
    # vectors_stall_s, else a breach); any still coming after it are reported, not a breach.
    vectors_timeout_s: float = 600.0
    vectors_stall_s: float = 300.0
    rounds: int = 1
    seed: int = 316
    allow_writes: bool = False  # with url: the target may be written to (a scope of its own, deleted after)
    keep_root: bool = False  # keep a root the harness made, even when the run held
    app_id: str = "default"
    project_id: str = "default"
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)  # section__key: value, over the scenario's

    def scope(self) -> dict[str, str]:
        return {"app_id": self.app_id, "project_id": self.project_id}


REPLAY_APP_ID = "everos-replay"


def plan_for_url(name: str, options: ReplayOptions) -> ReplayOptions:
    """The options that drive a server at ``options.url``: a scope of the run's own.

    Raises:
        ValueError: ``allow_writes`` is not set, or the scenario needs a server of its own.
    """
    scenario = SCENARIOS[name]
    if scenario.faults() or scenario.kill_restart or scenario.open_files_limit:
        raise ValueError(f"scenario {name} scripts the LLM or the server; run it without --url")
    if not options.allow_writes:
        raise ValueError(f"scenario {name} uploads {max(2, round(scenario.count * options.scale))} synthetic "
                         f"documents to {options.url}; pass --allow-writes to let it (they go into app_id "
                         f"{REPLAY_APP_ID!r} and are deleted at the end), or run it without --url")
    project = f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    return dataclasses.replace(options, app_id=REPLAY_APP_ID, project_id=project)


def describe_plan(name: str, options: ReplayOptions) -> str:
    """One line saying what a run will do, for the person who started it."""
    scenario = SCENARIOS[name]
    count = max(2, round(scenario.count * options.scale)) * options.rounds
    if options.url:
        return (f"replay {name}: uploading {count} synthetic documents to {options.url} into app_id "
                f"{options.app_id!r}, project_id {options.project_id!r}; they are deleted at the end")
    where = options.root or "a new temporary root (removed afterwards unless a guarantee broke)"
    return f"replay {name}: starting a server on {where} and uploading {count} synthetic documents"


def drain_timeout_s(scenario: Scenario, options: ReplayOptions) -> float:
    """How long the drain may take: the run's option, or longer where the scenario needs it."""
    return max(options.drain_timeout_s, scenario.drain_timeout_s or 0.0)
