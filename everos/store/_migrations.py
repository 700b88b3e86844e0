"""Schema migrations: each owner brings a named, ordered list of steps; each runs once per database.

Each set is tracked by name in ``schema_migrations(name, version, applied_at)``, so the ingest
tables, the queue tables and the cascade tables evolve independently. ``PRAGMA user_version``
records the layout of that bookkeeping table itself. Everything here blocks: it runs in the
thread :meth:`everos.store.Database.open` uses.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from everos.errors import ConfigError

__all__ = ["MigrationSet", "MigrationStep", "apply_migrations", "split_statements"]

MigrationStep = str | Callable[[sqlite3.Connection], None]

# Layout of the bookkeeping table, stored in PRAGMA user_version. A file with a larger value was
# written by a newer everos and is refused rather than misread.
_BOOKKEEPING_VERSION = 1


@dataclass(frozen=True)
class MigrationSet:
    """The ordered schema steps of one owner (a module, a queue table).

    Step ``i`` (counting from 1) brings the set to version ``i``; a step runs once per database,
    inside its own write transaction together with its version bump, so a failed step leaves
    nothing behind and runs again on the next open. Steps are SQL scripts (several statements
    allowed) or callables taking the connection. Append steps; never edit or reorder applied ones.
    """

    name: str
    steps: tuple[MigrationStep, ...]


def split_statements(script: str) -> list[str]:
    """Split an SQL script into its statements, stripped, without their final ``;``.

    Pure. A ``;`` inside a string or a trigger body does not split; a trailing fragment without
    its ``;`` is the last statement.
    """
    statements: list[str] = []
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            statement = buffer.strip().removesuffix(";").strip()
            if statement:
                statements.append(statement)
            buffer = ""
    return statements


def apply_migrations(conn: sqlite3.Connection, migrations: Iterable[MigrationSet]) -> None:
    """Bring every set to its last step, one write transaction per step."""
    with _write_transaction(conn):
        layout = conn.execute("PRAGMA user_version").fetchone()[0]
        if layout > _BOOKKEEPING_VERSION:
            raise ConfigError(
                f"database layout version {layout} is newer than this everos knows ({_BOOKKEEPING_VERSION}); "
                "upgrade everos or rebuild the index"
            )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name TEXT PRIMARY KEY, version INTEGER NOT NULL, applied_at REAL NOT NULL)"
        )
        conn.execute(f"PRAGMA user_version = {_BOOKKEEPING_VERSION}")
    for migration in migrations:
        if _version(conn, migration.name) > len(migration.steps):
            raise ConfigError(
                f"schema {migration.name!r} is at version {_version(conn, migration.name)}, newer than this "
                f"everos knows ({len(migration.steps)}); upgrade everos or rebuild the index"
            )
        for version, step in enumerate(migration.steps, start=1):
            with _write_transaction(conn):
                # Read inside the write transaction: another process may have applied it meanwhile.
                if _version(conn, migration.name) >= version:
                    continue
                if callable(step):
                    step(conn)
                else:
                    for statement in split_statements(step):
                        conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations(name, version, applied_at) VALUES (?, ?, ?)"
                    " ON CONFLICT(name) DO UPDATE SET version = excluded.version, applied_at = excluded.applied_at",
                    (migration.name, version, time.time()),
                )


def _version(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT version FROM schema_migrations WHERE name = ?", (name,)).fetchone()
    return 0 if row is None else int(row[0])


@contextlib.contextmanager
def _write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    conn.execute("COMMIT")
