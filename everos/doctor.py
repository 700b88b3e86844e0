"""``everos doctor``: is this root ready to serve? One line per check, ✔ ok, ⚠ warning, ✖ problem.

Checks, in order: the configuration loads and validates; the root is writable; the open-file
limit; free disk space; who owns the root (a running server answers ``/health``, a warning while
its index lags); each configured model endpoint answers (``[llm]``: ``GET {base_url}/models``
lists the model; ``[embedding]``: one embedding of ``"ping"``, whose width is compared with ``dim``;
``[rerank]``: one tiny rerank), each probe under its own deadline (``--timeout``, 5 s) with no
retry; the index matches the markdown (document directories on disk, documents in SQLite,
documents indexed, by count); and every failed document, dead index row and dead or failed
ingest task, with its error and the command that fixes it.

It only reads, so it runs next to a server or without one: it never takes the root lock,
creates nothing, recovers no rows and runs no migration (SQLite is read through a
:class:`~everos.store.Database` that is constructed, not opened). Exit code 7
(``ExitCode.CHECK_FAILED``) when any check is ✖, a bad configuration included: ``doctor``
reports it next to everything else it could still check, rather than stopping at it as the
other commands do (exit 1). ``--json`` prints ``{root, healthy, checks: [{check, status,
detail}]}``.

Heavy modules (trio, httpx, the providers, the stores) are imported inside the functions that
use them, so ``everos --help`` and the other commands do not pay for them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any

from everos.config import Config, LoadedConfig, config_path, load_config, resolve_root
from everos.errors import CommandError, ConfigError, ExitCode, StoreBusy

__all__ = ["Check", "add_parser", "diagnose", "render_check", "run"]

PROBE_TIMEOUT_S = 5.0
# The policy's call deadline bounds each probe; this only catches a probe that ignores it.
PROBE_GRACE_S = 2.0
# The server is proven within `ulimit -n 256` (G5b); below it is a problem, below 1024 tight.
MIN_OPEN_FILES = 256
COMFORTABLE_OPEN_FILES = 1024
# Free space: below the larger of this and two uploads (inbox + published copy) is a problem.
MIN_FREE_BYTES = 100 * 1024 * 1024
LOW_FREE_BYTES = 1024 * 1024 * 1024
MAX_LISTED = 20

OK, WARN, FAIL = "ok", "warn", "fail"
MARKS = {OK: "✔", WARN: "⚠", FAIL: "✖"}
PLAIN_MARKS = {OK: "OK", WARN: "WARN", FAIL: "FAIL"}


@dataclasses.dataclass(frozen=True)
class Check:
    """One line of the report: which ``check``, its ``status`` (ok, warn, fail), what was seen."""

    check: str
    status: str
    detail: str


def add_parser(commands: Any) -> None:
    """Add ``doctor`` to argparse's ``commands`` (what ``add_subparsers`` returns)."""
    doctor = commands.add_parser("doctor", help="check the config, the root, the model endpoints and the index "
                                                "(read-only; safe next to a server)")
    doctor.add_argument("--root", help="memory root (default: $EVEROS_ROOT, else ~/.everos)")
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON")
    doctor.add_argument("--timeout", type=float, default=PROBE_TIMEOUT_S,
                        help=f"deadline of each endpoint probe in seconds (default {PROBE_TIMEOUT_S:g})")


def run(args: argparse.Namespace) -> int:
    """Run every check, print one line each (or JSON); exit 7 when any is ✖, else 0.

    Raises:
        CommandError: ``--timeout`` is not above 0 (``USAGE``).
    """
    import trio

    if not args.timeout > 0:
        raise CommandError("doctor: --timeout must be greater than 0", exit_code=ExitCode.USAGE)
    root = resolve_root(args.root)
    checks = trio.run(diagnose, root, args.timeout)
    healthy = all(check.status != FAIL for check in checks)
    if args.json:
        print(json.dumps({"root": str(root), "healthy": healthy, "checks": [dataclasses.asdict(c) for c in checks]},
                         indent=2, ensure_ascii=False))
    else:
        marks = MARKS if _can_print("".join(MARKS.values())) else PLAIN_MARKS
        for check in checks:
            print(render_check(check, marks))
    return ExitCode.OK if healthy else ExitCode.CHECK_FAILED


def render_check(check: Check, marks: dict[str, str] = MARKS) -> str:
    """``✔ check: detail`` on one line. Pure."""
    return f"{marks[check.status]} {check.check}: {' '.join(check.detail.split())}"


def _can_print(text: str) -> bool:
    try:
        text.encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


async def diagnose(root: Path, probe_timeout_s: float = PROBE_TIMEOUT_S) -> list[Check]:
    """Every check of ``root``, in report order. Only reads. A checkpoint: the endpoint probes
    (run at once) are each bounded by ``probe_timeout_s``, the server's ``/health`` too, every
    SQLite call by ``[sqlite] call_timeout_seconds``; the walk of the document directories is
    ``stat`` calls in a thread."""
    if not root.is_dir():
        return [Check("root", FAIL, f"{root} does not exist; `everos init --root {root}` makes one")]
    loaded, config_check = check_config(root)
    config = loaded.config if loaded is not None else Config()
    checks = [config_check, check_root_writable(root), check_open_files(), check_disk(root, config),
              await check_server(root, probe_timeout_s)]
    if loaded is None:
        checks.append(Check("endpoints", WARN, "not probed: the configuration is not valid"))
    else:
        checks.extend(await check_endpoints(config, probe_timeout_s))
    checks.extend(await check_index(root, config))
    return checks


# -- the root and the machine ---------------------------------------------------------------------


def check_config(root: Path) -> tuple[LoadedConfig | None, Check]:
    """The loaded configuration (None when it does not load) and its check."""
    try:
        loaded = load_config(root)
    except ConfigError as exc:
        return None, Check("config", FAIL, exc.message)
    ignored = f"; {len(loaded.ignored)} EverOS settings ignored (`everos config show`)" if loaded.ignored else ""
    return loaded, Check("config", OK, f"{config_path(root)} is valid{ignored}")


def check_root_writable(root: Path) -> Check:
    """The root and the derived-state directories that exist can be written (checked with
    ``os.access``: nothing is written)."""
    from everos.cascade._service import DATABASE_RELPATH

    places = [root, *(path for path in (root / ".index", root / DATABASE_RELPATH.parent) if path.exists())]
    blocked = [str(path) for path in places if not os.access(path, os.W_OK | os.X_OK)]
    if blocked:
        return Check("root", FAIL, f"not writable by uid {os.getuid()}: {', '.join(blocked)}")
    return Check("root", OK, f"{root} is writable")


def check_open_files() -> Check:
    """The open-file limit the server will have: it raises its soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    usable = soft if hard == resource.RLIM_INFINITY else max(soft, hard)
    shown = f"soft {soft}, hard {'unlimited' if hard == resource.RLIM_INFINITY else hard}"
    if usable < MIN_OPEN_FILES:
        return Check("open files", FAIL, f"{shown}: below the {MIN_OPEN_FILES} everos is proven to run in; raise "
                                         "it (ulimit -n, LimitNOFILE=)")
    if usable < COMFORTABLE_OPEN_FILES:
        return Check("open files", WARN, f"{shown}: enough, but little room; {COMFORTABLE_OPEN_FILES} or more "
                                         "is comfortable")
    return Check("open files", OK, f"{shown} (the server raises the soft limit to the hard one)")


def check_disk(root: Path, config: Config) -> Check:
    """Free space on the root's filesystem against what one upload needs (inbox + published)."""
    usage = shutil.disk_usage(root)
    needed = max(MIN_FREE_BYTES, 2 * config.knowledge.max_upload_bytes)
    shown = f"{_size(usage.free)} free of {_size(usage.total)}"
    if usage.free < needed:
        return Check("disk", FAIL, f"{shown}: below {_size(needed)}, uploads and indexing will fail")
    if usage.free < LOW_FREE_BYTES:
        return Check("disk", WARN, f"{shown}: low")
    return Check("disk", OK, shown)


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


async def check_server(root: Path, timeout_s: float) -> Check:
    """Who owns the root; a server that recorded its URL must answer ``/health`` in time."""
    from everos.client import ApiClient
    from everos.rootlock import reachable_url, read_lock_owner

    owner = read_lock_owner(root)
    if owner is None:
        return Check("server", OK, "none running on this root (the checks read its files)")
    if not owner.urls:
        return Check("server", OK, f"pid {owner.pid} ({owner.purpose or 'unknown'}) owns the root and serves no HTTP")
    url = reachable_url(owner.urls[0])
    try:
        async with ApiClient(url, timeout_s=timeout_s, max_retries=0) as client:
            health = (await client.request("GET", "/health")).json()
    except (CommandError, ValueError) as exc:
        detail = exc.message if isinstance(exc, CommandError) else "its /health answer is not JSON"
        return Check("server", FAIL, f"pid {owner.pid} owns the root but does not answer: {detail}")
    if health.get("healthy") is False:
        return Check("server", WARN, f"pid {owner.pid} at {url} is unhealthy: {'; '.join(health.get('reasons', []))}")
    if (cascade := health.get("cascade") or {}).get("lagging"):
        return Check("server", WARN, f"pid {owner.pid} at {url}: its index lags, {cascade.get('waiting_documents')} "
                                     "documents wait for their index, more than [cascade] lag_documents "
                                     f"({cascade.get('lag_documents')}); uploads are still accepted")
    return Check("server", OK, f"pid {owner.pid} at {url} answers /health: {health.get('state', 'ready')}")


# -- model endpoints ----------------------------------------------------------------------------------


async def check_endpoints(config: Config, timeout_s: float) -> list[Check]:
    """``[llm]``, ``[embedding]`` and ``[rerank]``, probed at once, each under ``timeout_s``."""
    import trio

    sections = (("llm", config.llm), ("embedding", config.embedding), ("rerank", config.rerank))
    results: list[Check | None] = [None] * len(sections)

    async def probe(index: int, kind: str, settings: Any) -> None:
        results[index] = await probe_endpoint(kind, settings, timeout_s)

    async with trio.open_nursery() as nursery:
        for index, (kind, settings) in enumerate(sections):
            nursery.start_soon(probe, index, kind, settings)
    return [result for result in results if result is not None]


async def probe_endpoint(kind: str, settings: Any, timeout_s: float) -> Check:
    """One endpoint's check: built-in ones are fine offline; an OpenAI-compatible one gets one
    request with no retry, within ``timeout_s`` (attempt and call deadline)."""
    import trio

    from everos.providers import ProviderError

    if settings.provider in ("builtin", "none"):
        return Check(kind, OK, _builtin_description(kind, settings))
    probing = dataclasses.replace(settings, timeout_seconds=min(settings.timeout_seconds, timeout_s),
                                  call_deadline_seconds=timeout_s, max_retries=0)
    try:
        client = _probe_client(kind, probing)
    except ConfigError as exc:
        return Check(kind, FAIL, exc.message)
    try:
        with trio.move_on_after(timeout_s + PROBE_GRACE_S):
            return await _probe(kind, client, settings)
        return Check(kind, FAIL, f"{client.base_url}: no answer within {timeout_s:g} s")
    except ProviderError as exc:
        return Check(kind, FAIL, exc.message)
    finally:
        await client.aclose()


def _builtin_description(kind: str, settings: Any) -> str:
    if kind == "llm":
        return "built-in extractor (no model, no network)"
    if kind == "embedding":
        return f"built-in embedder, dim {settings.dim} (no network)"
    return "none configured"


def _probe_client(kind: str, settings: Any) -> Any:
    """The client a probe uses: the real provider client, with one extra request it needs.

    Raises:
        ConfigError: the endpoint has no ``base_url``.
    """
    from everos.providers import ChatClient, EmbeddingClient, RerankClient, parse_embeddings
    from everos.providers import ProviderHTTPError, ProviderResponseError

    class ModelListing(ChatClient):
        async def model_ids(self) -> list[str]:
            """The ids ``GET {base_url}/models`` lists (one attempt under the policy)."""
            async def attempt() -> list[str]:
                response = await self._http.get(self.base_url + "/models")
                if not 200 <= response.status_code < 300:
                    raise ProviderHTTPError(self.endpoint, response.status_code,
                                            body_excerpt=" ".join(response.text.split())[:200])
                try:
                    return [str(model["id"]) for model in response.json()["data"]]
                except (ValueError, KeyError, TypeError):
                    raise ProviderResponseError(self.endpoint, "GET /models answered no data list") from None

            return await self.policy.call(attempt, budget="interactive")

    class DimensionProbe(EmbeddingClient):
        async def native_dimension(self) -> int:
            """The width of the model's vectors, from one embedding of ``"ping"``."""
            def width(answer: Any) -> int:
                parse_embeddings(answer, expected_count=1, dim=1)  # the shape the index reads
                return len(answer["data"][0]["embedding"])

            body = self._body({"input": ["ping"], "encoding_format": "float"})
            return await self.policy.call(lambda: self._post("/embeddings", body, width), budget="interactive")

    return {"llm": ModelListing, "embedding": DimensionProbe, "rerank": RerankClient}[kind](settings)


async def _probe(kind: str, client: Any, settings: Any) -> Check:
    """The one request of ``kind``'s probe, and what its answer says.

    Raises:
        ProviderError: the endpoint failed, timed out or answered unusably.
    """
    from everos.providers import ProviderHTTPError

    named = f"{client.base_url} model {settings.model or '(none)'}"
    if kind == "llm":
        try:
            ids = await client.model_ids()
        except ProviderHTTPError as exc:
            if exc.status != 404:
                raise
            return Check(kind, WARN, f"{named}: answers, but has no GET /models to confirm the model")
        if settings.model and settings.model not in ids:
            return Check(kind, WARN, f"{named}: answers, but lists only {', '.join(ids[:5]) or 'no models'}")
        return Check(kind, OK, f"{named}: answers and lists the model")
    if kind == "embedding":
        width = await client.native_dimension()
        if width < settings.dim:
            return Check(kind, FAIL, f"{named}: {width}-dimensional vectors but [embedding] dim = {settings.dim}; set "
                                     f"dim to {width} (and run `everos cascade rebuild`) or use a wider model")
        cut = f", cut to dim {settings.dim}" if width > settings.dim else f" = [embedding] dim"
        return Check(kind, OK, f"{named}: {width}-dimensional vectors{cut}")
    await client.rerank("ping", ["ping"], budget="interactive")
    return Check(kind, OK, f"{named}: reranks")


# -- the index ---------------------------------------------------------------------------------------


async def check_index(root: Path, config: Config) -> list[Check]:
    """Index consistency by counts, then every failure with its error (see the module)."""
    import trio

    from everos.cascade._service import DATABASE_RELPATH
    from everos.cascade._snapshot import walk_document_dirs

    walked = await trio.to_thread.run_sync(walk_document_dirs, root, abandon_on_cancel=True)
    on_disk = sum(1 for stat in walked.values() if stat is not None)
    path = root / DATABASE_RELPATH
    if not path.is_file():
        if on_disk:
            return [Check("index", FAIL, f"{on_disk} document directories but no index database ({path}); start the "
                                         "server, or run `everos cascade rebuild`")]
        return [Check("index", OK, "no documents yet")]
    try:
        facts = await _read_index(path, config)
    except (sqlite3.Error, StoreBusy) as exc:
        message = exc.message if isinstance(exc, StoreBusy) else f"{exc.__class__.__name__}: {exc}"
        return [Check("index", FAIL, f"cannot read {path}: {message}")]
    return [index_consistency(on_disk, facts), *failure_checks(facts)]


async def _read_index(path: Path, config: Config) -> dict[str, Any]:
    """Counts and failures from SQLite, read only: the :class:`Database` is constructed, not
    opened, so no migration runs and no file is created (the caller checked it exists).

    Raises:
        StoreBusy: a read missed ``[sqlite] call_timeout_seconds``.
        sqlite3.Error: the file is not an everos index (a table is missing).
    """
    import trio

    from everos.cascade import _state as state
    from everos.cascade._worker import QUEUE_TABLE
    from everos.ingest import INGEST_TABLE
    from everos.store import Database, JobStatus, LeasedQueue

    db = Database(path, config.sqlite, trio.CapacityLimiter(1))
    try:
        documents = await db.read(lambda conn: conn.execute("SELECT count(*) FROM knowledge_documents").fetchone()[0])
        index_states = await db.read(state.state_counts)
        failures = await db.read(state.recent_failures, MAX_LISTED)
        rows = LeasedQueue(db, QUEUE_TABLE, max_attempts=config.cascade.max_attempts)
        jobs = LeasedQueue(db, INGEST_TABLE, max_attempts=config.ingest.max_attempts)
        ended = (JobStatus.DEAD, JobStatus.FAILED)
        return {
            "documents": documents, "index_states": index_states, "failures": failures,
            "queued_rows": (await rows.stats()).pending,
            "dead_rows": [job for status in ended for job in await rows.list(status, limit=MAX_LISTED)],
            "dead_tasks": [job for status in ended for job in await jobs.list(status, limit=MAX_LISTED)],
        }
    finally:
        await db.aclose()


def index_consistency(on_disk: int, facts: dict[str, Any]) -> Check:
    """The counts agree (✔), the cascade still has work queued (⚠), or they disagree (✖). Pure.

    They agree when every document directory is indexed or failed (failures are listed on their
    own lines) and SQLite holds a document for each indexed one and none beyond the directories
    (a document that never indexed has no row; one that failed after indexing keeps its old one)."""
    states = facts["index_states"]
    shown = (f"documents: {on_disk} on disk, {facts['documents']} in SQLite, {states['indexed']} indexed, "
             f"{states['pending']} pending, {states['failed']} failed")
    if states["pending"] or facts["queued_rows"]:
        return Check("index", WARN, f"{shown}: the cascade is catching up (a server indexes them; without one, "
                                    "`everos cascade sync`)")
    if on_disk == states["indexed"] + states["failed"] and states["indexed"] <= facts["documents"] <= on_disk:
        return Check("index", OK, shown)
    return Check("index", FAIL, f"{shown}: the index does not match the markdown; run `everos cascade sync` "
                                "(or `everos cascade rebuild`)")


def failure_checks(facts: dict[str, Any]) -> list[Check]:
    """One ✖ per failed document, dead index row and dead or failed ingest task, with its error
    and the command that fixes it; one ✔ when there is none. Pure."""
    checks = [Check("failed document", FAIL, f"{f['doc_dir']}: {f['error']} (fix the file, or `everos cascade fix "
                                             "--apply`)") for f in facts["failures"]]
    listed = {f["doc_dir"] for f in facts["failures"]}
    checks += [Check("dead index row", FAIL, f"{job.key}: {job.last_error} (`everos cascade fix --apply`)")
               for job in facts["dead_rows"] if job.key not in listed]
    checks += [Check(f"{job.status} task", FAIL, f"{job.id} (document {(job.payload or {}).get('doc_id')}): "
                                                 f"{job.last_error} (`everos tasks retry {job.id}`)")
               for job in facts["dead_tasks"]]
    unlisted = facts["index_states"]["failed"] - len(facts["failures"])
    if unlisted > 0:
        checks.append(Check("failed document", FAIL, f"… and {unlisted} more (`everos cascade fix` lists them all)"))
    return checks or [Check("failures", OK, "no failed documents, dead index rows or dead ingest tasks")]
