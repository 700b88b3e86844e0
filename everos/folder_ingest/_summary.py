"""The summary of one ``everos ingest``: what each file counts as (:func:`final_outcome`), the
counts and failures as plain data (what ``--json`` prints) and as a table. Pure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from everos.folder_ingest._manifest import FileRecord, needs_settling

__all__ = ["OUTCOMES", "final_outcome", "render_summary", "summarize"]

OUTCOMES = ("created", "duplicate", "accepted", "pending", "failed")


def final_outcome(record: FileRecord, waited: bool) -> str:
    """What a file counts as in the summary. Pure."""
    if record.status == "failed" or record.index_status == "failed":
        return "failed"
    if waited and needs_settling(record):
        return "pending"  # not done within --wait-timeout
    return record.status


def summarize(records: list[FileRecord], *, resumed: set[str], waited: bool, server: str, manifest: Path,
              upload_s: float, total_s: float, lag_pauses: int = 0, lag_wait_s: float = 0.0) -> dict[str, Any]:
    """The command's summary as plain data (what ``--json`` prints); ``lag_pauses`` and
    ``lag_wait_s``: the pauses while the server's index lagged, and their time. Pure."""
    outcomes = [final_outcome(r, waited) for r in records]
    counts = {name: outcomes.count(name) for name in OUTCOMES}
    sent = len(records) - len(resumed)
    return {
        "ok": counts["failed"] == 0 and counts["pending"] == 0,
        "files": len(records), **counts, "resumed": len(resumed), "sent": sent,
        "indexed": sum(r.index_status == "indexed" for r in records),
        "upload_seconds": round(upload_s, 3), "total_seconds": round(total_s, 3),
        "upload_files_per_s": round(sent / upload_s, 1) if upload_s > 0 else None,
        "index_lag_pauses": lag_pauses, "index_lag_wait_seconds": round(lag_wait_s, 3),
        "server": server, "manifest": str(manifest),
        "failures": [{"path": r.path, "reason": r.reason or "not indexed within --wait-timeout"}
                     for r, o in zip(records, outcomes) if o in ("failed", "pending")],
        "documents": [{"path": r.path, "outcome": o, "doc_id": r.doc_id, "index_status": r.index_status}
                      for r, o in zip(records, outcomes)],
    }


def render_summary(summary: dict[str, Any]) -> str:
    """The summary as a plain table: files per outcome, then each failure with its reason. Pure."""
    rows = [(name, summary[name]) for name in OUTCOMES if summary[name]]
    rows += [("resumed", summary["resumed"]), ("indexed", summary["indexed"])]
    width = max(len(name) for name, _ in rows)
    lines = [f"everos ingest: {summary['files']} files -> {summary['server']} in {summary['total_seconds']:.1f} s",
             f"{'outcome'.ljust(width)}  files"]
    lines += [f"{name.ljust(width)}  {count:>5}" for name, count in rows]
    if summary["index_lag_pauses"]:
        lines.append(f"waited for the server's index: {summary['index_lag_pauses']} times, "
                     f"{summary['index_lag_wait_seconds']:.1f} s")
    if summary["failures"]:
        lines.append("failed:")
        lines += [f"  {failure['path']}: {failure['reason']}" for failure in summary["failures"]]
    return "\n".join(lines)
