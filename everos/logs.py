"""Logging that never blocks the event loop (guarantee G5).

EverOS 1.1 froze for seconds per failed upload because it rendered rich tracebacks with local
variables on the event-loop thread. Here the loop thread does only two cheap things per record: it
renders the exception as a plain traceback without locals, cut to ``MAX_TRACEBACK_FRAMES`` frames
and ``MAX_TRACEBACK_CHARS`` characters, and puts the record on a bounded queue without waiting. A
listener thread formats and writes. When the queue is full the record is dropped and counted
(``dropped_records()``), so a flood of errors costs the loop microseconds each, never a stall on a
slow or blocked stderr.

Each line is ``time level logger message key=value ...``; ``extra={"fields": {...}}`` adds
key=value pairs (the request log line uses it).

Every record made while a request id is current (:func:`carrying_request_id`) carries it as the
``request_id`` field: the request layer sets it for an HTTP request, the MCP tools for a tool call,
and the ingest and index workers for the job an upload queued. It travels in a context variable,
so trio's child tasks and worker threads see it too, and the record takes it where it is made.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import json
import logging
import logging.handlers
import queue
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any, TextIO

__all__ = ["carrying_request_id", "configure_logging", "current_request_id", "dropped_records",
           "format_exception_bounded", "shutdown_logging", "utc_stamp"]

MAX_TRACEBACK_FRAMES = 12
MAX_TRACEBACK_CHARS = 4000
QUEUE_MAX_RECORDS = 10_000
SHUTDOWN_WAIT_S = 5.0

_dropped = 0
_dropped_lock = threading.Lock()
_listener: logging.handlers.QueueListener | None = None  # the writer thread
_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("everos_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request the running code works for, if any. Not a checkpoint."""
    return _REQUEST_ID.get()


@contextlib.contextmanager
def carrying_request_id(request_id: str | None) -> Iterator[None]:
    """Make ``request_id`` current inside the block, and in the tasks and threads it starts (None:
    no id; an enclosing one is hidden)."""
    token = _REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        _REQUEST_ID.reset(token)


def format_exception_bounded(exc: BaseException) -> str:
    """A plain traceback of ``exc``: no locals, at most ``MAX_TRACEBACK_FRAMES`` innermost frames
    per exception and ``MAX_TRACEBACK_CHARS`` characters in all."""
    text = "".join(
        traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-MAX_TRACEBACK_FRAMES, chain=True)
    )
    if len(text) > MAX_TRACEBACK_CHARS:
        text = "...(cut)...\n" + text[-MAX_TRACEBACK_CHARS:]
    return text.rstrip("\n")


def dropped_records() -> int:
    """How many log records were dropped because the queue to the writer thread was full."""
    return _dropped


class _BoundedQueueHandler(logging.handlers.QueueHandler):
    """Hands records to the writer thread; never waits, never renders locals."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # Merge args now (they may be mutated later) and flatten the exception to bounded text.
        # The request id is read here, in the task or thread that made the record.
        request_id = _REQUEST_ID.get()
        if request_id is not None:
            fields = getattr(record, "fields", None) or {}
            if "request_id" not in fields:
                record.fields = {"request_id": request_id, **fields}
        record.msg = record.getMessage()
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = format_exception_bounded(record.exc_info[1])
        record.exc_info = None
        record.stack_info = None
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        global _dropped
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            with _dropped_lock:
                _dropped += 1


class _Listener(logging.handlers.QueueListener):
    def enqueue_sentinel(self) -> None:
        # At shutdown the queue may be full: wait a little for room rather than fail.
        try:
            self.queue.put(self._sentinel, timeout=SHUTDOWN_WAIT_S)
        except queue.Full:
            pass

    def stop(self) -> None:
        # A writer stuck on a blocked stream must not hold up the process's exit.
        if self._thread is not None:
            self.enqueue_sentinel()
            self._thread.join(timeout=SHUTDOWN_WAIT_S)
            self._thread = None


def utc_stamp(epoch_s: float) -> str:
    """``epoch_s`` as every log line writes its time: UTC to the millisecond, ``...T12:00:00.123Z``."""
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(epoch_s))}.{int(epoch_s % 1 * 1000):03d}Z"


class _LineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{utc_stamp(record.created)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        fields: dict[str, Any] | None = getattr(record, "fields", None)
        if fields:
            line += " " + " ".join(f"{k}={_field(v)}" for k, v in fields.items())
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, the record's fields, and
    ``exc`` (the bounded traceback) when there is one. Values that are not JSON become strings."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"ts": utc_stamp(record.created), "level": record.levelname,
                                 "logger": record.name, "msg": record.getMessage()}
        for key, value in (getattr(record, "fields", None) or {}).items():
            entry.setdefault(str(key), value)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


FORMATTERS: dict[str, type[logging.Formatter]] = {"text": _LineFormatter, "json": _JsonFormatter}


def _field(value: Any) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def configure_logging(level: str = "INFO", stream: TextIO | None = None, fmt: str = "text") -> None:
    """Route every log record through the bounded queue to one writer thread on ``stream``
    (stderr by default), as ``fmt`` lines (``text`` or ``json``, :data:`FORMATTERS`). Safe to
    call again: the previous listener is stopped first."""
    global _listener
    shutdown_logging()
    records: queue.Queue[logging.LogRecord] = queue.Queue(maxsize=QUEUE_MAX_RECORDS)
    writer = logging.StreamHandler(stream or sys.stderr)
    writer.setFormatter(FORMATTERS[fmt]())
    _listener = _Listener(records, writer, respect_handler_level=False)
    _listener.start()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_BoundedQueueHandler(records))
    root.setLevel(level)
    # Third-party chatter that would flood the log at INFO (a line per outgoing request, per batch
    # of file changes).
    for noisy in ("httpx", "httpx2", "httpcore", "hypercorn.access", "watchfiles"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def shutdown_logging() -> None:
    """Flush and stop the writer thread. Idempotent."""
    global _listener
    if _listener is not None:
        _listener.stop()
        _listener = None


atexit.register(shutdown_logging)
