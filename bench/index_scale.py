"""How the index keeps pace as one root grows to 100,000 topics (issue #17).

Starts ``everos server start`` on a fresh temporary root (loopback, a free port), with the
built-in extractor and the hashing embedder (``[embedding] model = "hashing"``: the default
multilingual-e5 costs about half a second a topic on a core, so 100,000 topics would take about
14 hours of one core to embed; the hashing embedder costs about a millisecond). The root's
``everos.toml`` says so, which the restart and ``cascade rebuild`` read too.

It uploads generated markdown documents over HTTP (``POST /api/v1/knowledge/documents``,
``--concurrency`` in flight), growing the root to each checkpoint of ``--checkpoints`` (counted in
topics; topics per document are measured from the upload answers). The documents are made here,
in a temporary directory, from the prose of the English READMEs in ``bench/search_set/docs``: a
seeded word chain over their sentences (each word followed by a word that follows it there), so
term frequencies and document frequencies look like real text. Each has a ``# title`` and 8 to 10
``##`` sections of about ``--size`` bytes in all (the built-in extractor makes a topic of each).

At each checkpoint, once the segment's last upload was acknowledged:

- ``segment``: uploads acknowledged per second, the seconds until the last acknowledged document
  was indexed (``last_indexed_after_ack_s``) and until every document was (``cascade/status``),
  and ``index_rows_per_s``: the segment's topics over the seconds from its first upload to its
  last document indexed;
- ``settle``: waits until the index writer has optimized after its last write (at most
  ``--optimize-wait`` s) and nothing was written for ``--idle`` s; then ``rss`` of the server
  process and of its child processes (``VmRSS`` from ``/proc``, their sum, and the sum of
  ``Pss``, which counts shared pages once), and ``disk`` (LanceDB, SQLite and markdown bytes and
  file counts);
- ``search``: ``--queries`` fixed queries (2 to 4 words of the corpus vocabulary, seeded) one at a
  time through ``POST /api/v1/knowledge/search`` (top_k 10) per method, p50/p99/max of the
  server's ``took_ms`` and of the client's wall time;
- ``lancedb``: the same queries on LanceDB alone, in this process, on the same tables (opened read
  only through the sync API): the full-text query the server runs (over summary and content
  tokens, everos's tokenizer, scope prefilter, ``recall_n`` rows of id and doc_id), the cosine
  search with the vector of everos's own hashing embedder, ``hybrid`` as both one after the other
  (the server runs them side by side), each followed by the fact lookup the server makes for the
  ten hits (``recall`` is the same without it, and ``facts_for_10_hits`` the lookup alone).
  ``ratio_server_over_lancedb`` is the server's ``took_ms`` over LanceDB's reads (recall and
  facts), ``ratio_server_over_recall`` over the recall queries alone, at p50 and p99. Tokens and
  vectors are made before the clock starts;
- ``health``: ``/health`` probed every 0.5 s with a 1 s timeout by a background task for the whole
  run: p50/p99/max latency and failures, per segment and overall.

At the end the server is stopped (SIGINT) and started again on the same root: the seconds until
ready, ``rss`` once it is idle, and whether it is within 20 % of the settled RSS (the issue's
check); then ``everos cascade rebuild --root ROOT`` is timed as a subprocess, with its outcome
counts and the topic rows before and after.

Prints one JSON object on stdout; progress goes to stderr. Every temporary directory and process
is removed or stopped at the end, on Ctrl-C and on SIGTERM too.

    python bench/index_scale.py [--checkpoints 1000,10000,100000] [--size 4096] [--concurrency 4]
                                [--docs N] [--queries 100] [--seed 17] [--time-budget S] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import trio

from everos.config import Config, load_config, render_template
from everos.providers import BuiltinEmbedder
from everos.search import STOP_WORDS, search_tokens
from everos.store.index import FACT_TABLE, TOPIC_TABLE
from everos.testing.replay import free_port
from everos.testing.replay._server import settings_env
from everos.testing.search_eval import SET_DIR, percentile

API = "/api/v1/knowledge"
CASCADE_STATUS = "/api/v1/cascade/status"
SCOPE = {"app_id": "default", "project_id": "default"}
TOP_K = 10
METHODS = ("keyword", "vector", "hybrid")
TOPIC_FTS_COLUMNS = ("summary_tokens", "content_tokens")  # the server's keyword search reads both
HEALTH_EVERY_S, HEALTH_TIMEOUT_S = 0.5, 1.0
NOMINAL_TOPICS_PER_DOCUMENT = 10.0  # until the first upload answers


def log(message: str) -> None:
    print(f"[index_scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the corpus --------------------------------------------------------------------------------------

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_MARKUP = [re.compile(p) for p in (r"<!--.*?-->", r"<[^>]*>", r"!?\[([^\]]*)\]\([^)]*\)", r"https?://\S+",
                                    r"`[^`]*`")]
_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _prose(text: str) -> str:
    """The prose paragraphs of a README: no code blocks, HTML, headings, tables, links' targets."""
    kept, fenced = [], False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if fenced or line.startswith(("    ", "\t")) or stripped.startswith(("#", "|", ">>>", "...", "[", "!", "=")):
            kept.append("")
            continue
        kept.append(stripped)
    prose = "\n".join(kept)
    for pattern in _MARKUP:
        prose = pattern.sub(lambda m: m.group(1) if m.re.groups else " ", prose)
    return prose


class Vocabulary:
    """A word chain over the sentences of the English READMEs of the search set: ``follows[w]`` lists
    every word seen right after ``w`` (repeats kept, so frequent pairs come up more often)."""

    def __init__(self, docs_dir: Path) -> None:
        self.follows: dict[str, list[str]] = {}
        self.starts: list[str] = []
        counts: Counter[str] = Counter()
        self.sources = 0
        for path in sorted(docs_dir.glob("*.md")):
            text = path.read_text(encoding="utf-8")
            if len(_CJK.findall(text)) > 0.01 * len(text):
                continue  # a Chinese README
            self.sources += 1
            for paragraph in _prose(text).split("\n\n"):
                for sentence in _SENTENCE_END.split(" ".join(paragraph.split())):
                    words = _WORD.findall(sentence)
                    if len(words) < 4:
                        continue
                    self.starts.append(words[0])
                    counts.update(word.lower() for word in words)
                    for left, right in zip(words, words[1:]):
                        self.follows.setdefault(left.lower(), []).append(right)
        # Words a query or a heading may use: seen three times or more, not stop words.
        self.content_words = sorted(w for w, n in counts.items() if n >= 3 and len(w) >= 3 and w not in STOP_WORDS)
        self.words = len(counts)

    def sentence(self, rng: random.Random) -> str:
        words = [rng.choice(self.starts)]
        length = rng.randint(8, 22)
        while len(words) < length:
            after = self.follows.get(words[-1].lower())
            if not after:
                if len(words) >= 5:
                    break
                after = self.starts
            words.append(rng.choice(after))
        text = " ".join(words)
        return text[0].upper() + text[1:] + "."

    def phrase(self, rng: random.Random, low: int, high: int) -> str:
        return " ".join(w.capitalize() for w in rng.sample(self.content_words, rng.randint(low, high)))


def make_document(vocabulary: Vocabulary, number: int, size: int, seed: int) -> tuple[str, str]:
    """``(title, markdown)`` of document ``number``: the same for the same seed, distinct per number."""
    rng = random.Random(f"{seed}:{number}")
    title = f"{vocabulary.phrase(rng, 2, 4)} {number}"
    sections = rng.randint(8, 10)
    parts = [f"# {title}\n\n"]
    share = max(200, (size - len(parts[0])) // (sections + 1))  # the introduction is one share
    headings = [vocabulary.phrase(rng, 2, 4) for _ in range(sections)]
    for heading in [None, *headings]:
        budget = share - (0 if heading is None else len(heading) + 5)
        paragraphs: list[list[str]] = [[]]
        length = 0
        while True:
            sentence = vocabulary.sentence(rng)
            if length and length + len(sentence) // 2 > budget:  # the nearer end of the sentence
                break
            if len(paragraphs[-1]) >= rng.randint(2, 5):
                paragraphs.append([])
            paragraphs[-1].append(sentence)
            length += len(sentence) + 2
        body = "\n\n".join(" ".join(p) for p in paragraphs) + "\n\n"
        parts.append(("" if heading is None else f"## {heading}\n\n") + body)
    return title, "".join(parts)


def make_queries(vocabulary: Vocabulary, count: int, seed: int) -> list[str]:
    rng = random.Random(f"{seed}:queries")
    return [" ".join(rng.sample(vocabulary.content_words, rng.randint(2, 4))) for _ in range(count)]


# -- figures -----------------------------------------------------------------------------------------


def spread(values: Sequence[float]) -> dict[str, float | int]:
    """p50, p99 (nearest rank) and max of ``values`` in ms, and how many."""
    return {"n": len(values), "p50_ms": round(percentile(values, 0.5), 2), "p99_ms": round(percentile(values, 0.99), 2),
            "max_ms": round(max(values, default=0.0), 2)}


def _status_fields(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: v.strip() for k, v in (line.split(":", 1) for line in text.splitlines() if ":" in line)}


def _kib(value: str) -> int:
    return int(value.split()[0])


def _pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return _kib(line.split(":", 1)[1])
    return 0


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...), from ``/proc/*/stat``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return sorted(found)


def process_memory(pid: int) -> dict[str, Any]:
    """RSS of the server process and of its children (MiB): each one's, the sum, and the sum of PSS."""
    main = _status_fields(pid)
    children = []
    pss = _pss_kib(pid)
    for child in descendants(pid):
        with contextlib.suppress(OSError, KeyError):
            fields = _status_fields(child)
            command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            children.append({"pid": child, "command": command.strip()[:120],
                             "rss_mib": round(_kib(fields["VmRSS"]) / 1024, 1)})
            pss += _pss_kib(child)
    main_mib = round(_kib(main["VmRSS"]) / 1024, 1)
    return {"pid": pid, "main_rss_mib": main_mib, "main_threads": int(main["Threads"]), "children": children,
            "total_rss_mib": round(main_mib + sum(c["rss_mib"] for c in children), 1),
            "total_pss_mib": round(pss / 1024, 1)}


def tree_size(path: Path) -> dict[str, int]:
    total = files = 0
    for folder, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(folder, name)).st_size
                files += 1
    return {"bytes": total, "mib": round(total / 2**20, 1), "files": files}


def disk_usage(root: Path) -> dict[str, Any]:
    return {"lancedb": tree_size(root / ".index" / "lancedb"), "sqlite": tree_size(root / ".index" / "sqlite"),
            "markdown": tree_size(root / "default_app"), "root": tree_size(root)}


def _poll_interval(waited_s: float) -> float:
    """How long to sleep between two polls after ``waited_s`` of waiting: a 1 % error at most, 50 ms to 1 s."""
    return min(1.0, max(0.05, waited_s / 100))


def _ratios(server: dict[str, Any], alone: dict[str, Any]) -> dict[str, float]:
    """The server's p50 and p99 over LanceDB's."""
    return {key: round(server[f"{key}_ms"] / max(alone[f"{key}_ms"], 0.01), 2) for key in ("p50", "p99")}


def _since(at: float | None, start: float) -> float | None:
    return None if at is None else round(at - start, 2)


# -- the server ---------------------------------------------------------------------------------------


class Server:
    """``everos server start`` as a subprocess on ``root`` and a free loopback port."""

    def __init__(self, root: Path, env: dict[str, str], log_path: Path) -> None:
        self.root, self.env, self.log_path = root, env, log_path
        self.process: trio.Process | None = None
        self.url = ""

    async def start(self, ready_timeout_s: float) -> float:
        """Start it and wait for ``/readyz``; the seconds that took."""
        started = time.monotonic()
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        with open(self.log_path, "ab") as log_file:
            self.process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "everos.cli", "server", "start", "--root", str(self.root), "--port", str(port),
                 "--log-level", "WARNING"], env=self.env, stdout=log_file, stderr=log_file)
        async with httpx.AsyncClient(base_url=self.url, timeout=1) as client:
            with trio.fail_after(ready_timeout_s):
                while True:
                    if self.process.poll() is not None:
                        raise RuntimeError(f"the server exited at start ({self.process.returncode}): "
                                           f"{self.log_tail()}")
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get("/readyz")).status_code == 200:
                            return time.monotonic() - started
                    await trio.sleep(0.1)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-2000:]
        return ""

    async def stop(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """SIGINT, as a terminal's Ctrl-C; SIGKILL when it has not exited within ``timeout_s``."""
        process, self.process = self.process, None
        if process is None:
            return {}
        started = time.monotonic()
        killed = False
        with trio.CancelScope(shield=True):
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                with trio.move_on_after(timeout_s):
                    await process.wait()
                if process.poll() is None:
                    killed = True
                    process.kill()
                    await process.wait()
        return {"exit_code": process.returncode, "stop_s": round(time.monotonic() - started, 2), "killed": killed}


class HealthPoller:
    """``GET /health`` every 0.5 s, each bounded by 1 s, while :meth:`run` runs; keeps every sample."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float | None]] = []  # (monotonic start, ms or None: failed)
        self.url = ""

    async def run(self, url: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=HEALTH_TIMEOUT_S) as client:
            task_status.started()
            while True:
                started = time.monotonic()
                ok = False
                with trio.move_on_after(HEALTH_TIMEOUT_S), contextlib.suppress(httpx.HTTPError):
                    ok = (await client.get("/health")).status_code == 200
                elapsed = time.monotonic() - started
                self.samples.append((started, elapsed * 1000 if ok else None))
                await trio.sleep(max(0.0, HEALTH_EVERY_S - elapsed))

    def figures(self, since: float = 0.0, until: float = math.inf) -> dict[str, Any]:
        window = [ms for at, ms in self.samples if since <= at < until]
        return {**spread([ms for ms in window if ms is not None]), "probes": len(window),
                "failures": sum(ms is None for ms in window)}


# -- the run ------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Uploaded:
    number: int
    doc_id: str
    topics: int
    sent_at: float
    acked_at: float
    status: int


class Run:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.vocabulary = Vocabulary(SET_DIR / "docs")
        self.queries = make_queries(self.vocabulary, args.queries, args.seed)
        self.corpus = workdir / "corpus"
        self.corpus.mkdir()
        self.root = workdir / "root"
        self.root.mkdir()
        config = Config()
        config = dataclasses.replace(config, embedding=dataclasses.replace(config.embedding, model="hashing"))
        (self.root / "everos.toml").write_text(render_template(config), encoding="utf-8")
        self.env = settings_env({})  # no EVEROS_ variable of the caller's reaches the server
        self.config = load_config(self.root, environ=self.env).config
        self.server = Server(self.root, self.env, workdir / "server.log")
        self.health = HealthPoller()
        self.uploaded: list[Uploaded] = []
        self.next_number = 0
        self.in_flight = 0
        self.responses: Counter[str] = Counter()
        self.started = time.monotonic()

    # -- uploads ---------------------------------------------------------------------------------------

    def topics(self) -> int:
        return sum(u.topics for u in self.uploaded)

    def topics_per_document(self) -> float:
        return self.topics() / len(self.uploaded) if self.uploaded else NOMINAL_TOPICS_PER_DOCUMENT

    def out_of_time(self) -> bool:
        budget = self.args.time_budget
        return budget is not None and time.monotonic() - self.started > budget

    def wants_more(self, target: int) -> bool:
        if self.next_number >= self.args.docs or self.out_of_time():
            return False
        return self.topics() + self.in_flight * self.topics_per_document() < target

    def write_document(self, number: int) -> tuple[str, Path]:
        title, text = make_document(self.vocabulary, number, self.args.size, self.args.seed)
        path = self.corpus / f"doc_{number:06d}.md"
        path.write_text(text, encoding="utf-8")
        return title, path

    async def upload(self, client: httpx.AsyncClient, number: int) -> Uploaded:
        title, path = self.write_document(number)
        body = path.read_bytes()
        sent_at = time.monotonic()
        while True:
            response = await client.post(f"{API}/documents", data={"title": title},
                                         files={"file": (path.name, body, "text/markdown")})
            self.responses[str(response.status_code)] += 1
            if response.status_code in (429, 503):
                await trio.sleep(float(response.headers.get("Retry-After") or 1))
                continue
            break
        if response.status_code not in (201, 202):
            raise RuntimeError(f"uploading {path.name}: {response.status_code} {response.text[:500]}")
        acked_at = time.monotonic()
        data = response.json()["data"]
        if response.status_code == 201:
            return Uploaded(number, data["doc_id"], int(data["topic_count"]), sent_at, acked_at, 201)
        while (task := (await client.get(f"{API}/tasks/{data['task_id']}")).json()["data"])["status"] in (
                "queued", "running"):
            await trio.sleep(0.1)
        if not task.get("doc_id"):
            raise RuntimeError(f"extracting {path.name}: {task.get('status')} {task.get('last_error')}")
        document = (await client.get(f"{API}/documents/{task['doc_id']}")).json()["data"]
        return Uploaded(number, task["doc_id"], len(document.get("topics") or []), sent_at, acked_at, 202)

    async def grow(self, client: httpx.AsyncClient, target: int) -> list[Uploaded]:
        """Upload documents until the root holds ``target`` topics (or ``--docs`` documents, or the
        time budget is spent); the uploads of this segment, in order of acknowledgement."""
        segment: list[Uploaded] = []
        last_report = [time.monotonic()]

        async def uploader() -> None:
            while self.wants_more(target):
                number = self.next_number
                self.next_number += 1
                self.in_flight += 1
                try:
                    done = await self.upload(client, number)
                finally:
                    self.in_flight -= 1
                self.uploaded.append(done)
                segment.append(done)
                if time.monotonic() - last_report[0] > 15:
                    last_report[0] = time.monotonic()
                    log(f"  {len(self.uploaded)} documents, {self.topics()} topics acknowledged")

        async with trio.open_nursery() as nursery:
            for _ in range(self.args.concurrency):
                nursery.start_soon(uploader)
        return segment

    # -- waiting ---------------------------------------------------------------------------------------

    async def wait_indexed(self, client: httpx.AsyncClient, last: Uploaded) -> dict[str, Any]:
        """Wait for the last acknowledged document, then for every document; when each was seen.
        Past ``--index-timeout`` it stops waiting: ``complete`` is false, the counts are the last seen.
        The polls are spaced out as the wait grows (50 ms, up to 1 s), so a long wait does not load
        the server it measures (a document read at 20 Hz was 3 % of its samples at 60,000 topics)."""
        found: dict[str, Any] = {"complete": False, "last_indexed_at": None, "all_indexed_at": None,
                                 "index_status": {}, "dead": None}
        with trio.move_on_after(self.args.index_timeout):
            while True:
                document = (await client.get(f"{API}/documents/{last.doc_id}")).json()["data"]
                if document["index_status"] != "pending":
                    found["last_indexed_at"] = time.monotonic()
                    break
                await trio.sleep(_poll_interval(time.monotonic() - last.acked_at))
            while True:
                report = (await client.get(CASCADE_STATUS)).json()["data"]
                counts, depth = report["index_status"], report["depth"]
                found.update(index_status=counts, dead=report.get("dead", 0))
                if (counts.get("pending", 0) == 0 and depth.get("queued", 0) + depth.get("running", 0) == 0
                        and counts.get("indexed", 0) + counts.get("failed", 0) >= len(self.uploaded)):
                    return {**found, "complete": True, "all_indexed_at": time.monotonic()}
                await trio.sleep(_poll_interval(time.monotonic() - last.acked_at))
        with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
            report = (await client.get(CASCADE_STATUS)).json()["data"]
            found.update(index_status=report["index_status"], dead=report.get("dead", 0))
        return found

    async def settle(self, client: httpx.AsyncClient, optimize_wait_s: float, timeout_s: float) -> dict[str, Any]:
        """Wait until the index writer optimized after its last write (at most ``optimize_wait_s``)
        and nothing was written, optimized or queued for ``--idle`` s; past ``timeout_s`` it stops
        waiting (``settled`` false)."""
        started = time.monotonic()
        seen: tuple[Any, ...] | None = None
        quiet_since = started
        writes_changed_opts: int | None = None
        optimized = False
        while True:
            health = (await client.get("/health")).json()
            index = health["index"]
            busy = (health["ingest"]["pending"] or health["cascade"]["pending"] or index["pending_operations"])
            now = (index["writes"], index["optimizations"], busy)
            if seen is None or now[0] != seen[0]:
                writes_changed_opts = index["optimizations"]
            if now != seen:
                seen, quiet_since = now, time.monotonic()
            optimized = optimized or (writes_changed_opts is not None and index["optimizations"] > writes_changed_opts)
            waited = time.monotonic() - started
            settled = (not busy and time.monotonic() - quiet_since >= self.args.idle
                       and (optimized or waited >= optimize_wait_s))
            if settled or waited >= timeout_s:
                return {"settled": settled, "settle_s": round(waited, 1), "optimized_after_last_write": optimized,
                        "index_writes": index["writes"], "optimizations": index["optimizations"],
                        "last_optimize_seconds": index["last_optimize_seconds"], "index_rows": index["rows"],
                        "index_last_error": index["last_error"], "loop_lag_ms": health.get("loop_lag_ms"),
                        "attempts_finished": health["cascade"].get("attempts_finished")}
            await trio.sleep(0.5)

    # -- searches --------------------------------------------------------------------------------------

    async def server_search(self, client: httpx.AsyncClient) -> dict[str, Any]:
        figures: dict[str, Any] = {}
        for method in METHODS:
            took, wall, hits = [], [], []
            for query in self.queries:
                started = time.perf_counter()
                response = await client.post(f"{API}/search", json={"query": query, "method": method,
                                                                     "top_k": TOP_K, **SCOPE})
                wall.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"search {method} {query!r}: {response.status_code} {response.text[:500]}")
                data = response.json()["data"]
                took.append(float(data["took_ms"]))
                hits.append(len(data["hits"]))
            figures[method] = {"took_ms": spread(took), "client_ms": spread(wall), "first_took_ms": took[0],
                               "mean_hits": round(sum(hits) / len(hits), 2)}
        return figures

    def lancedb_search(self) -> dict[str, Any]:
        """The server's index reads on LanceDB alone (see the module docstring). Blocks: run it in a thread."""
        import lancedb

        dim = self.config.embedding.dim
        recall_n = max(self.config.knowledge_search.recall_n, TOP_K)
        embedder = BuiltinEmbedder(dim, max_input_chars=self.config.embedding.max_input_chars)
        scope = " AND ".join(f"{key} = '{value}'" for key, value in SCOPE.items())
        db = lancedb.connect(self.root / ".index" / "lancedb", read_consistency_interval=timedelta(0))
        topics, facts = db.open_table(TOPIC_TABLE), db.open_table(FACT_TABLE)
        prepared = [(" ".join(dict.fromkeys(search_tokens(q))), embedder.embed_sync([q])[0]) for q in self.queries]

        def keyword(text: str) -> list[str]:
            if not text:
                return []
            rows = (topics.search(text, query_type="fts", fts_columns=list(TOPIC_FTS_COLUMNS))
                    .where(scope, prefilter=True).select(["id", "doc_id", "_score"]).limit(recall_n).to_arrow())
            return rows.column("id").to_pylist()

        def vector(query: list[float]) -> list[str]:
            rows = (topics.search(query, vector_column_name="vector").distance_type("cosine")
                    .where(scope, prefilter=True).select(["id", "doc_id", "_distance"]).limit(recall_n).to_arrow())
            return rows.column("id").to_pylist()

        def fact_lookup(topic_ids: list[str]) -> int:
            if not topic_ids:
                return 0
            wanted = ", ".join(f"'{i}'" for i in topic_ids)
            rows = (facts.search().where(f"topic_id IN ({wanted})")
                    .select(["id", "topic_id", "fact_index", "text", "text_tokens", "vector"]).limit(20_000).to_arrow())
            return rows.num_rows

        times: dict[str, list[float]] = {name: [] for name in (*METHODS, "facts_for_10_hits")}
        recall: dict[str, list[float]] = {name: [] for name in METHODS}
        for text, query in prepared:
            for method in METHODS:
                started = time.perf_counter()
                ids = keyword(text) if method == "keyword" else vector(query) if method == "vector" else [
                    *keyword(text), *vector(query)]
                recalled = time.perf_counter()
                fact_lookup(list(dict.fromkeys(ids))[:TOP_K])
                done = time.perf_counter()
                recall[method].append((recalled - started) * 1000)
                times[method].append((done - started) * 1000)
                times["facts_for_10_hits"].append((done - recalled) * 1000)
        indices = {}
        for name, table in ((TOPIC_TABLE, topics), (FACT_TABLE, facts)):
            indices[name] = {"rows": table.count_rows(), "version": table.version,
                             "indices": [{"name": index.name, "type": index.index_type,
                                          "unindexed_rows": table.index_stats(index.name).num_unindexed_rows}
                                         for index in table.list_indices()]}
        return {**{name: spread(values) for name, values in times.items()},
                "recall": {name: spread(values) for name, values in recall.items()}, "tables": indices}

    # -- checkpoints ---------------------------------------------------------------------------------

    async def checkpoint(self, client: httpx.AsyncClient, target: int) -> dict[str, Any]:
        log(f"growing to {target} topics ({len(self.uploaded)} documents, {self.topics()} topics so far)")
        segment_started = time.monotonic()
        segment = await self.grow(client, target)
        if not segment:
            raise RuntimeError("no document uploaded in this segment (--docs or the time budget reached)")
        first_sent = min(u.sent_at for u in segment)
        last = max(segment, key=lambda u: u.acked_at)
        upload_s = last.acked_at - first_sent
        log(f"  {len(segment)} uploads acknowledged in {upload_s:.1f} s; waiting for the index")
        indexed = await self.wait_indexed(client, last)
        seg_topics = sum(u.topics for u in segment)
        if indexed["complete"]:
            index_s = indexed["all_indexed_at"] - first_sent
            log(f"  indexed {seg_topics} topics in {index_s:.1f} s; settling")
            settle = await self.settle(client, self.args.optimize_wait, self.args.index_timeout)
        else:  # measured as it is, with the index behind
            index_s = math.nan
            log(f"  not indexed within {self.args.index_timeout} s: {indexed['index_status']}; measuring as it is")
            settle = await self.settle(client, 0.0, 0.0)
        memory = process_memory(self.server.pid)
        disk = disk_usage(self.root)
        log(f"  settled in {settle['settle_s']} s, server RSS {memory['main_rss_mib']} MiB; searching")
        search = await self.server_search(client)
        alone = await trio.to_thread.run_sync(self.lancedb_search)
        ratio = {method: _ratios(search[method]["took_ms"], alone[method]) for method in METHODS}
        over_recall = {method: _ratios(search[method]["took_ms"], alone["recall"][method]) for method in METHODS}
        return {
            "target_topics": target, "documents": len(self.uploaded), "topics": self.topics(),
            "reached": self.topics() >= target and indexed["complete"], "index_complete": indexed["complete"],
            "segment": {
                "documents": len(segment), "topics": seg_topics,
                "upload_s": round(upload_s, 2), "uploads_per_s": round(len(segment) / max(upload_s, 1e-6), 2),
                "acked_201": sum(u.status == 201 for u in segment), "acked_202": sum(u.status == 202 for u in segment),
                "last_indexed_after_ack_s": _since(indexed["last_indexed_at"], last.acked_at),
                "all_indexed_after_last_ack_s": _since(indexed["all_indexed_at"], last.acked_at),
                "index_s": None if math.isnan(index_s) else round(index_s, 2),
                "index_rows_per_s": None if math.isnan(index_s) else round(seg_topics / max(index_s, 1e-6), 1),
                "index_status": indexed["index_status"], "dead_index_rows": indexed["dead"],
                "health": self.health.figures(segment_started, time.monotonic()),
            },
            "settle": settle, "rss": memory, "disk": disk,
            "search": search, "lancedb": alone, "ratio_server_over_lancedb": ratio,
            "ratio_server_over_recall": over_recall,
        }

    async def restart(self) -> dict[str, Any]:
        """Stop the server, start it again on the same root, wait until it is idle; its RSS."""
        stopped = await self.server.stop()
        ready_s = await self.server.start(self.args.ready_timeout)
        async with httpx.AsyncClient(base_url=self.server.url, timeout=120) as client:
            settle = await self.settle(client, 0.0, min(self.args.index_timeout, 600.0))
        memory = process_memory(self.server.pid)
        return {"first_stop": stopped, "ready_s": round(ready_s, 2), "settle": settle, "rss": memory,
                "second_stop": await self.server.stop()}

    async def rebuild(self) -> dict[str, Any]:
        """``everos cascade rebuild --root ROOT`` as a subprocess (no server on the root)."""
        out_path = self.workdir / "rebuild.json"
        started = time.monotonic()
        with open(out_path, "wb") as out, open(self.workdir / "rebuild.log", "wb") as err:
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "everos.cli", "cascade", "rebuild", "--root", str(self.root)],
                env=self.env, stdout=out, stderr=err)
        timed_out = False
        try:
            with trio.move_on_after(self.args.rebuild_timeout):
                await process.wait()
            if process.poll() is None:
                timed_out = True
        finally:
            if process.poll() is None:
                with trio.CancelScope(shield=True):
                    process.kill()
                    await process.wait()
        seconds = time.monotonic() - started
        result: dict[str, Any] = {"seconds": round(seconds, 1), "exit_code": process.returncode,
                                  "timed_out": timed_out, "succeeded": process.returncode == 0 and not timed_out}
        with contextlib.suppress(OSError, ValueError):
            report = json.loads(out_path.read_text(encoding="utf-8"))
            result.update({"dropped": report.get("dropped"), "queued": len(report.get("queued") or []),
                           "outcomes": report.get("outcomes"), "failures": len(report.get("failures") or [])})
        if not result["succeeded"]:
            result["stderr_tail"] = (self.workdir / "rebuild.log").read_text(errors="replace")[-1500:]
        topics = await trio.to_thread.run_sync(self.topic_rows)
        result["topic_rows_after"] = topics
        result["topics_per_s"] = round(topics / max(seconds, 1e-6), 1)
        return result

    def topic_rows(self) -> int:
        import lancedb

        return lancedb.connect(self.root / ".index" / "lancedb").open_table(TOPIC_TABLE).count_rows()

    async def main(self, checkpoints: list[int]) -> dict[str, Any]:
        log(f"vocabulary: {self.vocabulary.words} words from {self.vocabulary.sources} English READMEs; "
            f"root {self.root}")
        results: dict[str, Any] = {}
        ready_s = await self.server.start(self.args.ready_timeout)
        log(f"server pid {self.server.pid} at {self.server.url}, ready in {ready_s:.1f} s")
        results["first_start_ready_s"] = round(ready_s, 2)
        points = []
        async with trio.open_nursery() as nursery:
            await nursery.start(self.health.run, self.server.url)
            async with httpx.AsyncClient(base_url=self.server.url, timeout=self.args.request_timeout) as client:
                for target in checkpoints:
                    points.append(await self.checkpoint(client, target))
                    if not points[-1]["reached"]:
                        log("stopped growing: --docs or the time budget reached")
                        break
            health = self.health.figures()
            nursery.cancel_scope.cancel()
        log("restarting the server on the same root")
        restart = await self.restart()
        settled = points[-1]["rss"]["main_rss_mib"]
        restart["main_rss_settled_over_restart"] = round(settled / restart["rss"]["main_rss_mib"], 3)
        restart["total_rss_settled_over_restart"] = round(points[-1]["rss"]["total_rss_mib"]
                                                          / restart["rss"]["total_rss_mib"], 3)
        restart["main_rss_within_20_percent"] = abs(restart["main_rss_settled_over_restart"] - 1) <= 0.2
        log(f"timing everos cascade rebuild on {points[-1]['topics']} topics")
        rebuild = await self.rebuild()
        rebuild["topic_rows_before"] = points[-1]["settle"]["index_rows"].get(TOPIC_TABLE)
        return {**results, "checkpoints": points, "health": health, "upload_responses": dict(self.responses),
                "restart": restart, "rebuild": rebuild}


async def _watch_signals(cancel_scope: trio.CancelScope, caught: list[int]) -> None:
    """SIGINT (Ctrl-C) and SIGTERM cancel the run, which then stops its server and removes its files:
    a cancellation, not a KeyboardInterrupt raised wherever the main task happens to be."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log(f"{signal.Signals(signum).name}: stopping")
            caught.append(signum)
            cancel_scope.cancel()
            return


async def run(args: argparse.Namespace, checkpoints: list[int], caught: list[int]) -> dict[str, Any] | None:
    workdir = Path(tempfile.mkdtemp(prefix="everos-bench-scale-"))
    started = time.monotonic()
    bench: Run | None = None
    result: dict[str, Any] | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, nursery.cancel_scope, caught)
            bench = Run(args, workdir)
            result = await bench.main(checkpoints)
            nursery.cancel_scope.cancel()
        if result is None:
            return None  # a signal
        return {"settings": {
                    "checkpoints": checkpoints, "docs_cap": args.docs, "size": args.size,
                    "concurrency": args.concurrency, "queries": args.queries, "seed": args.seed, "top_k": TOP_K,
                    "extractor": "builtin", "embedding": "hashing", "cpus": os.cpu_count(),
                    "vocabulary_words": bench.vocabulary.words, "source_readmes": bench.vocabulary.sources},
                "topics_per_document": round(bench.topics_per_document(), 2),
                **result, "seconds": round(time.monotonic() - started, 1)}
    except BaseException:
        if bench is not None:
            log(f"failed; the server's log ends: {bench.server.log_tail()[-800:]}")
        raise
    finally:
        with trio.CancelScope(shield=True):
            if bench is not None:
                await bench.server.stop(timeout_s=20)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", default="1000,10000,100000", help="topic counts to measure at")
    parser.add_argument("--docs", type=int, default=1_000_000, help="most documents to generate")
    parser.add_argument("--size", type=int, default=4096, help="bytes per document (about)")
    parser.add_argument("--concurrency", type=int, default=4, help="uploads in flight")
    parser.add_argument("--queries", type=int, default=100, help="search queries per method")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--idle", type=float, default=10.0, help="quiet seconds before the index counts as settled")
    parser.add_argument("--optimize-wait", type=float, default=90.0,
                        help="most seconds to wait for the index writer to optimize after its last write")
    parser.add_argument("--index-timeout", type=float, default=4 * 3600.0,
                        help="most seconds to wait for the index at a checkpoint (then it is measured as it is, "
                             "and the run stops growing)")
    parser.add_argument("--rebuild-timeout", type=float, default=4 * 3600.0)
    parser.add_argument("--ready-timeout", type=float, default=300.0, help="most seconds a server start may take")
    parser.add_argument("--request-timeout", type=float, default=120.0)
    parser.add_argument("--time-budget", type=float, default=None,
                        help="stop growing after this many seconds and measure what was reached")
    parser.add_argument("--quick", action="store_true",
                        help="30 documents, one checkpoint, 10 queries, 2 s idle, no optimize wait")
    args = parser.parse_args()
    if args.quick:
        args.docs, args.checkpoints, args.queries = min(args.docs, 30), "300", min(args.queries, 10)
        args.idle, args.optimize_wait = min(args.idle, 2.0), 0.0
    checkpoints = sorted(int(c) for c in args.checkpoints.split(",") if c.strip())
    caught: list[int] = []
    try:
        result = trio.run(run, args, checkpoints, caught)
    except (KeyboardInterrupt, BaseExceptionGroup) as exc:  # Ctrl-C before the signal watcher ran
        if isinstance(exc, BaseExceptionGroup) and exc.split(KeyboardInterrupt)[1] is not None:
            raise
        log("interrupted; cleaned up")
        sys.exit(130)
    if result is None:
        log("stopped by a signal; cleaned up")
        sys.exit(128 + (caught[0] if caught else signal.SIGTERM))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
