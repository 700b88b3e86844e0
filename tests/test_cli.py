"""The command line: init, config show, and server start as a real subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
import pytest

from everos.cli import main
from everos.config import Config, load_config
from everos.errors import ExitCode
from everos.testing.replay import free_port

from .conftest import write_config


def test_init_writes_a_config_that_loads_to_the_defaults(tmp_path: Path, capsys) -> None:
    root = tmp_path / "fresh"
    assert main(["init", "--root", str(root)]) == 0
    assert load_config(root, environ={}).config == Config()
    assert "everos server start" in capsys.readouterr().out


def test_init_keeps_an_existing_file_unless_forced(tmp_path: Path) -> None:
    write_config(tmp_path, "[api]\nport = 9999\n")
    assert main(["init", "--root", str(tmp_path)]) == 1
    assert "9999" in (tmp_path / "everos.toml").read_text()
    assert main(["init", "--root", str(tmp_path), "--force"]) == 0
    assert load_config(tmp_path, environ={}).config.api.port == 8000


def test_init_print_writes_nothing(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("EVEROS_ROOT", str(tmp_path / "r"))
    assert main(["init", "--print"]) == 0
    assert tomllib.loads(capsys.readouterr().out)["api"]["port"] == 8000
    assert not (tmp_path / "r").exists()


def test_config_show_prints_values_sources_and_masks_secrets(tmp_path: Path, capsys, monkeypatch) -> None:
    write_config(tmp_path, "[llm]\napi_key = 'sk-abcdefghijklmnop'\n")
    monkeypatch.setenv("EVEROS_API__PORT", "9100")
    assert main(["config", "show", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "port = 9100  # env EVEROS_API__PORT" in out
    assert 'host = "127.0.0.1"  # default' in out
    assert "abcdefghijklmnop" not in out
    assert f"api_key = \"sk***\"  # {tmp_path / 'everos.toml'}" in out


def test_bad_config_exits_1_naming_the_key(tmp_path: Path, capsys) -> None:
    write_config(tmp_path, "[api]\nrequest_timeout_seconds = -5\n")
    assert main(["server", "start", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "request_timeout_seconds" in err and "greater than 0" in err


def test_server_refuses_to_start_without_config(tmp_path: Path, capsys) -> None:
    assert main(["server", "start", "--root", str(tmp_path / "empty")]) == 1
    assert "everos init" in capsys.readouterr().err


def everos(*args: str, env: dict | None = None, timeout_s: float = 60) -> subprocess.CompletedProcess:
    """``everos ARGS`` as a user runs it: a subprocess, its exit code and its output."""
    return subprocess.run([sys.executable, "-m", "everos.cli", *args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout_s,
                          env={**os.environ, "EVEROS_LOG_LEVEL": "INFO", **(env or {})})


def one_line(done: subprocess.CompletedProcess) -> str:
    """The single stderr line of a failed command (no traceback, no log lines around it)."""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("everos: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


@pytest.mark.slow
def test_a_port_in_use_is_one_line_and_exit_4(root: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        done = everos("server", "start", "--root", str(root), "--port", str(busy.getsockname()[1]))
    assert done.returncode == ExitCode.CANNOT_LISTEN == 4
    line = one_line(done)
    assert "in use" in line and "--port" in line
    assert not (root / ".index").exists()  # refused before any store opened


@pytest.mark.parametrize(("args", "code", "words"), [
    (["server", "start", "--port", "99999"], ExitCode.CONFIG, "from 0 to 65535"),
    (["server", "start", "--host", "no-such-host.invalid"], ExitCode.CANNOT_LISTEN, "--host"),
    (["cascade", "sync", "/not/under/the/root"], ExitCode.USAGE, "not under the root"),
    (["cascade", "sync", "default_app/default_project"], ExitCode.USAGE, "document directory"),
])
def test_user_errors_are_one_line_with_a_distinct_exit_code(root: Path, capsys, args, code, words) -> None:
    assert main([*args, "--root", str(root)]) == code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in captured.err, captured.err


def test_a_bad_time_zone_stops_startup_naming_the_key(root: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("EVEROS_MEMORY__TIMEZONE", "Mars/Olympus")
    assert main(["server", "start", "--root", str(root)]) == ExitCode.CONFIG
    assert "[memory] timezone = 'Mars/Olympus'" in capsys.readouterr().err


def test_an_unexpected_error_is_one_line_and_the_traceback_only_with_debug(root: Path, capsys,
                                                                        monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise ExceptionGroup("from a nursery", [RuntimeError("the disk caught fire")])

    monkeypatch.setattr("everos.cascade_cli.run_cascade_command", broken)
    assert main(["cascade", "status", "--root", str(root)]) == ExitCode.INTERNAL
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "everos: unexpected error: RuntimeError: the disk caught fire (this is a bug; run again with "
        "--log-level debug for the traceback)"]
    monkeypatch.setenv("EVEROS_LOG_LEVEL", "debug")
    assert main(["cascade", "status", "--root", str(root)]) == ExitCode.INTERNAL
    assert "Traceback" in capsys.readouterr().err


def start_subprocess(root: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "EVEROS_ROOT": str(root)}
    return subprocess.Popen(
        [sys.executable, "-m", "everos.cli", "server", "start", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_healthy(url: str, process: subprocess.Popen, timeout_s: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            return httpx.get(url + "/health", timeout=1).json()
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("the server did not answer /health in time")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_server_subprocess_answers_health_and_stops_on_signal_with_exit_0(tmp_path: Path, signum) -> None:
    write_config(tmp_path, "[api]\ngraceful_timeout_seconds = 3\n")
    port = free_port()
    process = start_subprocess(tmp_path, port)
    try:
        assert wait_healthy(f"http://127.0.0.1:{port}", process)["status"] == "ok"
        second = start_subprocess(tmp_path, free_port())
        _, err = second.communicate(timeout=20)
        assert second.returncode == 3 and "owns the root" in err
        process.send_signal(signum)
        process.wait(timeout=3 + 5)  # graceful timeout plus a margin
        assert process.returncode == 0
        assert "stopped" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
