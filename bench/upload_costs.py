"""What one upload costs the server: wall time, and its fsyncs and where they come from (issue #17
item 6).

Starts ``everos server start`` on a fresh temporary root (loopback, a free port; the built-in
extractor, and the hashing embedder: the default e5 would measure the model), optionally under
``strace -f -ttt -y`` tracing the calls that force data to disk (``fsync``, ``fdatasync``,
``syncfs``, ``sync_file_range``, ``msync``; the server's Python, SQLite's and LanceDB's alike, in
every thread and child process). Then it uploads ``--uploads`` markdown documents of about
``--size`` bytes (``## Section n`` after ``## Section n``, each distinct), one at a time: each is
sent, acknowledged (201), indexed (``index_status`` ``indexed``) and left ``--quiet`` seconds (the
watcher's debounce and whatever the writer does after) before the next one is sent. A first small
upload makes the category directory and warms the server; it is not counted.

Each upload's window runs from its sending to the next one's; the fsyncs traced in it are that
upload's, counted by call and by what they synced (``inbox``, ``staging`` files and directories,
``knowledge`` directories, ``sqlite``, ``lancedb``, ``other``); ``until_ack`` counts those before
its 201. Times per upload (without ``--strace``, which slows every call it traces): ``ack_ms`` (send
to 201) and ``indexed_ms`` (send to ``indexed``), median and max.

Prints one JSON object on stdout; progress goes to stderr. The root and the server are removed and
stopped at the end.

    python bench/upload_costs.py [--uploads 10] [--size 80000] [--quiet 1.5] [--strace] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import trio

from everos.config import Config, render_template
from everos.testing.replay import free_port
from everos.testing.replay._server import settings_env

API = "/api/v1/knowledge"
SYNC_CALLS = ("fsync", "fdatasync", "syncfs", "sync_file_range", "msync")
# "1234 1733580000.123456 fsync(7<ROOT/.index/inbox/x.bin>) = 0" (or "<unfinished ...>")
_TRACE_LINE = re.compile(r"^(?:\[pid\s+)?(\d+)\]?\s+(\d+\.\d+)\s+(" + "|".join(SYNC_CALLS) + r")\((\d+)(?:<([^>]*)>)?")


def log(message: str) -> None:
    print(f"[upload_costs {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def document(number: int, size: int) -> bytes:
    parts, n = [f"# Notes {number}\n\n"], 0
    while sum(map(len, parts)) < size:
        n += 1
        parts.append(f"## Section {n} of notes {number}\n\n"
                     + " ".join(f"Sentence {i} of section {n} in notes {number} is about topic {n % 7}."
                                for i in range(12)) + "\n\n")
    return "".join(parts).encode()


def kind_of(path: str, root: Path) -> str:
    """What a synced file or directory is, by its place under the root."""
    try:
        relative = Path(path).relative_to(root)
    except ValueError:
        return "other"
    parts = relative.parts
    if parts[:2] == (".index", "inbox"):
        return "inbox"
    if parts[:2] == (".index", "sqlite"):
        return "sqlite"
    if parts[:1] == (".index",) and "lancedb" in relative.as_posix():
        return "lancedb"
    if parts[:1] == (".tmp",):
        return "staging directory" if len(parts) <= 2 or Path(path).is_dir() else "staging file"
    return "knowledge" if parts else "root"


@dataclasses.dataclass
class Sample:
    sent: float
    acked: float
    indexed: float


async def wait_ready(url: str, process: trio.Process, timeout_s: float) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=1) as client:
        with trio.fail_after(timeout_s):
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"the server exited at start ({process.returncode})")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/readyz")).status_code == 200:
                        return
                await trio.sleep(0.1)


async def upload(client: httpx.AsyncClient, name: str, body: bytes, title: str) -> Sample:
    sent = time.time()
    response = await client.post(f"{API}/documents", files={"file": (name, body, "text/markdown")},
                                 data={"title": title, "category_id": "Technology"})
    if response.status_code != 201:
        raise RuntimeError(f"uploading {name}: {response.status_code} {response.text[:300]}")
    acked = time.time()
    doc_id = response.json()["data"]["doc_id"]
    with trio.fail_after(120):
        while (await client.get(f"{API}/documents/{doc_id}")).json()["data"].get("index_status") != "indexed":
            await trio.sleep(0.02)
    return Sample(sent, acked, time.time())


def server_pids(pid: int, traced: bool) -> list[int]:
    """The server's pid: the process started, or under strace its child."""
    if not traced:
        return [pid]
    with contextlib.suppress(OSError):
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [pid]


def read_trace(path: Path, root: Path) -> list[tuple[float, str, str]]:
    events = []
    for line in path.read_text(errors="replace").splitlines():
        match = _TRACE_LINE.match(line)
        if match:
            events.append((float(match[2]), match[3], kind_of(match[5] or "", root)))
    return events


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 1), "max": round(max(values), 1)} if values else {}


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    root = workdir / "root"
    root.mkdir()
    config = Config()
    config = dataclasses.replace(config, embedding=dataclasses.replace(config.embedding, model="hashing"))
    (root / "everos.toml").write_text(render_template(config), encoding="utf-8")
    root = root.resolve()
    trace = workdir / "strace.txt"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "everos.cli", "server", "start", "--root", str(root), "--port", str(port),
               "--log-level", "WARNING"]
    if args.strace:
        command = ["strace", "-f", "-ttt", "-y", "-e", "trace=" + ",".join(SYNC_CALLS), "-o", str(trace), *command]
    with open(workdir / "server.log", "ab") as log_file:
        process = await trio.lowlevel.open_process(command, env=settings_env({}), stdout=log_file, stderr=log_file)
    samples: list[Sample] = []
    try:
        await wait_ready(url, process, 120)
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            await upload(client, "warm.md", b"# Warm\n\nA first note.\n", "Warm")
            await trio.sleep(args.quiet)
            for number in range(args.uploads):
                samples.append(await upload(client, f"notes-{number}.md", document(number, args.size), f"Notes {number}"))
                await trio.sleep(args.quiet)
                log(f"upload {number + 1}/{args.uploads}: ack {1000 * (samples[-1].acked - samples[-1].sent):.0f} ms")
        end = time.time()
    finally:
        with trio.CancelScope(shield=True):
            if process.poll() is None:
                for pid in server_pids(process.pid, args.strace):  # strace passes on no SIGINT
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGINT)
                with trio.move_on_after(60):
                    await process.wait()
                if process.poll() is None:
                    process.kill()
                    await process.wait()
        if args.keep:
            log(f"kept {workdir}")
    result: dict[str, Any] = {
        "uploads": args.uploads, "size_bytes": len(document(0, args.size)),
        "published_files": sum(1 for p in root.glob("*/*/knowledge/Technology/Notes_0_*/**/*") if p.is_file()),
        "ack_ms": spread([1000 * (s.acked - s.sent) for s in samples]),
        "indexed_ms": spread([1000 * (s.indexed - s.sent) for s in samples]),
    }
    if args.strace:
        events = read_trace(trace, root)
        bounds = [s.sent for s in samples] + [end]
        per_upload: list[Counter[str]] = []
        until_ack: list[int] = []
        for i, sample in enumerate(samples):
            window = [e for e in events if bounds[i] <= e[0] < bounds[i + 1]]
            per_upload.append(Counter(f"{call} {kind}" for _, call, kind in window))
            until_ack.append(sum(1 for e in window if e[0] < sample.acked))
        totals = [sum(c.values()) for c in per_upload]
        result["sync_calls_per_upload"] = {
            "total": spread([float(t) for t in totals]),
            "until_ack": spread([float(t) for t in until_ack]),
            "by_call_and_what": {k: round(v / len(per_upload), 1)
                                 for k, v in sum(per_upload, Counter()).most_common()},
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=10)
    parser.add_argument("--size", type=int, default=80_000, help="bytes per document (about)")
    parser.add_argument("--quiet", type=float, default=1.5, help="seconds left idle after each upload is indexed")
    parser.add_argument("--strace", action="store_true", help="count fsync-like calls with strace -f")
    parser.add_argument("--keep", action="store_true", help="keep the temporary root and the trace")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="everos-upload-costs-"))
    try:
        print(json.dumps(trio.run(run, args, workdir), indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
