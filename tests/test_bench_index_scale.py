"""``bench/index_scale.py``: its quick mode runs end to end and reports every figure; Ctrl-C cleans up.

Behaviour only: no figure is held to a speed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench" / "index_scale.py"


def bench_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVEROS_")}
    return {**env, "TMPDIR": str(tmp_path), "PYTHONPATH": str(REPO)}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def spread_ok(figure: dict) -> None:
    assert set(figure) >= {"n", "p50_ms", "p99_ms", "max_ms"}
    assert figure["n"] > 0
    assert 0 <= figure["p50_ms"] <= figure["p99_ms"] <= figure["max_ms"]


def test_quick_mode_reports_every_figure(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=600,
                         env=bench_env(tmp_path), stdin=subprocess.DEVNULL, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout)

    assert result["settings"]["embedding"] == "hashing"
    assert result["topics_per_document"] > 1
    [point] = result["checkpoints"]
    assert point["documents"] == 30 and point["topics"] > 30
    segment = point["segment"]
    for name in ("upload_s", "uploads_per_s", "index_s", "index_rows_per_s", "last_indexed_after_ack_s",
                 "all_indexed_after_last_ack_s"):
        assert segment[name] >= 0, name
    assert segment["topics"] == point["topics"]
    assert segment["index_status"]["indexed"] == 30 and segment["index_status"]["pending"] == 0
    assert segment["health"]["probes"] > 0
    assert point["settle"]["index_rows"]["knowledge_topic"] == point["topics"]
    for memory in (point["rss"], result["restart"]["rss"]):
        assert memory["main_rss_mib"] > 0 and memory["total_rss_mib"] >= memory["main_rss_mib"]
        assert memory["total_pss_mib"] > 0
    for part in ("lancedb", "sqlite", "markdown", "root"):
        assert point["disk"][part]["bytes"] > 0 and point["disk"][part]["files"] > 0
    for method in ("keyword", "vector", "hybrid"):
        spread_ok(point["search"][method]["took_ms"])
        spread_ok(point["search"][method]["client_ms"])
        assert point["search"][method]["mean_hits"] > 0, method  # the queries find something
        spread_ok(point["lancedb"][method])
        spread_ok(point["lancedb"]["recall"][method])
        assert set(point["ratio_server_over_lancedb"][method]) == {"p50", "p99"}
        assert set(point["ratio_server_over_recall"][method]) == {"p50", "p99"}
    spread_ok(point["lancedb"]["facts_for_10_hits"])
    assert point["lancedb"]["tables"]["knowledge_topic"]["rows"] == point["topics"]
    assert result["health"]["probes"] > 0 and "failures" in result["health"]

    restart = result["restart"]
    assert restart["first_stop"]["exit_code"] == 0 and restart["second_stop"]["exit_code"] == 0
    assert restart["ready_s"] > 0 and isinstance(restart["main_rss_within_20_percent"], bool)
    rebuild = result["rebuild"]
    assert rebuild["succeeded"] is True and rebuild["seconds"] > 0
    assert rebuild["queued"] == 30 and rebuild["topic_rows_after"] == rebuild["topic_rows_before"] == point["topics"]

    assert not list(tmp_path.glob("everos-bench-scale-*")), "the work directory is left behind"
    pids = [point["rss"]["pid"], restart["rss"]["pid"]]
    pids += [child["pid"] for memory in (point["rss"], restart["rss"]) for child in memory["children"]]
    assert not [pid for pid in pids if alive(pid)], "a server process outlived the benchmark"


def test_ctrl_c_stops_the_server_and_removes_the_work_directory(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, str(BENCH), "--quick"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=bench_env(tmp_path), stdin=subprocess.DEVNULL)
    try:
        server_pid = None
        deadline = time.monotonic() + 120
        assert process.stderr is not None
        for line in process.stderr:
            if "server pid" in line:
                server_pid = int(line.split("server pid", 1)[1].split()[0])
                break
            assert time.monotonic() < deadline
        assert server_pid is not None, "the benchmark never started its server"
        assert list(tmp_path.glob("everos-bench-scale-*"))
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode != 0
    assert not list(tmp_path.glob("everos-bench-scale-*")), err[-2000:]
    assert not alive(server_pid), "the server outlived the benchmark"
