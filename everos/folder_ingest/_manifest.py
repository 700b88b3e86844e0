"""What the server acknowledged, kept across runs: one :class:`FileRecord` per file in an
append-only JSON-lines :class:`Manifest` (fsynced per line), so a rerun skips what was acknowledged
and unchanged. Its name (:func:`manifest_path`) hashes the target, the form fields and the PATH
arguments.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import trio

__all__ = ["ACKNOWLEDGED", "FileRecord", "Manifest", "manifest_path", "needs_settling"]

ACKNOWLEDGED = frozenset({"created", "duplicate", "accepted"})


@dataclasses.dataclass(frozen=True)
class FileRecord:
    """One file's state as the manifest keeps it. ``status``: ``created``, ``duplicate``,
    ``accepted`` (202, extraction pending) or ``failed``; ``index_status`` as the server says."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    status: str
    doc_id: str | None = None
    task_id: str | None = None
    index_status: str | None = None
    reason: str | None = None

    def same_file(self, stat: os.stat_result) -> bool:
        return (self.size, self.mtime_ns) == (stat.st_size, stat.st_mtime_ns)


def needs_settling(record: FileRecord) -> bool:
    """Whether ``record`` was acknowledged but is not known to be indexed yet."""
    return record.status in ACKNOWLEDGED and record.index_status not in ("indexed", "unknown")


class Manifest:
    """An append-only JSON-lines file of :class:`FileRecord`; the last line for a path wins.

    Each :meth:`append` is written and fsynced before it returns (in a thread; not cancellable
    once started, so a record is never half-written by a cancel). A line torn by a crash is
    ignored when the file is read again.
    """

    def __init__(self, path: Path, records: dict[str, FileRecord]) -> None:
        self.path = path
        self.records = records
        self._lock = trio.Lock()
        self._limiter = trio.CapacityLimiter(1)

    @classmethod
    async def open(cls, path: Path) -> Manifest:
        """Read the manifest at ``path`` (creating its folder)."""
        return cls(path, await trio.to_thread.run_sync(_read_records, path))

    async def append(self, record: FileRecord) -> None:
        line = json.dumps(dataclasses.asdict(record), ensure_ascii=False) + "\n"
        async with self._lock:
            await trio.to_thread.run_sync(_append_line, self.path, line, limiter=self._limiter)
            self.records[record.path] = record


def _read_records(path: Path) -> dict[str, FileRecord]:
    path.parent.mkdir(parents=True, exist_ok=True)
    records: dict[str, FileRecord] = {}
    with contextlib.suppress(FileNotFoundError), path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                record = FileRecord(**json.loads(line))
            except (ValueError, TypeError):
                continue  # torn by a crash mid-write, or not ours
            records[record.path] = record
    return records


def _append_line(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def manifest_path(folder: Path, target: str, form: dict[str, str], paths: Sequence[str]) -> Path:
    """The manifest of one ingest: ``folder/<hash of the target, the form fields and the PATH
    arguments, made absolute>.jsonl``; files added to a folder later resume with the rest."""
    inputs = sorted(str(Path(path).expanduser().absolute()) for path in paths)
    identity = json.dumps([target, sorted(form.items()), inputs])
    return folder / f"{hashlib.sha256(identity.encode()).hexdigest()[:20]}.jsonl"
