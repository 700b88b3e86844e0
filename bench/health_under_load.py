"""How fast /health answers while the server is busy, and how long the loop stalls.

Runs the real server in-process on a loopback port, in a fresh temporary root, and prints one JSON
object with a block per scenario:

- ``log_burst``: 1,000 exceptions logged in one request (EverOS 1.1 froze seconds per error);
- ``big_upload``: one upload of ``--big-mib`` MiB of markdown through the built-in extractor;
- ``ingest_burst``: ``--uploads`` small uploads at concurrency ``--concurrency``;
- ``idle_connections``: ``--idle`` connections opened and held, sending nothing, for 3 s (up to
  ``[api] max_connections``; the ones over it are refused at once), as a slowloris client would.

For each: the scenario's own duration, /health probe latencies (p50/p99/max, one probe every
20 ms) and the event-loop lag the server's probe saw (max over the scenario).

    python bench/health_under_load.py [--big-mib 50] [--uploads 50] [--concurrency 8] [--idle 1000]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio

from everos.config import load_config, render_template
from everos.logs import configure_logging, shutdown_logging
from everos.server import serve
from everos.services import open_services
from everos.testing import add_log_burst_route

API = "/api/v1/knowledge/documents"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def probe(client: httpx.AsyncClient, stop: trio.Event, out: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        response = await client.get("/health")
        response.raise_for_status()
        out.append(time.perf_counter() - started)
        await trio.sleep(0.02)


async def measure(base_url: str, board, scenario) -> dict:
    latencies: list[float] = []
    stop = trio.Event()
    board.lag_samples.clear()
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as health, \
            httpx.AsyncClient(base_url=base_url, timeout=600, limits=httpx.Limits(max_connections=64)) as client:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(probe, health, stop, latencies)
            started = time.perf_counter()
            detail = await scenario(client)
            elapsed = time.perf_counter() - started
            stop.set()
    lag = board.loop_lag_ms(window_s=elapsed + 5)
    return {
        "seconds": round(elapsed, 3),
        **(detail or {}),
        "health_probes": len(latencies),
        "health_ms": {"p50": round(statistics.median(latencies) * 1000, 2),
                      "p99": round(percentile(latencies, 0.99) * 1000, 2),
                      "max": round(max(latencies) * 1000, 2)},
        "loop_lag_max_ms": lag["max"],
    }


async def main(args: argparse.Namespace) -> dict:
    root = Path(tempfile.mkdtemp(prefix="everos-bench-"))
    (root / "everos.toml").write_text(render_template())
    loaded = load_config(root, environ={}, overrides={("api", "port"): 0, ("knowledge", "dedupe"): "none",
                                                      ("api", "request_timeout_seconds"): 600.0,
                                                      ("api", "idle_timeout_seconds"): 60.0,
                                                      ("knowledge", "sync_wait_seconds"): 300.0})
    holder: dict = {}
    results: dict = {"python": sys.version.split()[0], "cpus": os.cpu_count()}
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(functools.partial(
            serve, loaded, services=open_services, configure_app=functools.partial(add_log_burst_route, path="/bench/log-burst"),
            runtime_ready=lambda runtime: holder.setdefault("runtime", runtime)))
        base_url, board = binds[0], holder["runtime"].board
        await trio.sleep(0.5)

        async def log_burst(client):
            (await client.get("/bench/log-burst")).raise_for_status()

        async def big_upload(client):
            section = "## Section {n}\n\n" + ("Solar panels convert light into power. " * 40 + "\n\n") * 5
            base_url = str(client.base_url).rstrip("/")
            cap = args.big_mib * 2**20  # the default equals [knowledge] max_upload_bytes
            body = await trio.to_thread.run_sync(lambda: "".join(
                section.format(n=n) for n in range(cap // len(section) + 1)).encode()[:cap])
            # The client encodes 50 MiB of multipart: do it in a thread, so the loop-lag figure
            # measures the server, not this benchmark's own client.
            response = await trio.to_thread.run_sync(functools.partial(
                httpx.post, base_url + API, files={"file": ("big.md", body)}, data={"title": "Big"}, timeout=600))
            if response.is_error:
                raise RuntimeError(f"the big upload answered {response.status_code}: {response.text[:500]}")
            return {"bytes": len(body), "status": response.status_code,
                    "topic_count": response.json()["data"].get("topic_count")}

        async def ingest_burst(client):
            statuses: list[int] = []
            sem = trio.Semaphore(args.concurrency)

            async def one(index: int) -> None:
                async with sem:
                    body = f"# Note {index}\n\nParagraph about item {index}. It has two sentences.\n".encode()
                    statuses.append((await client.post(API, files={"file": ("n.md", body)},
                                                       data={"title": f"Note {index}"})).status_code)

            async with trio.open_nursery() as inner:
                for index in range(args.uploads):
                    inner.start_soon(one, index)
            return {"uploads": args.uploads, "concurrency": args.concurrency,
                    "status_counts": {str(s): statuses.count(s) for s in sorted(set(statuses))}}

        async def idle_connections(client):
            host, port = base_url.removeprefix("http://").split(":")
            held = []
            for _ in range(args.idle):
                held.append(await trio.open_tcp_stream(host, int(port)))
            await trio.sleep(3)
            http = board.snapshot()["http"]
            for stream in held:
                await stream.aclose()
            return {"opened": len(held), "held_by_server": http["open_connections"],
                    "max_connections": http["max_connections"], "refused": http["refused_connections"]}

        results["log_burst"] = await measure(base_url, board, log_burst)
        results["big_upload"] = await measure(base_url, board, big_upload)
        results["ingest_burst"] = await measure(base_url, board, ingest_burst)
        results["idle_connections"] = await measure(base_url, board, idle_connections)
        results["log_records_dropped"] = __import__("everos.logs").logs.dropped_records()
        holder["runtime"].request_stop()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-mib", type=int, default=50)
    parser.add_argument("--uploads", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--idle", type=int, default=1000, help="idle connections to hold")
    arguments = parser.parse_args()
    with open(os.devnull, "w") as sink:
        configure_logging("INFO", sink)
        try:
            results = trio.run(main, arguments)
        finally:
            shutdown_logging()  # flush the writer thread before its stream closes
    print(json.dumps(results, indent=2))
