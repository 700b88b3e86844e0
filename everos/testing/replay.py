"""The hang-replay harness: drive a server through a named scenario while probing ``/health``.

Each scenario generates a corpus, uploads it (sequentially or at a set concurrency) while a
separate probe hits ``/health`` every 0.25 s with a 1 s timeout, optionally scripts the fake LLM
(:class:`~everos.testing.FakeLLM`), waits for the queues to drain, and checks what is listed at the
end. The report is plain JSON; ``breaches`` lists every guarantee that broke:

- ``G2``: a health probe failed or took longer than ``health_timeout_s``;
- ``G1``: an upload got no answer within its deadline;
- ``G6``: an acknowledged document is neither listed nor visibly failed (dead, with its error),
  or is not found by a keyword search for a word only it holds by the end of the run;
- ``G7``: a job is still ``running`` after the drain, a dead job has no error, a document is
  still ``pending`` indexing, or index rows are still queued or running after the drain.

While it runs, a search watch looks each acknowledged document up by its word (keyword search)
until it is found, and the report gives how long after its acknowledgement that took
(``search.searchable_after_ms``; with ``--rounds`` it looks only once, after the drain, so the
per-round resource samples measure ingest alone). The end check reads every acknowledged document and counts
its ``index_status``, the ones searchable by keyword only (vectors pending) and which extractor
made it (``llm``, ``builtin``, ``builtin (llm fallback)``).

By default the harness starts the server itself (a subprocess on a loopback port with a fresh
root, the scenario's settings, an open-file limit where the scenario asks for one) and the fake
LLM in-process; a root it made itself is removed afterwards unless the run broke a guarantee (or
``keep_root``). With ``url`` it drives a server you run; scenarios that script the LLM or kill the
server need their own server and refuse ``url``. Driving your server writes synthetic documents
into it, so it is refused unless ``allow_writes`` says so; the documents then go into a scope of
their own (``app_id = "everos-replay"``, a fresh ``project_id``) and are deleted at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import trio

from everos.config import render_template
from everos.testing._fake_llm import FakeLLM
from everos.testing._faults import Fault

__all__ = ["SCENARIOS", "ReplayOptions", "Scenario", "SearchWatch", "corpus_word", "make_corpus", "run_scenario"]

API = "/api/v1/knowledge"

WORDS_EN = ("solar wind river engine budget court lesson market signal garden protein orbit harbor "
            "ledger theory canvas glacier voltage harvest treaty archive sensor").split()
WORDS_ZH = "太阳 风能 河流 引擎 预算 法院 课程 市场 信号 花园 蛋白 轨道 港口 账本 理论 画布 冰川 电压 收获 条约".split()


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
    expect_dead: bool = False
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)


# The model only: a stalled or slow model fails the job, to show dead jobs carry their error.
MODEL_ONLY = {"llm__fallback": "none"}


# Small timeouts so a scenario shows its behaviour in seconds, not minutes.
FAST_LLM = {"llm__timeout_seconds": 1.0, "llm__call_deadline_seconds": 4.0, "llm__max_retries": 2,
            "llm__retry_backoff_base_seconds": 0.1, "llm__retry_backoff_max_seconds": 1.0,
            "llm__circuit_cooldown_seconds": 1.0, "ingest__job_timeout_seconds": 10.0,
            "ingest__max_attempts": 3, "ingest__retry_backoff_seconds": 0.5, "ingest__lease_seconds": 6.0,
            "knowledge__sync_wait_seconds": 2.0}

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("seed-316", "20 x 80 KB markdown back-to-back; the LLM closes connections for a while, then recovers",
             count=20, size_bytes=80_000, use_llm=True, settings=FAST_LLM,
             faults=lambda: [Fault.close(at="mid_request", route="chat")], recover_after_s=4.0),
    Scenario("llm-stall", "the LLM stops answering forever after 6 requests ([llm] fallback = none)",
             count=10, size_bytes=4_000, use_llm=True, settings={**FAST_LLM, **MODEL_ONLY}, expect_dead=True,
             faults=lambda: [Fault.stall(route="chat", requests=range(7, 10_000))]),
    Scenario("llm-down", "20 x 80 KB; the LLM closes every connection after 6 requests: built-in topic trees",
             count=20, size_bytes=80_000, use_llm=True, settings=FAST_LLM,
             faults=lambda: [Fault.close(route="chat", requests=range(7, 10_000))]),
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
             count=20, size_bytes=80_000, use_embedding_endpoint=True,
             settings={"embedding__timeout_seconds": 1.0, "embedding__call_deadline_seconds": 3.0,
                       "embedding__retry_backoff_base_seconds": 0.1, "embedding__circuit_cooldown_seconds": 5.0,
                       "cascade__embed_timeout_seconds": 5.0, "cascade__reembed_interval_seconds": 3600.0,
                       "cascade__retry_backoff_seconds": 0.5},
             faults=lambda: [Fault.stall(route="embeddings", requests=range(7, 10_000))]),
    Scenario("fd-256", "seed-316 with the server under an open-file limit of 256",
             count=20, size_bytes=80_000, use_llm=True, settings=FAST_LLM, open_files_limit=256,
             faults=lambda: [Fault.close(at="mid_request", route="chat")], recover_after_s=4.0),
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
    rounds: int = 1
    seed: int = 316
    allow_writes: bool = False  # with url: the target may be written to (a scope of its own, deleted after)
    keep_root: bool = False  # keep a root the harness made, even when the run held
    app_id: str = "default"
    project_id: str = "default"

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    return {"p50": round(statistics.median(ordered) * 1000, 1), "p95": pick(0.95), "p99": pick(0.99),
            "max": round(ordered[-1] * 1000, 1)}


class HealthProbe:
    """Hits /health every ``interval_s``; a probe fails when it errors or exceeds ``timeout_s``."""

    def __init__(self, url: str, interval_s: float, timeout_s: float) -> None:
        self.url, self.interval_s, self.timeout_s = url, interval_s, timeout_s
        self.latencies: list[float] = []
        self.failures = 0
        self.longest_outage_s = 0.0
        self.paused = False

    async def run(self) -> None:
        outage_started: float | None = None
        async with httpx.AsyncClient(base_url=self.url, timeout=self.timeout_s) as client:
            while True:
                if not self.paused:
                    started = time.monotonic()
                    try:
                        response = await client.get("/health")
                        ok = response.status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    elapsed = time.monotonic() - started
                    if ok and elapsed <= self.timeout_s:
                        self.latencies.append(elapsed)
                        if outage_started is not None:
                            self.longest_outage_s = max(self.longest_outage_s, started - outage_started)
                            outage_started = None
                    else:
                        self.failures += 1
                        outage_started = outage_started or started
                await trio.sleep(self.interval_s)

    def report(self) -> dict[str, Any]:
        return {"probes": len(self.latencies) + self.failures, "failures": self.failures,
                "latency_ms": _percentiles(self.latencies), "longest_outage_s": round(self.longest_outage_s, 2)}


class SearchWatch:
    """Looks each acknowledged document up by its corpus word (keyword search, in the run's
    scope) every ``interval_s`` until it is found, and keeps how long after its acknowledgement
    that was."""

    def __init__(self, url: str, scope: dict[str, str], interval_s: float = 0.5) -> None:
        self.url, self.scope, self.interval_s = url, scope, interval_s
        self.acknowledged: dict[str, tuple[str, float]] = {}  # doc_id -> (word, when acknowledged)
        self.found_after_s: dict[str, float] = {}

    def add(self, doc_id: str, word: str) -> None:
        self.acknowledged.setdefault(doc_id, (word, time.monotonic()))

    async def run(self) -> None:
        while True:
            await self.check()
            await trio.sleep(self.interval_s)

    async def check(self) -> None:
        """One look-up of every document not found yet (errors are a miss, tried again later)."""
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
            for doc_id, (word, acknowledged_at) in list(self.acknowledged.items()):
                if doc_id in self.found_after_s:
                    continue
                with contextlib.suppress(httpx.HTTPError, KeyError, TypeError, ValueError):
                    response = await client.post(f"{API}/search", json={
                        "query": word, "method": "keyword", "top_k": 5, **self.scope})
                    hits = response.json()["data"]["hits"]
                    if any((hit.get("document") or {}).get("doc_id") == doc_id for hit in hits):
                        self.found_after_s[doc_id] = time.monotonic() - acknowledged_at

    def missing(self) -> list[str]:
        return sorted(set(self.acknowledged) - set(self.found_after_s))

    def report(self) -> dict[str, Any]:
        return {"searchable": len(self.found_after_s), "not_searchable": len(self.missing()),
                "searchable_after_ms": _percentiles(list(self.found_after_s.values()))}


# Threads that LanceDB's native runtime starts and stops by itself (tokio's blocking pool grows
# with concurrent file I/O and lets idle threads go after 10 s; Arrow's CPU pool; jemalloc's).
NATIVE_THREADS = ("lancedb-tokio", "lance-", "jemalloc")


class ManagedServer:
    """An ``everos server start`` subprocess on a fresh root, restartable, killable."""

    def __init__(self, root: Path, env: dict[str, str], open_files_limit: int | None) -> None:
        self.root, self.env, self.open_files_limit = root, env, open_files_limit
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: trio.Process | None = None

    def _limit(self) -> None:
        if self.open_files_limit:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files_limit, self.open_files_limit))

    async def start(self) -> None:
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - handed to the child
        self.process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "everos.cli", "server", "start", "--root", str(self.root), "--port", str(self.port)],
            env=self.env, stdout=log, stderr=log, preexec_fn=self._limit)
        log.close()
        async with httpx.AsyncClient(base_url=self.url, timeout=1) as client:
            with trio.fail_after(30):
                while True:
                    if self.process.poll() is not None:
                        raise RuntimeError(f"the server exited at startup; see {self.root / 'server.log'}")
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get("/readyz")).status_code == 200:
                            return
                    await trio.sleep(0.1)

    def resources(self) -> dict[str, Any]:
        """Resident memory, threads and open files of the server process, from /proc."""
        if self.process is None or self.process.poll() is not None:
            return {}
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        native = 0
        for task in os.listdir(f"/proc/{self.process.pid}/task"):
            with contextlib.suppress(OSError):  # a thread that just exited
                native += Path(f"/proc/{self.process.pid}/task/{task}/comm").read_text().startswith(NATIVE_THREADS)
        return {"rss_kib": int(fields["VmRSS"].split()[0]), "threads": int(fields["Threads"]),
                "native_threads": native, "open_files": len(os.listdir(f"/proc/{self.process.pid}/fd"))}

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        with trio.move_on_after(20):
            return await self.process.wait()
        self.process.kill()
        return await self.process.wait()


def _server_env(scenario: Scenario, fake: FakeLLM | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVEROS_")}
    settings = dict(scenario.settings)
    if fake is not None and scenario.use_llm:
        settings.update({"llm__provider": "openai", "llm__base_url": fake.base_url, "llm__model": "fake"})
    if fake is not None and scenario.use_embedding_endpoint:
        settings.update({"embedding__provider": "openai", "embedding__base_url": fake.base_url,
                         "embedding__model": "fake"})
    for name, value in settings.items():
        section, key = name.split("__", 1)
        env[f"EVEROS_{section.upper()}__{key.upper()}"] = str(value)
    return env


async def _upload_all(url: str, corpus: list[tuple[str, bytes]], concurrency: int, timeout_s: float,
                      on_progress: Callable[[int], Any] | None = None, respond_async: bool = False,
                      scope: dict[str, str] | None = None,
                      on_acknowledged: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    results: dict[str, Any] = {"ok": 0, "accepted": 0, "failed": 0, "unanswered": 0, "latencies": [],
                               "acknowledged": [], "statuses": {}}
    limiter = trio.Semaphore(concurrency)

    async def one(client: httpx.AsyncClient, index: int, title: str, body: bytes) -> None:
        async with limiter:
            started = time.monotonic()
            try:
                response = await client.post(f"{API}/documents", files={"file": ("doc.md", body)},
                                             data={"title": title, **(scope or {})},
                                             headers={"Prefer": "respond-async"} if respond_async else {})
            except httpx.HTTPError:
                results["unanswered"] += 1
                return
            results["latencies"].append(time.monotonic() - started)
            results["statuses"][str(response.status_code)] = results["statuses"].get(str(response.status_code), 0) + 1
            if response.status_code in (200, 201, 202):
                results["ok" if response.status_code != 202 else "accepted"] += 1
                doc_id = response.json()["data"]["doc_id"]
                results["acknowledged"].append(doc_id)
                if on_acknowledged is not None:
                    on_acknowledged(doc_id, index)
            else:
                results["failed"] += 1
            if on_progress is not None:
                await on_progress(len(results["acknowledged"]))

    async with httpx.AsyncClient(base_url=url, timeout=timeout_s,
                                 limits=httpx.Limits(max_connections=max(10, concurrency))) as client:
        async with trio.open_nursery() as nursery:
            for index, (title, body) in enumerate(corpus):
                nursery.start_soon(one, client, index, title, body)
    return results


async def _drain(url: str, timeout_s: float) -> float | None:
    """Seconds until no ingest job, no index row and no document awaiting indexing is left.

    The /health blocks are refreshed in the background about once a second, so "drained" must
    be seen on two probes more than that apart."""
    started = time.monotonic()
    quiet_since: float | None = None
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        with trio.move_on_after(timeout_s):
            while True:
                with contextlib.suppress(httpx.HTTPError, KeyError, TypeError):
                    health = (await client.get("/health")).json()
                    cascade = health.get("cascade") or {}
                    pending = (health["ingest"]["pending"] + cascade.get("pending", 0)
                               + (cascade.get("index_status") or {}).get("pending", 0))
                    now = time.monotonic()
                    if pending:
                        quiet_since = None
                    elif quiet_since is None:
                        quiet_since = now
                    elif now - quiet_since >= 1.5:
                        return round(quiet_since - started, 2)
                await trio.sleep(0.25)
    return None


def _extractor_kind(extractor: str | None) -> str:
    """``llm``, ``builtin``, ``builtin (llm fallback)`` (the reason cut off) or ``unknown``."""
    if not extractor:
        return "unknown"
    return extractor.split(":", 1)[0] + ")" if extractor.startswith("builtin (llm fallback") else extractor


async def _documents_now(client: httpx.AsyncClient, doc_ids: list[str]) -> dict[str, Any]:
    """What ``GET /documents/{id}`` says about each listed acknowledged document: counts per
    ``index_status``, those searchable by keyword only (vectors pending) and per extractor."""
    statuses: dict[str, int] = {}
    extractors: dict[str, int] = {}
    keyword_only = 0
    for doc_id in doc_ids:
        with contextlib.suppress(httpx.HTTPError, KeyError, TypeError, ValueError):
            document = (await client.get(f"{API}/documents/{doc_id}")).json()["data"]
            status = str(document.get("index_status"))
            statuses[status] = statuses.get(status, 0) + 1
            keyword_only += str(document.get("index_error") or "").startswith("vectors pending")
            kind = _extractor_kind(document.get("extractor"))
            extractors[kind] = extractors.get(kind, 0) + 1
    return {"index_status": statuses, "keyword_only": keyword_only, "extractors": extractors}


async def _verify(url: str, acknowledged: list[str], scope: dict[str, str],
                  unsearchable: list[str] = ()) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        cascade = (await client.get("/health")).json().get("cascade") or {}
        listed: list[dict] = []
        page = 1
        while True:
            data = (await client.get(f"{API}/documents",
                                     params={"page": page, "page_size": 100, **scope})).json()["data"]
            listed.extend(data["documents"])
            if page * 100 >= data["total"]:
                break
            page += 1
        running = (await client.get(f"{API}/tasks", params={"status": "running", "page_size": 100})).json()["data"]
        dead = []
        for status in ("dead", "failed"):
            tasks = (await client.get(f"{API}/tasks", params={"status": status, "page_size": 100})).json()["data"]
            dead.extend(tasks["tasks"])
        wanted = set(acknowledged)
        documents = await _documents_now(client, sorted(wanted & {d["doc_id"] for d in listed}))
    # Only this run's documents and tasks: a server you run has its own.
    listed_ids = [d["doc_id"] for d in listed]
    dead = [t for t in dead if t["doc_id"] in wanted]
    running["tasks"] = [t for t in running["tasks"] if t["doc_id"] in wanted]
    dead_ids = {t["doc_id"] for t in dead}
    return {
        "documents_listed": len(listed_ids),
        "documents_indexed": sum(1 for d in listed if d.get("index_status", "indexed") == "indexed"),
        "duplicates_listed": len(listed_ids) - len(set(listed_ids)),
        "documents_dead": len(wanted & dead_ids),
        "dead_without_error": sum(1 for t in dead if not t.get("last_error")),
        "documents_missing": sorted(wanted - set(listed_ids) - dead_ids),
        "documents_not_searchable": sorted(set(unsearchable) - dead_ids),
        "jobs_running_after_drain": len(running["tasks"]),
        "documents_index_pending": documents["index_status"].get("pending", 0),
        "documents_keyword_only": documents["keyword_only"],
        "index_status": documents["index_status"],
        "extractors": documents["extractors"],
        # The whole server's index queue (a server you run may have rows of its own).
        "index_rows_open": sum((cascade.get("depth") or {}).get(state, 0) for state in ("queued", "running")),
    }


def _breaches(report: dict[str, Any], scenario: Scenario, options: ReplayOptions) -> list[str]:
    found = []
    health = report["health"]
    if health["failures"]:
        found.append(f"G2: {health['failures']} health probes failed or took over {options.health_timeout_s:g} s")
    if report["uploads"]["unanswered"] and not scenario.kill_restart:
        found.append(f"G1: {report['uploads']['unanswered']} uploads got no answer within their deadline")
    end = report["end"]
    if end["documents_missing"]:
        found.append(f"G6: {len(end['documents_missing'])} acknowledged documents are missing")
    if end["duplicates_listed"]:
        found.append(f"G6: {end['duplicates_listed']} documents are listed twice")
    if end["documents_not_searchable"]:
        found.append(f"G6: {len(end['documents_not_searchable'])} acknowledged documents (not dead) are not "
                     "found by a keyword search at the end")
    if end["jobs_running_after_drain"] or end["dead_without_error"]:
        found.append("G7: jobs left running after the drain, or dead without an error")
    if end["documents_index_pending"] or end["index_rows_open"]:
        found.append(f"G7: {end['documents_index_pending']} documents still pending indexing and "
                     f"{end['index_rows_open']} index rows queued or running after the drain")
    if report["drain_s"] is None:
        found.append(f"drain: the queues did not drain within {options.drain_timeout_s:g} s")
    if end["documents_dead"] and not scenario.expect_dead:
        found.append(f"{end['documents_dead']} documents died although the scenario recovers")
    return found


async def _delete_documents(url: str, doc_ids: list[str]) -> int:
    """Delete what a run against someone's server uploaded; returns how many deletes succeeded."""
    deleted = 0
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for doc_id in dict.fromkeys(doc_ids):
            with contextlib.suppress(httpx.HTTPError):
                deleted += (await client.delete(f"{API}/documents/{doc_id}")).status_code in (200, 204)
    return deleted


async def run_scenario(name: str, options: ReplayOptions | None = None) -> dict[str, Any]:
    """Run scenario ``name`` and return its report (``report["breaches"]`` empty when it held).

    Raises:
        ValueError: ``options.url`` without ``allow_writes``, or with a scenario that needs its
            own server.
    """
    options = options or ReplayOptions()
    scenario = SCENARIOS[name]
    if options.url and options.app_id == "default":
        options = plan_for_url(name, options)
    made_root: Path | None = None
    count = max(2, round(scenario.count * options.scale))
    corpus = make_corpus(count, max(500, round(scenario.size_bytes * options.scale)), scenario.languages,
                         options.seed)
    report: dict[str, Any] = {"scenario": name, "description": scenario.description, "documents": count,
                              "concurrency": scenario.concurrency}
    async with trio.open_nursery() as nursery:
        fake = None
        if not options.url and (scenario.use_llm or scenario.use_embedding_endpoint):
            fake = FakeLLM(scenario.faults(), seed=options.seed)
            await nursery.start(fake.serve, "127.0.0.1", 0)
        server = None
        if options.url:
            url = options.url
        else:
            if options.root is None:
                made_root = root = Path(tempfile.mkdtemp(prefix=f"everos-replay-{name}-"))
            else:
                root = options.root
            root.mkdir(parents=True, exist_ok=True)
            (root / "everos.toml").write_text(render_template())
            server = ManagedServer(root, _server_env(scenario, fake), scenario.open_files_limit)
            await server.start()
            url = server.url
            report["root"] = str(root)
        probe = HealthProbe(url, options.health_interval_s, options.health_timeout_s)
        nursery.start_soon(probe.run)
        watch = SearchWatch(url, options.scope())
        if options.rounds == 1:
            # With rounds, the per-round resource samples measure ingest alone: the watch then
            # only looks once, after the drain (searches open index files of every version read).
            nursery.start_soon(watch.run)
        if fake is not None and scenario.recover_after_s is not None:
            async def recover_later() -> None:
                await trio.sleep(scenario.recover_after_s)
                fake.recover()
            nursery.start_soon(recover_later)

        started = time.monotonic()
        rounds, uploads = [], None
        every_acknowledged: list[str] = []
        for _ in range(options.rounds):
            killed = trio.Event()

            async def maybe_kill(acknowledged: int) -> None:
                if scenario.kill_restart and not killed.is_set() and acknowledged >= count // 2:
                    killed.set()
                    probe.paused = True
                    await server.kill()
                    await server.start()
                    probe.paused = False

            uploads = await _upload_all(url, corpus, scenario.concurrency, options.upload_timeout_s, maybe_kill,
                                        scenario.respond_async, options.scope(),
                                        lambda doc_id, index: watch.add(doc_id, corpus_word(index)))
            every_acknowledged.extend(uploads["acknowledged"])
            if scenario.kill_restart and not killed.is_set():
                raise RuntimeError("the server finished before it could be killed; use a larger scale")
            if server is not None:
                rounds.append(server.resources())
        report["upload_s"] = round(time.monotonic() - started, 2)
        if fake is not None and scenario.recover_after_s is not None:
            fake.recover()  # the scenario's outage is over, however quick the uploads were
        report["drain_s"] = await _drain(url, options.drain_timeout_s)
        latencies = uploads.pop("latencies")
        acknowledged = uploads.pop("acknowledged")
        report["uploads"] = {**uploads, "latency_ms": _percentiles(latencies)}
        await watch.check()  # a last look, after the drain
        report["search"] = watch.report()
        report["end"] = await _verify(url, acknowledged, options.scope(), watch.missing())
        if options.url:
            report["scope"] = options.scope()
            report["documents_deleted"] = await _delete_documents(url, every_acknowledged)
        report["health"] = probe.report()
        if rounds:
            report["server_resources_per_round"] = rounds
        if fake is not None:
            report["llm_requests"] = fake.metrics().get("requests")
        if server is not None:
            report["server_exit_code"] = await server.stop()
        nursery.cancel_scope.cancel()
    report["breaches"] = _breaches(report, scenario, options)
    if made_root is not None and not report["breaches"] and not options.keep_root:
        shutil.rmtree(made_root, ignore_errors=True)
        report["root"] = None  # removed: the run held
    return report
