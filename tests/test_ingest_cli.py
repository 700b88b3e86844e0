"""``everos ingest``: which files, the manifest, progress in both modes, the summary, and resume
after a SIGKILL against the real server."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath

import pytest
import trio
from quart import Response, g, request

from everos.cli import main
from everos.errors import ExitCode
from everos.folder_ingest import (
    FileRecord,
    IngestOptions,
    Manifest,
    Progress,
    discover,
    idempotency_key,
    ingest_command,
    summarize,
    wanted,
)
from everos.services import open_services

from .conftest import running_server

DOCUMENTS = "/api/v1/knowledge/documents"


def write_notes(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        path = folder / f"note_{number:02d}.md"
        path.write_text(f"# Note {number}\n\nPanel {number} turns light into power; inverter {number} feeds the "
                        f"house.\n", encoding="utf-8")
        paths.append(path)
    return paths


def acknowledged(folder: Path) -> int:
    """Files the manifest(s) under ``folder`` record as acknowledged (latest line per path)."""
    latest: dict[str, str] = {}
    for manifest in folder.glob("*.jsonl"):
        for line in manifest.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                latest[record["path"]] = record["status"]
    return sum(status in ("created", "duplicate", "accepted") for status in latest.values())


# -- which files ---------------------------------------------------------------------------------


def test_a_folder_yields_accepted_suffixes_recursively_without_hidden_names(tmp_path: Path) -> None:
    for name in ("a.md", "b.TXT", "sub/c.markdown", "sub/deeper/d.text", "e.rst", ".f.md", ".git/g.md", "h.doc", "i.pdf"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x", encoding="utf-8")
    found = discover([str(tmp_path)], [], [])
    # h.doc (legacy Word) is still refused with 415; i.pdf is converted, so it is picked.
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.md", "b.TXT", "i.pdf", "sub/c.markdown",
                                                                   "sub/deeper/d.text"]


def test_a_named_file_is_sent_whatever_its_suffix_and_only_once(tmp_path: Path) -> None:
    (tmp_path / "notes.rst").write_text("x", encoding="utf-8")
    (tmp_path / "a.md").write_text("x", encoding="utf-8")
    found = discover([str(tmp_path / "notes.rst"), str(tmp_path), str(tmp_path / "a.md")], [], [])
    assert found == [tmp_path / "notes.rst", tmp_path / "a.md"]


def test_include_and_exclude_match_names_or_paths_below_the_folder() -> None:
    assert wanted(PurePosixPath("x/a.md"), ["*.md"], [])
    assert not wanted(PurePosixPath("x/a.txt"), ["*.md"], [])
    assert not wanted(PurePosixPath("drafts/deep/a.md"), [], ["drafts/*"])
    assert wanted(PurePosixPath("x/drafts/a.md"), [], ["drafts/*"])  # a path pattern is anchored at the top
    assert not wanted(PurePosixPath("x/a_draft.md"), [], ["*_draft.md"])


def test_an_excluded_folder_is_not_walked(tmp_path: Path) -> None:
    write_notes(tmp_path / "keep", 1)
    write_notes(tmp_path / "node_modules" / "pkg", 1)
    assert [p.parent.name for p in discover([str(tmp_path)], [], ["node_modules"])] == ["keep"]


def test_a_missing_path_or_an_empty_match_is_not_found(tmp_path: Path, capsys) -> None:
    assert main(["ingest", str(tmp_path / "nope"), "--root", str(tmp_path)]) == ExitCode.NOT_FOUND
    assert "no such file or directory" in capsys.readouterr().err
    assert main(["ingest", str(tmp_path), "--root", str(tmp_path)]) == ExitCode.NOT_FOUND
    assert "no file to ingest" in capsys.readouterr().err


# -- keys, manifest, summary ---------------------------------------------------------------------


def test_the_idempotency_key_is_the_content_hash_with_the_form() -> None:
    key = idempotency_key("ab" * 32, {"title": "a", "filename": "a.md"})
    assert key == idempotency_key("ab" * 32, {"filename": "a.md", "title": "a"})
    assert key != idempotency_key("cd" * 32, {"title": "a", "filename": "a.md"})
    assert key != idempotency_key("ab" * 32, {"title": "b", "filename": "b.md"})


async def test_the_manifest_keeps_the_last_record_per_file_and_ignores_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "m" / "run.jsonl"
    manifest = await Manifest.open(path)
    await manifest.append(FileRecord("/a.md", 1, 2, "s", "failed", reason="429"))
    await manifest.append(FileRecord("/a.md", 1, 2, "s", "created", doc_id="d_1"))
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"path": "/b.md", "si')  # a crash in the middle of a write
    again = await Manifest.open(path)
    assert list(again.records) == ["/a.md"]
    assert again.records["/a.md"].status == "created"


def test_the_summary_fails_on_a_refused_or_unindexed_file() -> None:
    records = [FileRecord("/a", 1, 1, "s", "created", "d_1", index_status="indexed"),
               FileRecord("/b", 1, 1, "s", "duplicate", "d_1", index_status="indexed"),
               FileRecord("/c", 1, 1, "s", "failed", reason="415 UNSUPPORTED_FORMAT: PDF"),
               FileRecord("/d", 1, 1, "s", "accepted", "d_2", "t_2")]
    summary = summarize(records, resumed={"/a"}, waited=True, server="s", manifest=Path("m"), upload_s=1, total_s=1)
    assert (summary["created"], summary["duplicate"], summary["failed"], summary["pending"]) == (1, 1, 1, 1)
    assert (summary["resumed"], summary["sent"], summary["ok"]) == (1, 3, False)
    assert [f["path"] for f in summary["failures"]] == ["/c", "/d"]
    accepted_only = summarize(records[3:], resumed=set(), waited=False, server="s", manifest=Path("m"),
                              upload_s=1, total_s=1)
    assert accepted_only["ok"] and accepted_only["accepted"] == 1


# -- progress ------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_off_a_terminal_is_a_plain_line_per_tenth_with_rate_and_eta() -> None:
    stream, clock = io.StringIO(), FakeClock()
    progress = Progress("ingest", 50, stream, clock=clock)
    for _ in range(50):
        clock.now += 0.1
        progress.advance()
    progress.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert len(lines) == 10
    assert lines[0] == "everos ingest: 5/50 files (10%), 10.0 files/s, ETA 00:04, 0 failed"
    assert lines[-1].startswith("everos ingest: 50/50 files (100%)")


def test_progress_off_a_terminal_also_prints_every_few_seconds() -> None:
    stream, clock = io.StringIO(), FakeClock()
    progress = Progress("ingest", 1000, stream, clock=clock, every_s=5)
    clock.now = 6
    progress.advance(failed=True)
    assert stream.getvalue() == "everos ingest: 1/1000 files (0%), 0.2 files/s, ETA 1:39:54, 1 failed\n"


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_is_a_tqdm_bar_with_rate() -> None:
    stream = FakeTerminal()
    progress = Progress("ingest", 3, stream)
    for _ in range(3):
        progress.advance()
    progress.close()
    out = stream.getvalue()
    assert "\r" in out and "3/3" in out and "file/s" in out and "ingest" in out


def test_a_count_that_jumps_prints_one_line_per_tenth_it_passes_not_one_per_step() -> None:
    stream, clock = io.StringIO(), FakeClock()
    progress = Progress("cascade rebuild", 100, stream, unit="document", clock=clock)
    clock.now = 1
    progress.advance_to(35)
    progress.advance_to(35)  # no change: no line
    progress.advance_to(20)  # fewer than before: no change
    clock.now = 2
    progress.advance_to(100, failed=2)
    progress.close()
    assert stream.getvalue().splitlines() == [
        "everos cascade rebuild: 35/100 documents (35%), 35.0 documents/s, ETA 00:01, 0 failed",
        "everos cascade rebuild: 100/100 documents (100%), 50.0 documents/s, ETA 00:00, 2 failed",
    ]


def test_a_slow_count_still_prints_a_line_every_few_seconds() -> None:
    stream, clock = io.StringIO(), FakeClock()
    progress = Progress("cascade rebuild", 10_000, stream, unit="document", every_s=5, clock=clock)
    clock.now = 1
    progress.advance_to(1)  # the first line waits for a tenth or five seconds
    clock.now = 6
    progress.advance_to(2)
    assert stream.getvalue() == (
        "everos cascade rebuild: 2/10000 documents (0%), 0.3 documents/s, ETA 8:19:54, 0 failed\n")


def test_a_count_on_a_terminal_moves_a_tqdm_bar() -> None:
    stream = FakeTerminal()
    progress = Progress("cascade rebuild", 40, stream, unit="document")
    progress.advance_to(25, failed=1)
    progress.advance_to(40, failed=1)
    progress.close()
    out = stream.getvalue()
    assert "\r" in out and "40/40" in out and "document/s" in out and "failed=1" in out


# -- against a server ----------------------------------------------------------------------------


def test_ingest_without_a_server_runs_one_in_process_and_a_rerun_sends_nothing(root: Path, tmp_path: Path,
                                                                                 capsys) -> None:
    write_notes(tmp_path / "docs", 3)
    assert main(["ingest", str(tmp_path / "docs"), "--root", str(root)]) == ExitCode.OK
    out, err = capsys.readouterr()
    assert "created      3" in out and "indexed      3" in out
    assert "everos ingest: 3/3 files (100%)" in err and "\r" not in err  # plain lines: stderr is no terminal
    assert main(["ingest", str(tmp_path / "docs"), "--root", str(root), "--json"]) == ExitCode.OK
    summary = json.loads(capsys.readouterr().out)
    assert (summary["resumed"], summary["sent"], summary["indexed"], summary["created"]) == (3, 0, 3, 3)


@contextlib.asynccontextmanager
async def counting_server(root: Path, *, hold_after: int | None = None, saturated_first: int = 0
                          ) -> AsyncIterator[dict]:
    """The full server, counting upload POSTs; the first ``saturated_first`` get 429 with
    ``Retry-After: 0``, and past ``hold_after`` each waits for ``state["release"]``. Yields the
    counters and the server."""
    state = {"posts": 0, "in_flight": 0, "release": trio.Event()}

    def configure(app) -> None:
        @app.before_request
        async def count() -> None:
            if request.method == "POST" and request.path == DOCUMENTS:
                g.counted = True
                state["posts"] += 1
                state["in_flight"] += 1
                if state["posts"] <= saturated_first:
                    await request.get_data()  # as the real 429 does: after the body is read
                    return Response('{"error": {"code": "QUEUE_SATURATED", "message": "full"}}', status=429,
                                    headers={"Retry-After": "0"}, content_type="application/json")
                if hold_after is not None and state["posts"] > hold_after:
                    await state["release"].wait()

        @app.teardown_request
        async def uncount(exc: BaseException | None) -> None:
            if g.get("counted"):
                state["in_flight"] -= 1

    async with running_server(root, services=open_services, configure_app=configure) as server:
        state["server"] = server
        yield state


async def ingest_folder(folder: Path, root: Path, state: dict, *, concurrency: int, wait: bool,
                        lag_wait_s: float = 600) -> dict:
    """``everos ingest FOLDER --url … --root ROOT`` in this process; the summary."""
    options = IngestOptions(paths=(str(folder),), root=str(root), url=state["server"].base_url, form={},
                            concurrency=concurrency, wait=wait, wait_timeout_s=60, lag_wait_s=lag_wait_s)
    return await ingest_command(discover([str(folder)], [], []), options)


async def test_a_refused_file_is_listed_with_its_reason_and_the_others_are_indexed(root: Path,
                                                                                   tmp_path: Path) -> None:
    write_notes(tmp_path / "docs", 2)
    # An image is still refused at once (a PDF is converted now, so it no longer is).
    (tmp_path / "docs" / "scan.md").write_bytes(b"\x89PNG\r\n\x1a\n not text")
    async with counting_server(root) as state:
        with trio.fail_after(60):
            summary = await ingest_folder(tmp_path / "docs", root, state, concurrency=2, wait=True)
    assert (summary["ok"], summary["created"], summary["indexed"], summary["failed"]) == (False, 2, 2, 1)
    assert summary["failures"][0]["path"].endswith("scan.md")
    assert summary["failures"][0]["reason"].startswith("415 UNSUPPORTED_FORMAT:")


async def test_429_is_retried_after_retry_after_until_accepted(root: Path, tmp_path: Path) -> None:
    write_notes(tmp_path / "docs", 3)
    async with counting_server(root, saturated_first=4) as state:
        with trio.fail_after(60):
            summary = await ingest_folder(tmp_path / "docs", root, state, concurrency=1, wait=False)
    assert (summary["ok"], summary["accepted"], state["posts"]) == (True, 3, 3 + 4)


async def test_a_file_changed_since_its_acknowledgment_is_sent_again(root: Path, tmp_path: Path) -> None:
    first, _ = write_notes(tmp_path / "docs", 2)
    async with counting_server(root) as state:
        with trio.fail_after(60):
            await ingest_folder(tmp_path / "docs", root, state, concurrency=2, wait=True)
            first.write_text("# Note 0\n\nRewritten: the panel now faces south.\n", encoding="utf-8")
            summary = await ingest_folder(tmp_path / "docs", root, state, concurrency=2, wait=True)
    assert (summary["ok"], summary["resumed"], summary["sent"], state["posts"]) == (True, 1, 1, 3)


async def wait_until_idle(state: dict) -> None:
    """No upload request left in the server and no ingest job queued or running."""
    client = state["server"].client

    async def busy() -> bool:
        for status in ("queued", "running"):
            if (await client.get("/api/v1/knowledge/tasks", params={"status": status})).json()["data"]["tasks"]:
                return True
        return state["in_flight"] > 0

    while await busy():
        await trio.sleep(0.05)


def ingest_command_line(folder: Path, root: Path) -> list[str]:
    return [sys.executable, "-m", "everos.cli", "ingest", str(folder), "--root", str(root), "--json",
            "--concurrency", "4"]


@pytest.mark.slow
async def test_killed_halfway_and_rerun_sends_each_file_once_and_all_are_indexed(root: Path, tmp_path: Path) -> None:
    write_notes(tmp_path / "docs", 50)
    env = {name: value for name, value in os.environ.items() if not name.startswith("EVEROS_")}
    manifests = root / ".index" / "ingest"
    with trio.fail_after(150):
        async with counting_server(root, hold_after=25) as state:
            process = await trio.lowlevel.open_process(ingest_command_line(tmp_path / "docs", root), env=env,
                                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while acknowledged(manifests) < 25:
                await trio.sleep(0.02)
            process.kill()  # SIGKILL: no cleanup, uploads still in flight
            await process.wait()
            before_kill = acknowledged(manifests)
            state["release"].set()
            # The held uploads of the killed run finish first: the server stores an Idempotency-Key's
            # answer (and dedupes content) only once a request is done (see everos.ingest_cli).
            await wait_until_idle(state)
            posts_before = state["posts"]

            rerun = await trio.run_process(ingest_command_line(tmp_path / "docs", root), env=env,
                                           capture_stdout=True, capture_stderr=True, check=False)
            summary = json.loads(rerun.stdout)
            assert rerun.returncode == ExitCode.OK, rerun.stderr.decode()
            assert before_kill == 25
            assert state["posts"] - posts_before == 50 - before_kill  # nothing acknowledged is sent again
            assert (summary["files"], summary["resumed"], summary["sent"], summary["indexed"]) == (50, 25, 25, 50)

            listing = (await state["server"].client.get(DOCUMENTS, params={"page_size": 100})).json()["data"]
    assert listing["total"] == 50
    assert sorted(doc["title"] for doc in listing["documents"]) == [f"note_{n:02d}" for n in range(50)]
    assert {doc["index_status"] for doc in listing["documents"]} == {"indexed"}
