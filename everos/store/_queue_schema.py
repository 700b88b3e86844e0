"""The schema of a leased queue table, as the migration steps that build it (:mod:`everos.store._queue`)."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable

from everos.store._migrations import MigrationSet

__all__ = ["queue_migration"]

_SCHEMA_V1 = """
CREATE TABLE {t} (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    key TEXT UNIQUE,
    payload TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    rerun INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_expires_at REAL,
    available_at REAL NOT NULL,
    last_error TEXT,
    result TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE INDEX {t}_status_available ON {t} (status, available_at);
CREATE INDEX {t}_status_lease ON {t} (status, lease_expires_at);
CREATE INDEX {t}_finished ON {t} (finished_at);
"""

# Before step 2, last_error held the whole "CODE: message" text; a leading upper-case code moves to
# error_code. Other text (a lost lease, "ValueError: ...") has none. Frozen with the step.
_V1_CODED_ERROR = re.compile(r"([A-Z][A-Z0-9_]*): (.*)", re.DOTALL)


def _error_code_step(table: str) -> Callable[[sqlite3.Connection], None]:
    """Step 2: the error's code gets its own column; existing rows are split once."""
    def step(conn: sqlite3.Connection) -> None:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN error_code TEXT")
        for row_id, text in conn.execute(f"SELECT id, last_error FROM {table} WHERE last_error IS NOT NULL").fetchall():
            if coded := _V1_CODED_ERROR.fullmatch(text):
                conn.execute(f"UPDATE {table} SET error_code = ?, last_error = ? WHERE id = ?",
                             (coded[1], coded[2], row_id))
    return step


def queue_migration(table: str) -> MigrationSet:
    """The schema of a queue table named ``table`` (a plain SQL identifier, checked by the
    caller), as a migration set ``queue.<table>``."""
    return MigrationSet(f"queue.{table}", (_SCHEMA_V1.format(t=table), _error_code_step(table)))
