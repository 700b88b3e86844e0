"""``everos doctor``: one line per check, ✖ and exit 7 on a problem, read-only, every probe bounded."""

from __future__ import annotations

import json
from pathlib import Path

import trio

from everos.cli import main
from everos.doctor import FAIL, OK, WARN, Check, diagnose, index_consistency, render_check
from everos.errors import ExitCode
from everos.testing import Fault
from everos.testing.replay import free_port

from .cascade.conftest import GUIDE, write_document
from .conftest import HeldIndex, knowledge_server, lagging_server, write_config
from .test_api_cli import cli
from .testing.conftest import fake_llm  # noqa: F401 - the fixture
from .web.test_knowledge_routes import upload, wait_indexed


def statuses(checks: list[Check]) -> dict[str, str]:
    return {check.check: check.status for check in checks}


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under the root with its size and mtime: what a read-only command must not change."""
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


def endpoints_config(root: Path, base_url: str, *, dim: int = 16, model: str = "fake-model") -> None:
    """``[llm]``, ``[embedding]`` and ``[rerank]`` all on ``base_url``."""
    extra = {"llm": "", "embedding": f"dim = {dim}\n", "rerank": ""}
    write_config(root, "".join(f'[{section}]\nprovider = "openai"\nbase_url = "{base_url}"\nmodel = "{model}"\n{more}'
                               for section, more in extra.items()))


def test_a_check_is_one_line_with_its_mark() -> None:
    assert render_check(Check("disk", WARN, "1.0 GiB\nfree")) == "⚠ disk: 1.0 GiB free"
    assert render_check(Check("disk", FAIL, "full"), {FAIL: "FAIL"}) == "FAIL disk: full"


def test_counts_that_disagree_are_a_problem_unless_the_cascade_is_catching_up() -> None:
    facts = {"documents": 2, "index_states": {"indexed": 2, "pending": 0, "failed": 0}, "queued_rows": 0}
    assert index_consistency(2, facts).status == OK
    assert index_consistency(3, facts).status == FAIL
    assert index_consistency(3, {**facts, "queued_rows": 1}).status == WARN
    never_indexed = {"documents": 2, "index_states": {"indexed": 2, "pending": 0, "failed": 1}, "queued_rows": 0}
    assert index_consistency(3, never_indexed).status == OK
    assert index_consistency(3, {**never_indexed, "documents": 4}).status == FAIL


async def test_a_healthy_root_without_a_server_passes_every_check_and_changes_nothing(root: Path, capsys) -> None:
    write_document(root, "Trio guide", GUIDE)
    assert await trio.to_thread.run_sync(main, ["cascade", "sync", "--root", str(root)]) == 0
    before = snapshot(root)
    checks = await diagnose(root)
    assert all(check.status == OK for check in checks), checks
    assert statuses(checks).keys() >= {"config", "root", "open files", "disk", "server", "llm", "embedding",
                                       "rerank", "index", "failures"}
    assert [c.detail for c in checks if c.check == "index"] == [
        "documents: 1 on disk, 1 in SQLite, 1 indexed, 0 pending, 0 failed"]
    code, out, _ = await trio.to_thread.run_sync(lambda: cli(capsys, "doctor", "--root", str(root)))
    assert code == 0 and all(line.startswith("✔ ") for line in out.splitlines())
    assert snapshot(root) == before


async def test_a_healthy_root_next_to_its_server(root: Path, capsys) -> None:
    """The server holds the root's lock: doctor reads next to it without taking it."""
    async with knowledge_server(root) as server:
        doc_id = (await upload(server.client)).json()["data"]["doc_id"]
        await wait_indexed(server.client, doc_id)
        code, out, _ = await trio.to_thread.run_sync(lambda: cli(capsys, "doctor", "--json", "--root", str(root)))
        report = json.loads(out)
        assert code == 0 and report["healthy"], report
        server_check = next(c for c in report["checks"] if c["check"] == "server")
        assert server_check["status"] == OK and server.base_url in server_check["detail"]


async def test_a_server_whose_index_lags_is_a_warning(root: Path, held_index: HeldIndex) -> None:
    async with lagging_server(root, held_index) as server:
        [check] = [c for c in await diagnose(root) if c.check == "server"]
    assert check.status == WARN and check.detail.startswith("pid ")
    assert f"at {server.base_url}: its index lags, 2 documents wait for their index, more than [cascade] " \
           "lag_documents (1); uploads are still accepted" in check.detail


async def test_failed_documents_are_listed_with_their_errors_and_exit_7(root: Path, capsys) -> None:
    doc_dir = write_document(root, "Trio guide", GUIDE)
    (root / doc_dir / "1_Cancel_scopes.md").write_text("# Cancel scopes\n\nNo frontmatter.\n")
    assert await trio.to_thread.run_sync(main, ["cascade", "sync", "--root", str(root)]) == 0
    code, out, _ = await trio.to_thread.run_sync(lambda: cli(capsys, "doctor", "--root", str(root)))
    failed = [line for line in out.splitlines() if line.startswith("✖ ")]
    assert code == ExitCode.CHECK_FAILED and len(failed) == 1
    assert failed[0].startswith(f"✖ failed document: {doc_dir}: ") and "1_Cancel_scopes.md" in failed[0]
    assert "everos cascade fix --apply" in failed[0]


async def test_reachable_endpoints_report_their_model_and_dimension(root: Path, fake_llm) -> None:
    endpoints_config(root, fake_llm.base_url)
    checks = {c.check: c for c in await diagnose(root)}
    assert checks["llm"].status == OK and "fake-model: answers and lists the model" in checks["llm"].detail
    assert checks["embedding"].status == OK and "16-dimensional vectors = [embedding] dim" in checks["embedding"].detail
    assert checks["rerank"].status == OK and checks["rerank"].detail.endswith("reranks")


async def test_a_model_narrower_than_dim_or_not_listed_is_reported(root: Path, fake_llm) -> None:
    endpoints_config(root, fake_llm.base_url, dim=32, model="other-model")
    checks = {c.check: c for c in await diagnose(root)}
    assert checks["llm"].status == WARN and "lists only fake-model" in checks["llm"].detail
    assert checks["embedding"].status == FAIL and "16-dimensional vectors but [embedding] dim = 32" in \
        checks["embedding"].detail


async def test_an_endpoint_nobody_listens_on_fails_within_the_probe_deadline(root: Path, capsys) -> None:
    write_config(root, f'[embedding]\nprovider = "openai"\nbase_url = "http://127.0.0.1:{free_port()}/v1"\n')
    with trio.fail_after(10):  # a liveness bound: the probe's deadline is 5 s
        code, out, _ = await trio.to_thread.run_sync(lambda: cli(capsys, "doctor", "--root", str(root)))
    assert code == ExitCode.CHECK_FAILED
    [line] = [line for line in out.splitlines() if line.startswith("✖ ")]
    assert line.startswith("✖ embedding: embedding endpoint http://127.0.0.1:") and "ConnectError" in line


async def test_a_stalled_endpoint_fails_at_the_probe_deadline(root: Path, fake_llm) -> None:
    fake_llm.set_faults([Fault.stall(route="embeddings")])
    endpoints_config(root, fake_llm.base_url)
    with trio.fail_after(5):  # a liveness bound: the probe's deadline is 0.5 s
        checks = {c.check: c for c in await diagnose(root, probe_timeout_s=0.5)}
    assert checks["embedding"].status == FAIL and "within" in checks["embedding"].detail
    assert checks["llm"].status == OK


def test_a_bad_config_is_a_failed_check_and_the_rest_still_runs(root: Path, capsys) -> None:
    write_config(root, "[api]\nrequest_timeout_seconds = -5\n")
    code, out, _ = cli(capsys, "doctor", "--root", str(root))
    lines = out.splitlines()
    assert code == ExitCode.CHECK_FAILED
    assert lines[0].startswith("✖ config: [api] request_timeout_seconds = -5.0 from ") and "greater than 0" in lines[0]
    assert "⚠ endpoints: not probed: the configuration is not valid" in lines
    assert any(line.startswith("✔ disk: ") for line in lines)


def test_a_missing_root_is_one_failed_check(tmp_path: Path, capsys) -> None:
    code, out, _ = cli(capsys, "doctor", "--root", str(tmp_path / "nowhere"))
    assert code == ExitCode.CHECK_FAILED and out.startswith("✖ root: ") and out.count("\n") == 1
    assert not (tmp_path / "nowhere").exists()


def test_a_probe_deadline_must_be_positive(root: Path, capsys) -> None:
    code, out, err = cli(capsys, "doctor", "--timeout", "0", "--root", str(root))
    assert (code, out) == (ExitCode.USAGE, "") and err == "everos: doctor: --timeout must be greater than 0\n"
