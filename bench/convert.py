"""Document conversion and the process hop (issue #12): what a worker process costs and saves.

- ``pdf``: pages per second converting a generated text PDF (``--pages`` pages, a heading and 40
  lines each), called directly and through :meth:`everos.workers.CpuWorkers.run_cpu` (median of 3);
- ``hop``: the overhead of the process hop per call: ``run_cpu`` of a no-op against a direct
  call, and with a 1 MiB and a 16 MiB bytes argument (what an upload costs to ship);
- ``kill``: a conversion of a 100,000-page PDF stopped at a ``--deadline`` s deadline: how long
  after the deadline the error came back, how long until the slot's fresh worker took the next
  conversion (one worker, so the next call must wait for the replacement), and whether it
  succeeded.

Prints one JSON object.

    python bench/convert.py [--pages 200] [--calls 500] [--deadline 1.0]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from everos.errors import WorkerTimeout  # noqa: E402
from everos.knowledge import convert_to_markdown, warm_up_converter  # noqa: E402
from everos.workers import open_cpu_workers  # noqa: E402
from tests.knowledge import documents  # noqa: E402

MEMORY_MB = 4096
REPEAT = 3  # conversions timed per way; the median is reported (the machine is shared)


def noop(payload: bytes | None = None) -> None:
    """The call whose cost is the hop alone."""


async def bench(pages: int, calls: int, deadline_s: float) -> dict[str, object]:
    pdf = documents.text_pdf(pages)
    convert_to_markdown(pdf, "warm.pdf")  # load the library in this process too
    direct = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        converted = convert_to_markdown(pdf, "book.pdf")
        direct.append(time.perf_counter() - started)
    assert converted.markdown.count("# Chapter") == pages
    direct_s = statistics.median(direct)

    result: dict[str, object] = {}
    async with open_cpu_workers(workers=1, init=warm_up_converter) as pool:
        in_worker = []
        for _ in range(REPEAT):
            started = time.perf_counter()
            await pool.run_cpu(convert_to_markdown, pdf, "book.pdf", deadline_s=120, memory_mb=MEMORY_MB)
            in_worker.append(time.perf_counter() - started)
        worker_s = statistics.median(in_worker)
        result["pdf"] = {"pages": pages, "bytes": len(pdf), "direct_s": round(direct_s, 3),
                         "direct_pages_per_s": round(pages / direct_s, 1), "worker_s": round(worker_s, 3),
                         "worker_pages_per_s": round(pages / worker_s, 1)}

        hop: dict[str, object] = {}
        started = time.perf_counter()
        for _ in range(calls):
            noop()
        hop["direct_call_us"] = round((time.perf_counter() - started) / calls * 1e6, 2)
        for label, payload in (("noop", None), ("1MiB", b"x" * (1 << 20)), ("16MiB", b"x" * (16 << 20))):
            count = calls if payload is None or len(payload) <= 1 << 20 else max(10, calls // 20)
            times = []
            for _ in range(count):
                started = time.perf_counter()
                await pool.run_cpu(noop, payload, deadline_s=30, memory_mb=MEMORY_MB)
                times.append(time.perf_counter() - started)
            times.sort()
            hop[f"run_cpu_{label}_ms"] = {"p50": round(statistics.median(times) * 1e3, 3),
                                          "p99": round(times[int(len(times) * 0.99) - 1] * 1e3, 3),
                                          "calls": count}
        result["hop"] = hop

        huge = documents.many_pages_pdf(100_000)
        started = time.perf_counter()
        try:
            await pool.run_cpu(convert_to_markdown, huge, "huge.pdf", deadline_s=deadline_s, memory_mb=MEMORY_MB,
                               task="converting 'huge.pdf'")
            error = None
        except WorkerTimeout as exc:
            error = exc.message
        raised_s = time.perf_counter() - started
        next_started = time.perf_counter()
        small = await pool.run_cpu(convert_to_markdown, documents.outline_pdf(), "next.pdf", deadline_s=30,
                                   memory_mb=MEMORY_MB)
        next_s = time.perf_counter() - next_started
        snapshot = pool.snapshot()
        result["kill"] = {"deadline_s": deadline_s, "error": error,
                          "error_after_deadline_s": round(raised_s - deadline_s, 3),
                          "next_call_s": round(next_s, 3), "next_call_ok": small.detected_format == "pdf",
                          "snapshot": {"alive": snapshot.alive, "busy": snapshot.busy, "killed": snapshot.killed}}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--deadline", type=float, default=1.0)
    args = parser.parse_args()
    print(json.dumps(trio.run(bench, args.pages, args.calls, args.deadline), indent=2))


if __name__ == "__main__":
    main()
