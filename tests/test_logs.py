"""Logging never blocks the loop: bounded tracebacks without locals, a bounded queue, dropped counted."""

from __future__ import annotations

import io
import json
import logging
import threading

from everos import logs


def nested(depth: int) -> None:
    secret_local = "do-not-render-me"  # noqa: F841 - a local that must not appear in the log
    if depth == 0:
        raise ValueError("deep failure")
    nested(depth - 1)


def test_traceback_is_bounded_and_has_no_locals() -> None:
    try:
        nested(200)
    except ValueError as exc:
        text = logs.format_exception_bounded(exc)
    assert "ValueError: deep failure" in text
    assert "do-not-render-me" not in text
    assert text.count("in nested") <= logs.MAX_TRACEBACK_FRAMES
    assert len(text) <= logs.MAX_TRACEBACK_CHARS + 20


def log_two_records(fmt: str, fields: dict) -> str:
    """What the writer thread wrote in ``fmt`` for an info record with ``fields`` and an exception."""
    stream = io.StringIO()
    logs.configure_logging("INFO", stream, fmt=fmt)
    try:
        logging.getLogger("everos.test").info("hello", extra={"fields": fields})
        try:
            raise KeyError("k")
        except KeyError:
            logging.getLogger("everos.test").exception("failed")
    finally:
        logs.shutdown_logging()
    return stream.getvalue()


def test_records_are_written_by_the_listener_with_fields() -> None:
    out = log_two_records("text", {"path": "/x y", "status": 200})
    assert 'everos.test: hello path="/x y" status=200' in out
    assert "KeyError: 'k'" in out


def test_json_lines_carry_the_fields_and_the_bounded_traceback() -> None:
    out = log_two_records("json", {"path": "/x y", "status": 200, "at": object()})
    first, second = (json.loads(line) for line in out.splitlines())
    assert first["msg"] == "hello" and first["level"] == "INFO" and first["logger"] == "everos.test"
    assert first["path"] == "/x y" and first["status"] == 200 and first["ts"].endswith("Z")
    assert first["at"].startswith("<object")  # not JSON: written as text, never a crash
    assert second["msg"] == "failed" and "KeyError: 'k'" in second["exc"]


class BlockedStream(io.StringIO):
    """A stream whose writes block until released, like stderr into a pipe nobody reads."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.release.wait(timeout=60)
        return len(text)


def test_a_blocked_writer_drops_records_instead_of_blocking_the_caller(monkeypatch) -> None:
    monkeypatch.setattr(logs, "QUEUE_MAX_RECORDS", 10)
    before = logs.dropped_records()
    stream = BlockedStream()
    logs.configure_logging("INFO", stream)
    try:
        log = logging.getLogger("everos.test")
        for index in range(100):
            log.error("record %d", index)  # returns at once even though the writer is stuck
        assert logs.dropped_records() - before >= 100 - 10 - 1
    finally:
        stream.release.set()
        logs.shutdown_logging()
        logging.getLogger().handlers.clear()
