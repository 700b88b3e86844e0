"""``everos ingest`` of a folder against a plain sequential upload loop, in the same run.

Writes ``--files`` markdown files of ``--size`` bytes each (distinct contents), then, each against
its own fresh root and its own ``everos server start`` subprocess on a loopback port:

- ``sequential_loop``: one ``POST /api/v1/knowledge/documents`` after another (no retries, no
  manifest), then a wait until every document is indexed;
- ``everos_ingest``: ``everos ingest FOLDER --url URL --json`` as a subprocess (its own process
  start included), which uploads with ``--concurrency`` in flight and waits for indexing;
- ``everos_ingest_rerun``: the same command again: every file is resumed from the manifest.

Prints one JSON object: for each, the seconds to have every file accepted (``upload``) and
indexed (``total``), and files/s over both.

    python bench/ingest_folder.py [--files 1000] [--size 4096] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from everos.config import render_template
from everos.testing.replay import free_port

DOCUMENTS = "/api/v1/knowledge/documents"
WORDS = ("solar panel inverter battery cable roof current voltage grid meter storage charge sun light power "
         "house circuit breaker string isolator").split()


def write_corpus(folder: Path, files: int, size: int) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for number in range(files):
        lines, length, word = [f"# Document {number}\n"], 0, number
        while length < size:
            heading = f"\n## Part {len(lines)} of {number}\n\n"
            sentence = " ".join(WORDS[(word + k * 7) % len(WORDS)] for k in range(12)) + f" {number}-{word}.\n"
            word += 1
            lines.append(heading + sentence if word % 6 == 0 else sentence)
            length += len(lines[-1])
        path = folder / f"doc_{number:04d}.md"
        path.write_text("".join(lines)[:size], encoding="utf-8")
        paths.append(path)
    return paths


@contextlib.contextmanager
def server(workdir: Path, name: str) -> Iterator[str]:
    """``everos server start`` on a fresh root and a free port; stopped with SIGINT at the end."""
    root = workdir / name
    root.mkdir()
    (root / "everos.toml").write_text(render_template(), encoding="utf-8")
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("EVEROS_")}
    process = subprocess.Popen([sys.executable, "-m", "everos.cli", "server", "start", "--root", str(root),
                                "--port", str(port), "--log-level", "WARNING"], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"the server on {url} did not become ready")
            time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_indexed(client: httpx.Client, doc_ids: list[str]) -> None:
    for doc_id in doc_ids:
        while client.get(f"{DOCUMENTS}/{doc_id}").json()["data"]["index_status"] == "pending":
            time.sleep(0.05)


def sequential_loop(url: str, paths: list[Path]) -> dict:
    started = time.perf_counter()
    doc_ids = []
    with httpx.Client(base_url=url, timeout=120) as client:
        for path in paths:
            response = client.post(DOCUMENTS, data={"title": path.stem},
                                   files={"file": (path.name, path.read_bytes(), "text/markdown")})
            response.raise_for_status()
            doc_ids.append(response.json()["data"]["doc_id"])
        upload_s = time.perf_counter() - started
        wait_indexed(client, doc_ids)
    return figures(len(paths), upload_s, time.perf_counter() - started)


def everos_ingest(url: str, folder: Path, concurrency: int) -> dict:
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "everos.cli", "ingest", str(folder), "--url", url, "--json",
                          "--concurrency", str(concurrency)], capture_output=True, check=False,
                         env={**os.environ, "XDG_STATE_HOME": str(folder.parent / "state")})
    total_s = time.perf_counter() - started
    if run.returncode != 0:
        raise RuntimeError(f"everos ingest exited {run.returncode}: {run.stderr.decode()[-2000:]}")
    summary = json.loads(run.stdout)
    return {**figures(summary["files"], summary["upload_seconds"], total_s), "sent": summary["sent"],
            "resumed": summary["resumed"], "indexed": summary["indexed"], "process_seconds": round(total_s, 3)}


def figures(files: int, upload_s: float, total_s: float) -> dict:
    return {"files": files, "upload_seconds": round(upload_s, 3), "total_seconds": round(total_s, 3),
            "upload_files_per_s": round(files / upload_s, 1), "total_files_per_s": round(files / total_s, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--size", type=int, default=4096, help="bytes per file")
    parser.add_argument("--concurrency", type=int, default=4, help="everos ingest --concurrency")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="everos-bench-ingest-"))
    try:
        paths = write_corpus(workdir / "corpus", args.files, args.size)
        with server(workdir, "root-loop") as url:
            loop = sequential_loop(url, paths)
        with server(workdir, "root-ingest") as url:
            ingest = everos_ingest(url, workdir / "corpus", args.concurrency)
            rerun = everos_ingest(url, workdir / "corpus", args.concurrency)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps({
        "files": args.files, "bytes_per_file": args.size, "concurrency": args.concurrency, "cpus": os.cpu_count(),
        "sequential_loop": loop, "everos_ingest": ingest, "everos_ingest_rerun": rerun,
        "speedup_upload": round(loop["upload_seconds"] / ingest["upload_seconds"], 2),
        "speedup_total": round(loop["total_seconds"] / ingest["total_seconds"], 2),
    }, indent=2))


if __name__ == "__main__":
    main()
