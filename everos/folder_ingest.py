"""Uploading files and folders through the HTTP API: the machinery of ``everos ingest``
(:mod:`everos.ingest_cli` has the command line and its contract).

::

    discover()          paths, --include/--exclude -> the files, each once
    Manifest            append-only JSON lines (fsync per line): what the server acknowledged
    Uploader            resumable() skips acknowledged, unchanged files; send_all() with N in flight
    settle_all()        poll tasks (202) and documents until extracted and indexed, in upload order
    in_process_server() a full server on 127.0.0.1:0 when no server owns the root
    summarize()         outcomes per file -> the summary (table or JSON)

Pure parts (``wanted``, ``idempotency_key``, ``outcome``, ``final_outcome``, ``summarize``,
``render_summary``, ``manifest_path``) are tested without a server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import functools
import hashlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

import trio
from tqdm import tqdm

from everos.client import ApiClient, ApiError, server_base_url
from everos.config import load_config, resolve_root
from everos.errors import CommandError, ExitCode
from everos.knowledge import validate_app_id, validate_project_id
from everos.knowledge._formats import ACCEPTED_SUFFIXES, media_type_for
from everos.rootlock import reachable_url, read_lock_owner

__all__ = ["FileRecord", "IngestOptions", "Manifest", "Progress", "Uploader", "discover", "form_fields",
           "idempotency_key", "in_process_server", "ingest_command", "render_summary", "settle_all", "summarize",
           "wanted"]

DOCUMENTS_PATH = "/api/v1/knowledge/documents"
TASKS_PATH = "/api/v1/knowledge/tasks"
MANIFEST_RELPATH = (".index", "ingest")
ACKNOWLEDGED = frozenset({"created", "duplicate", "accepted"})
TASK_RUNNING = frozenset({"queued", "running"})
TASK_FAILED = frozenset({"failed", "dead"})
# 429/503 retries per upload (each after Retry-After, at most 60 s): minutes of backpressure.
UPLOAD_RETRIES = 20
POLL_INTERVAL_S = 0.25
PLAIN_EVERY_S = 5.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class IngestOptions:
    """What ``everos ingest`` was asked to do, beyond the files (the flags' defaults are in
    :mod:`everos.ingest_cli`)."""

    paths: tuple[str, ...]  # the PATH arguments as given: they name the manifest
    root: str | None
    url: str | None
    form: dict[str, str]
    concurrency: int
    wait: bool
    wait_timeout_s: float


def form_fields(app_id: str | None, project_id: str | None, category_id: str | None) -> dict[str, str]:
    """The form fields every upload carries, validated once here rather than refused per file.

    Raises:
        InvalidInput: a malformed scope id.
    """
    form = {}
    if app_id is not None:
        form["app_id"] = validate_app_id(app_id)
    if project_id is not None:
        form["project_id"] = validate_project_id(project_id)
    if category_id:
        form["category_id"] = category_id
    return form


# -- which files ---------------------------------------------------------------------------------


def discover(paths: Sequence[str], include: Sequence[str], exclude: Sequence[str]) -> list[Path]:
    """The files to ingest, absolute, each once, in command-line order then sorted within folders.

    Raises:
        CommandError: a path does not exist, or no file matched (``NOT_FOUND``).
    """
    found: dict[Path, None] = {}
    for given in paths:
        path = Path(given).expanduser().absolute()
        if path.is_dir():
            found.update(dict.fromkeys(_walk(path, include, exclude)))
        elif path.exists():
            found[path] = None
        else:
            raise CommandError(f"{given}: no such file or directory", exit_code=ExitCode.NOT_FOUND)
    if not found:
        raise CommandError(f"no file to ingest in {' '.join(paths)} (accepted in folders: "
                           f"{', '.join(ACCEPTED_SUFFIXES)}; see --include/--exclude)",
                           exit_code=ExitCode.NOT_FOUND)
    return list(found)


def _walk(folder: Path, include: Sequence[str], exclude: Sequence[str]) -> Iterable[Path]:
    for directory, subdirs, names in os.walk(folder):
        here = Path(directory)
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".")
                            and not _matches(_relative(here / d, folder), exclude))
        for name in sorted(names):
            relative = _relative(here / name, folder)
            if wanted(relative, include, exclude):
                yield here / name


def _relative(path: Path, folder: Path) -> PurePosixPath:
    return PurePosixPath(path.relative_to(folder).as_posix())


def wanted(relative: PurePosixPath, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Whether a file at ``relative`` (below a folder given) is ingested. Pure."""
    if relative.name.startswith(".") or relative.suffix.lower() not in ACCEPTED_SUFFIXES:
        return False
    if include and not _matches(relative, include):
        return False
    return not _matches(relative, exclude)


def _matches(relative: PurePosixPath, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(str(relative) if "/" in p else relative.name, p.strip("/")) for p in patterns)


# -- the manifest --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FileRecord:
    """One file's state as the manifest keeps it. ``status``: ``created``, ``duplicate``,
    ``accepted`` (202, extraction pending) or ``failed``; ``index_status`` as the server says."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    status: str
    doc_id: str | None = None
    task_id: str | None = None
    index_status: str | None = None
    reason: str | None = None

    def same_file(self, stat: os.stat_result) -> bool:
        return (self.size, self.mtime_ns) == (stat.st_size, stat.st_mtime_ns)


class Manifest:
    """An append-only JSON-lines file of :class:`FileRecord`; the last line for a path wins.

    Each :meth:`append` is written and fsynced before it returns (in a thread; not cancellable
    once started, so a record is never half-written by a cancel). A line torn by a crash is
    ignored when the file is read again.
    """

    def __init__(self, path: Path, records: dict[str, FileRecord]) -> None:
        self.path = path
        self.records = records
        self._lock = trio.Lock()
        self._limiter = trio.CapacityLimiter(1)

    @classmethod
    async def open(cls, path: Path) -> Manifest:
        """Read the manifest at ``path`` (creating its folder)."""
        return cls(path, await trio.to_thread.run_sync(_read_records, path))

    async def append(self, record: FileRecord) -> None:
        line = json.dumps(dataclasses.asdict(record), ensure_ascii=False) + "\n"
        async with self._lock:
            await trio.to_thread.run_sync(_append_line, self.path, line, limiter=self._limiter)
            self.records[record.path] = record


def _read_records(path: Path) -> dict[str, FileRecord]:
    path.parent.mkdir(parents=True, exist_ok=True)
    records: dict[str, FileRecord] = {}
    with contextlib.suppress(FileNotFoundError), path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                record = FileRecord(**json.loads(line))
            except (ValueError, TypeError):
                continue  # torn by a crash mid-write, or not ours
            records[record.path] = record
    return records


def _append_line(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def manifest_path(folder: Path, target: str, form: dict[str, str], paths: Sequence[str]) -> Path:
    """The manifest of one ingest: ``folder/<hash of the target, the form fields and the PATH
    arguments, made absolute>.jsonl``; files added to a folder later resume with the rest."""
    inputs = sorted(str(Path(path).expanduser().absolute()) for path in paths)
    identity = json.dumps([target, sorted(form.items()), inputs])
    return folder / f"{hashlib.sha256(identity.encode()).hexdigest()[:20]}.jsonl"


def _manifest_folder(options: IngestOptions, root: Path) -> Path:
    if options.url and not options.root:
        state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
        return state / "everos" / "ingest"
    return root.joinpath(*MANIFEST_RELPATH)


# -- progress ------------------------------------------------------------------------------------


class Progress:
    """Progress of ``total`` steps on ``stream``: a tqdm bar (rate, ETA) when ``stream`` is a
    terminal, else a plain line (no carriage return) every tenth of ``total`` or every
    ``every_s`` seconds, and one at the end."""

    def __init__(self, label: str, total: int, stream: TextIO, *, every_s: float = PLAIN_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.total, self.stream = label, total, stream
        self.done = self.failed = 0
        self._clock, self._every_s = clock, every_s
        self._started = self._last_line = clock()
        self._every_n = max(1, -(-total // 10))  # a tenth, rounded up
        self._bar = None
        if stream.isatty():
            self._bar = tqdm(total=total, desc=label, unit="file", file=stream, dynamic_ncols=True, leave=True)

    def advance(self, *, failed: bool = False) -> None:
        """One step done. Not a checkpoint."""
        self.done += 1
        self.failed += failed
        if self._bar is not None:
            self._bar.update(1)
            if failed:
                self._bar.set_postfix(failed=self.failed, refresh=False)
        elif self.done % self._every_n == 0 or self.done == self.total \
                or self._clock() - self._last_line >= self._every_s:
            self._line()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.done % self._every_n and self.done != self.total:
            self._line()

    def _line(self) -> None:
        now = self._clock()
        self._last_line = now
        elapsed = max(now - self._started, 1e-9)
        rate = self.done / elapsed
        eta = tqdm.format_interval((self.total - self.done) / rate) if rate else "?"
        percent = 100 * self.done // max(self.total, 1)
        print(f"everos {self.label}: {self.done}/{self.total} files ({percent}%), {rate:.1f} files/s, ETA {eta}, "
              f"{self.failed} failed", file=self.stream, flush=True)


# -- uploading -----------------------------------------------------------------------------------


def idempotency_key(content_sha256: str, form: dict[str, str]) -> str:
    """The ``Idempotency-Key`` of an upload: SHA-256 of the content hash and the form fields. Pure."""
    return hashlib.sha256(json.dumps([content_sha256, sorted(form.items())]).encode()).hexdigest()


def _title(path: Path) -> str:
    return path.stem or path.name


def _read(path: Path) -> tuple[bytes, os.stat_result, str]:
    stat = path.stat()
    data = path.read_bytes()
    return data, stat, hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(functools.partial(handle.read, 1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def outcome(response: Any) -> tuple[str, dict[str, Any], str | None]:
    """``(status, data, reason)`` of an upload's answer: 201 created, 200 duplicate (or a replayed
    200), 202 accepted, anything else failed with the server's one-line reason. Pure."""
    if response.status_code in (200, 201, 202):
        try:
            data = response.json()["data"]
        except (ValueError, KeyError, TypeError):
            return "failed", {}, f"{response.status_code}: the answer is not an EverOS envelope"
        if response.status_code == 202:
            return "accepted", data, None
        return ("duplicate" if data.get("duplicate") else "created"), data, None
    return "failed", {}, ApiError.from_response(response).message


class Uploader:
    """Sends files with at most ``concurrency`` uploads in flight, recording each answer."""

    def __init__(self, client: ApiClient, manifest: Manifest, form: dict[str, str], *, concurrency: int,
                 respond_async: bool) -> None:
        self.client, self.manifest, self.form = client, manifest, form
        self.concurrency = concurrency
        self.headers = {"Prefer": "respond-async"} if respond_async else {}
        self._in_flight: dict[str, trio.Event] = {}
        self._files_limiter = trio.CapacityLimiter(concurrency)

    async def resumable(self, files: Sequence[Path]) -> tuple[list[FileRecord], list[Path]]:
        """Split ``files`` into those the manifest has acknowledged, unchanged, and those to send."""
        resumed, to_send = [], []
        for path in files:
            known = self.manifest.records.get(str(path))
            stat = await trio.to_thread.run_sync(path.stat, limiter=self._files_limiter)
            if known is not None and known.status in ACKNOWLEDGED and known.same_file(stat) \
                    and await trio.to_thread.run_sync(_sha256_file, path, limiter=self._files_limiter) == known.sha256:
                resumed.append(known)
            else:
                to_send.append(path)
        return resumed, to_send

    async def send_all(self, files: Sequence[Path], stream: TextIO) -> list[FileRecord]:
        """Upload ``files``, with progress on ``stream``; every answer is in the manifest before it
        counts. Returns the records in the order of ``files``."""
        if not files:
            return []
        records: dict[Path, FileRecord] = {}
        progress = Progress("ingest", len(files), stream)
        send, receive = trio.open_memory_channel[Path](0)

        async def worker(paths: trio.MemoryReceiveChannel[Path]) -> None:
            async with paths:
                async for path in paths:
                    record = await self.send_one(path)
                    await self.manifest.append(record)
                    records[path] = record
                    progress.advance(failed=record.status == "failed")

        try:
            async with trio.open_nursery() as nursery:
                async with send, receive:
                    for _ in range(self.concurrency):
                        nursery.start_soon(worker, receive.clone())
                    for path in files:
                        await send.send(path)
        finally:
            progress.close()
        return [records[path] for path in files]

    async def send_one(self, path: Path) -> FileRecord:
        """Upload one file and return its record (``failed`` with a reason when it was refused or
        cannot be read).

        Raises:
            CommandError: the server cannot be reached (``UNREACHABLE``).
        """
        try:
            data, stat, sha256 = await trio.to_thread.run_sync(_read, path, limiter=self._files_limiter)
        except OSError as exc:
            return FileRecord(str(path), 0, 0, "", "failed", reason=f"cannot read: {exc.strerror or exc}")
        record = FileRecord(str(path), stat.st_size, stat.st_mtime_ns, sha256, "failed")
        form = {"title": _title(path), **self.form}
        # The same bytes twice in one run: the second waits, so it meets the first's dedupe.
        while (earlier := self._in_flight.get(sha256)) is not None:
            await earlier.wait()
        self._in_flight[sha256] = done = trio.Event()
        try:
            response = await self.client.request(
                "POST", DOCUMENTS_PATH, data=form, files={"file": (path.name, data, media_type_for(path.name))},
                headers={"Idempotency-Key": idempotency_key(sha256, {"filename": path.name, **form}), **self.headers})
        finally:
            del self._in_flight[sha256]
            done.set()
        status, answer, reason = outcome(response)
        return dataclasses.replace(record, status=status, doc_id=answer.get("doc_id"), task_id=answer.get("task_id"),
                                   reason=reason)


# -- waiting for extraction and indexing ---------------------------------------------------------


async def settle(client: ApiClient, record: FileRecord) -> FileRecord:
    """Wait until ``record``'s extraction has ended and its document is indexed (or failed);
    return the record as it then is. Polls every ``POLL_INTERVAL_S``; cancel it to stop waiting.

    Raises:
        CommandError: the server cannot be reached (``UNREACHABLE``).
    """
    try:
        if record.status == "accepted":
            task = await _poll(client, f"{TASKS_PATH}/{record.task_id}", lambda t: t["status"] not in TASK_RUNNING)
            if task["status"] in TASK_FAILED:
                return dataclasses.replace(record, status="failed", reason=f"extraction {task['status']}: "
                                                                           f"{task.get('last_error')}")
            record = dataclasses.replace(record, status="created", doc_id=task.get("doc_id") or record.doc_id)
        document = await _poll(client, f"{DOCUMENTS_PATH}/{record.doc_id}",
                               lambda d: d.get("index_status") != "pending")
    except ApiError as exc:
        return dataclasses.replace(record, status="failed", reason=exc.message)
    index_status = document.get("index_status") or "unknown"  # a server without a cascade says None
    reason = f"index failed: {document.get('index_error')}" if index_status == "failed" else None
    return dataclasses.replace(record, index_status=index_status, reason=reason)


async def _poll(client: ApiClient, path: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    while not done(answer := await client.data("GET", path)):
        await trio.sleep(POLL_INTERVAL_S)
    return answer


def _needs_settling(record: FileRecord) -> bool:
    return record.status in ACKNOWLEDGED and record.index_status not in ("indexed", "unknown")


async def settle_all(client: ApiClient, manifest: Manifest, records: list[FileRecord], timeout_s: float,
                     stream: TextIO) -> list[FileRecord]:
    """Settle every acknowledged record not yet indexed, in upload order (the server works
    roughly in that order, so each poll mostly finds its document done), for at most
    ``timeout_s``; the ones left are returned as they were. Each settled record is appended to the
    manifest, so a rerun does not ask again."""
    pending = [r for r in records if _needs_settling(r)]
    settled = {r.path: r for r in records}
    if not pending:
        return records
    progress = Progress("index", len(pending), stream)
    with trio.move_on_after(timeout_s):
        for record in pending:
            settled[record.path] = done = await settle(client, record)
            await manifest.append(done)
            progress.advance(failed=final_outcome(done, waited=True) == "failed")
    progress.close()
    return [settled[r.path] for r in records]


# -- the command ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def in_process_server(root: Path) -> AsyncIterator[str]:
    """A full server for ``root`` in this process on 127.0.0.1, port 0; yields its base URL and
    stops it in an orderly way on exit (queued work stays durable for the next server).

    Raises:
        RootLocked: another process owns the root.
        ConfigError: the root has no valid ``everos.toml``.
    """
    from everos.runtime import Runtime
    from everos.server import serve
    from everos.services import open_services

    loaded = load_config(root, overrides={("api", "host"): "127.0.0.1", ("api", "port"): 0})
    runtimes: list[Runtime] = []
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(functools.partial(serve, loaded, services=open_services,
                                                      runtime_ready=runtimes.append))
        try:
            yield reachable_url(binds[0])
        finally:
            runtimes[0].request_stop()


@contextlib.asynccontextmanager
async def _server(root: Path, url: str | None) -> AsyncIterator[tuple[str, bool]]:
    """``(base URL, in process)``: ``url``, else the root's owner, else a server of our own."""
    if url or read_lock_owner(root) is not None:
        yield server_base_url(root, url), False
    else:
        async with in_process_server(root) as base_url:
            yield base_url, True


async def ingest_command(files: list[Path], options: IngestOptions) -> dict[str, Any]:
    """Ingest ``files`` as ``options`` say; return the summary (:func:`summarize`). Progress and
    notes go to stderr.

    Raises:
        CommandError: the server cannot be reached (``UNREACHABLE``); what was acknowledged
            until then is in the manifest, so a rerun resumes.
        RootLocked, ConfigError: see :func:`in_process_server`.
    """
    started = time.monotonic()
    root = resolve_root(options.root)
    target = f"url:{options.url.rstrip('/')}" if options.url else f"root:{root.absolute()}"
    manifest = await Manifest.open(manifest_path(_manifest_folder(options, root), target, options.form, options.paths))
    async with _server(root, options.url) as (base_url, in_process), \
            ApiClient(base_url, max_retries=UPLOAD_RETRIES, max_connections=options.concurrency + 1) as client:
        uploader = Uploader(client, manifest, options.form, concurrency=options.concurrency,
                            respond_async=not options.wait)
        resumed, to_send = await uploader.resumable(files)
        if resumed:
            print(f"everos ingest: resuming: {len(resumed)} of {len(files)} files already acknowledged "
                  f"(manifest {manifest.path})", file=sys.stderr)
        sent = await uploader.send_all(to_send, sys.stderr)
        upload_s = time.monotonic() - started
        records = resumed + sent
        if options.wait:
            records = await settle_all(client, manifest, records, options.wait_timeout_s, sys.stderr)
        elif in_process and any(r.status == "accepted" for r in records):
            print("everos ingest: accepted documents stay queued; a server on this root extracts and indexes "
                  "them when it next runs", file=sys.stderr)
    return summarize(records, resumed={r.path for r in resumed}, waited=options.wait, server=base_url,
                     manifest=manifest.path, upload_s=upload_s, total_s=time.monotonic() - started)


# -- the summary ---------------------------------------------------------------------------------

OUTCOMES = ("created", "duplicate", "accepted", "pending", "failed")


def final_outcome(record: FileRecord, waited: bool) -> str:
    """What a file counts as in the summary. Pure."""
    if record.status == "failed" or record.index_status == "failed":
        return "failed"
    if waited and _needs_settling(record):
        return "pending"  # not done within --wait-timeout
    return record.status


def summarize(records: list[FileRecord], *, resumed: set[str], waited: bool, server: str, manifest: Path,
              upload_s: float, total_s: float) -> dict[str, Any]:
    """The command's summary as plain data (what ``--json`` prints). Pure."""
    outcomes = [final_outcome(r, waited) for r in records]
    counts = {name: outcomes.count(name) for name in OUTCOMES}
    sent = len(records) - len(resumed)
    return {
        "ok": counts["failed"] == 0 and counts["pending"] == 0,
        "files": len(records), **counts, "resumed": len(resumed), "sent": sent,
        "indexed": sum(r.index_status == "indexed" for r in records),
        "upload_seconds": round(upload_s, 3), "total_seconds": round(total_s, 3),
        "upload_files_per_s": round(sent / upload_s, 1) if upload_s > 0 else None,
        "server": server, "manifest": str(manifest),
        "failures": [{"path": r.path, "reason": r.reason or "not indexed within --wait-timeout"}
                     for r, o in zip(records, outcomes) if o in ("failed", "pending")],
        "documents": [{"path": r.path, "outcome": o, "doc_id": r.doc_id, "index_status": r.index_status}
                      for r, o in zip(records, outcomes)],
    }


def render_summary(summary: dict[str, Any]) -> str:
    """The summary as a plain table: files per outcome, then each failure with its reason. Pure."""
    rows = [(name, summary[name]) for name in OUTCOMES if summary[name]]
    rows += [("resumed", summary["resumed"]), ("indexed", summary["indexed"])]
    width = max(len(name) for name, _ in rows)
    lines = [f"everos ingest: {summary['files']} files -> {summary['server']} in {summary['total_seconds']:.1f} s",
             f"{'outcome'.ljust(width)}  files"]
    lines += [f"{name.ljust(width)}  {count:>5}" for name, count in rows]
    if summary["failures"]:
        lines.append("failed:")
        lines += [f"  {failure['path']}: {failure['reason']}" for failure in summary["failures"]]
    return "\n".join(lines)
