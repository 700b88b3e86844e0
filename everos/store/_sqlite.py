"""SQLite from Trio: a small connection pool, every call in a thread, every call bounded (G3, G5, G5a).

One :class:`Database` per SQLite file. Each call runs ``fn(conn, *args)`` in
``trio.to_thread.run_sync`` under the caller's ``CapacityLimiter``, inside one transaction, on one
pooled connection used by nobody else for the duration. Two bounds apply to every call:

* **From Trio**: ``call_timeout_seconds`` covers the wait for a thread, the wait for a connection
  and the work; past it the call raises :class:`~everos.errors.StoreBusy`.
* **Inside the thread**: a progress handler interrupts the call's SQL once it has run for
  ``statement_timeout_ms`` (or as soon as the Trio side gives up), and ``busy_timeout_ms`` bounds
  the wait for the write lock. A thread cannot be cancelled, so these bounds are what make an
  abandoned call end soon and give back its connection and its limiter token.

Schemas come from the :class:`~everos.store.MigrationSet` objects each module brings, applied when
the database is opened (see :mod:`everos.store._migrations`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import trio

from everos.config import SQLiteSettings
from everos.errors import ConfigError, StoreBusy
from everos.store._migrations import MigrationSet, apply_migrations

__all__ = ["Database", "open_database"]

T = TypeVar("T")

# The progress handler runs every this many SQLite VM instructions: often enough to stop a runaway
# statement within a millisecond or so, rarely enough to cost nothing measurable.
_PROGRESS_INSTRUCTIONS = 1000

_Transaction = Literal["read", "write", "durable", "none"]
# The [sqlite] synchronous values whose WAL commits reach the disk only at a checkpoint.
_UNSYNCED_COMMITS = ("OFF", "NORMAL")


class _Call:
    """The bound of one call, shared by its Trio side and its thread.

    The thread polls :meth:`progress` (the SQLite progress handler); the Trio side asks it to stop
    with :meth:`request_stop`. ``done`` is set on the Trio side once the thread has finished.
    """

    def __init__(self, statement_timeout_seconds: float | None) -> None:
        self._lock = threading.Lock()
        self._statement_timeout_seconds = statement_timeout_seconds
        self._deadline = math.inf
        self._token = trio.lowlevel.current_trio_token()
        self.started = False
        self.stop_requested = False
        self.timed_out = False
        self.committed = False
        self.value: Any = None
        self.done = trio.Event()

    def begin(self) -> bool:
        """In the thread: mark the call started; False if the Trio side already gave up."""
        with self._lock:
            if self.stop_requested:
                return False
            self.started = True
        if self._statement_timeout_seconds is not None:
            self._deadline = time.monotonic() + self._statement_timeout_seconds
        return True

    def progress(self) -> int:
        """The SQLite progress handler: non-zero interrupts the running statement."""
        if self.stop_requested:
            return 1
        if time.monotonic() > self._deadline:
            self.timed_out = True
            return 1
        return 0

    def request_stop(self) -> bool:
        """On the Trio side: stop the call; True if its thread had already started."""
        with self._lock:
            self.stop_requested = True
            return self.started

    def finish(self) -> None:
        """In the thread: wake the Trio side (harmless if the Trio run is already over)."""
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(self.done.set)


class _Pool:
    """Idle connections, taken and given back from worker threads.

    The limiter bounds how many are in use at once; a connection is opened when none is idle.
    Once closed, connections given back are closed instead of kept.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._closed = False

    def take(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise trio.ClosedResourceError("the database is closed")
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def give_back(self, conn: sqlite3.Connection, *, healthy: bool) -> None:
        with self._lock:
            if healthy and not self._closed:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> list[sqlite3.Connection]:
        """Refuse further takes; return the idle connections for the caller to close."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        return idle


class _Abandoned(Exception):
    """Raised in a thread whose Trio side gave up before it started; never seen by a caller."""


def _busy_error(exc: sqlite3.OperationalError) -> bool:
    name = getattr(exc, "sqlite_errorname", "")
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))


class Database:
    """A pool of connections to one SQLite file, used from Trio.

    Open it with :func:`open_database` (closes it on exit) or ``await Database.open(...)`` and
    :meth:`aclose`. At most ``limiter.total_tokens`` connections are in use at once; idle ones are
    kept until :meth:`aclose`.

    **Calls.** :meth:`read` and :meth:`write` run ``fn(conn, *args)`` in a thread inside one
    transaction (``BEGIN`` or ``BEGIN IMMEDIATE``), commit when ``fn`` returns and roll back when
    it raises. ``fn`` should do SQL and cheap Python only: its SQL is bounded inside the thread,
    plain Python is not. Rows are :class:`sqlite3.Row`.

    **Raises** (every call): :class:`~everos.errors.StoreBusy` when the call missed
    ``call_timeout_seconds``, its SQL ran past ``statement_timeout_ms``, or the write lock stayed
    taken for ``busy_timeout_ms``; ``trio.ClosedResourceError`` after :meth:`aclose`; whatever
    ``fn`` raises (``sqlite3.IntegrityError``...), after the rollback.

    **Cancellation handling.** A read whose Trio side is cancelled returns at once; its thread is
    told to stop (the progress handler interrupts its SQL), rolls back and gives back its connection
    and limiter token shortly after. A write whose Trio side is cancelled (or misses its deadline)
    is also told to stop, and the Trio side then waits, shielded, for the thread to end, so the
    outcome is known: if the write committed before the stop took effect, the call returns its
    value (the cancellation is delivered at the next checkpoint, as with
    ``abandon_on_cancel=False``); otherwise nothing was written and ``Cancelled`` (or
    ``StoreBusy``) propagates. That wait is bounded inside the thread: the progress handler stops
    SQL within about a thousand VM instructions, and a wait for the write lock within
    ``busy_timeout_ms``; a commit that has begun is never interrupted.
    """

    def __init__(self, path: Path, settings: SQLiteSettings, limiter: trio.CapacityLimiter) -> None:
        self.path = path
        self.settings = settings
        self._limiter = limiter
        self._pool = _Pool(self._connect)
        self._closed = False

    # -- opening and closing -------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: Path,
        settings: SQLiteSettings,
        limiter: trio.CapacityLimiter,
        *,
        migrations: Sequence[MigrationSet] = (),
    ) -> Database:
        """Create the parent directories and the file if needed, set the journal mode and run
        every pending migration step, in a thread.

        Not bounded by ``call_timeout_seconds`` (migrations may be long): the caller bounds it with
        its startup deadline. If cancelled, the step in progress is interrupted and rolled back,
        the connection is closed, and ``Cancelled`` propagates.

        Raises:
            ConfigError: two migration sets share a name, or the file was written by a newer
                everos (a set or the bookkeeping is at a version this build does not know).
            StoreBusy: another process held the write lock for ``busy_timeout_ms``.
        """
        names = [m.name for m in migrations]
        if len(set(names)) != len(names):
            raise ConfigError(f"migration set names must be unique, got {names}")
        db = cls(path, settings, limiter)
        await trio.to_thread.run_sync(db._ensure_parent, limiter=limiter, abandon_on_cancel=True)
        try:
            await db._call(
                functools.partial(db._prepare, tuple(migrations)),
                transaction="none",
                call_timeout_seconds=None,
                statement_timeout_seconds=None,
            )
        except BaseException:
            await db.aclose()
            raise
        return db

    async def aclose(self) -> None:
        """Close every idle connection; connections still in use close when their call ends.

        Idempotent. Calls made afterwards raise ``trio.ClosedResourceError``. The closing happens
        in a thread (the last close checkpoints the WAL) and always completes, even if this is
        cancelled: the Trio side then stops waiting for it.
        """
        if self._closed:
            return
        self._closed = True
        idle = self._pool.close()
        if not idle:
            return
        with trio.CancelScope(shield=True), trio.move_on_after(self.settings.call_timeout_seconds):
            await trio.to_thread.run_sync(_close_all, idle, limiter=self._limiter, abandon_on_cancel=True)

    # -- calls -----------------------------------------------------------------------------------

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in a thread in a deferred (``BEGIN``) transaction; return its
        value. A consistent snapshot for every statement of ``fn``. See the class for bounds."""
        return await self.run(fn, *args, write=False)

    async def write(self, fn: Callable[..., T], *args: Any, durable: bool = False) -> T:
        """Run ``fn(conn, *args)`` in a thread in a ``BEGIN IMMEDIATE`` transaction and commit.

        Returning means committed; raising means nothing was written. ``durable``: the commit is
        also synced to disk before this returns (``synchronous = FULL`` for this transaction when
        ``[sqlite] synchronous`` is weaker: with NORMAL a WAL commit survives a crash of the
        process, and a power loss only once a checkpoint synced it). See the class for bounds
        and cancellation."""
        return await self.run(fn, *args, write=True, durable=durable)

    async def run(self, fn: Callable[..., T], *args: Any, write: bool, durable: bool = False) -> T:
        """:meth:`write` when ``write`` is true, else :meth:`read`."""
        return await self._call(
            lambda conn: fn(conn, *args),
            transaction=("durable" if durable else "write") if write else "read",
            call_timeout_seconds=self.settings.call_timeout_seconds,
            statement_timeout_seconds=self.settings.statement_timeout_ms / 1000,
        )

    async def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """Run one writing statement in its own write transaction; return the rows it changed."""
        return await self.write(lambda conn: conn.execute(sql, params).rowcount)

    async def fetchone(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Row | None:
        """Run one query in a read transaction; return its first row or None."""
        return await self.read(lambda conn: conn.execute(sql, params).fetchone())

    async def fetchall(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        """Run one query in a read transaction; return all its rows."""
        return await self.read(lambda conn: conn.execute(sql, params).fetchall())

    # -- machinery ---------------------------------------------------------------------------------

    async def _call(
        self,
        body: Callable[[sqlite3.Connection], T],
        *,
        transaction: _Transaction,
        call_timeout_seconds: float | None,
        statement_timeout_seconds: float | None,
    ) -> T:
        if self._closed and transaction != "none":
            raise trio.ClosedResourceError("the database is closed")
        call = _Call(statement_timeout_seconds)
        timeout = math.inf if call_timeout_seconds is None else call_timeout_seconds
        with trio.move_on_after(timeout):
            try:
                return await trio.to_thread.run_sync(
                    self._in_thread, call, body, transaction, limiter=self._limiter, abandon_on_cancel=True
                )
            except trio.Cancelled:
                started = call.request_stop()
                if started and transaction != "read":
                    # The outcome of a write must be known: wait for the thread, which the stop
                    # request and busy_timeout bound (see the class docstring).
                    with trio.CancelScope(shield=True):
                        await call.done.wait()
                    if call.committed:
                        return call.value  # type: ignore[no-any-return]
                raise
        raise StoreBusy(
            f"SQLite call on {self.path.name} did not finish within {call_timeout_seconds} s",
            retry_after_s=1.0,
        )

    def _in_thread(self, call: _Call, body: Callable[[sqlite3.Connection], T], transaction: _Transaction) -> T:
        """Runs in a worker thread: one connection, one transaction, the progress handler armed."""
        try:
            if not call.begin():
                raise _Abandoned  # nobody waits for this call any more: touch nothing
            conn = self._pool.take()
            healthy = True
            try:
                conn.set_progress_handler(call.progress, _PROGRESS_INSTRUCTIONS)
                value = self._transact(conn, body, transaction)
            except sqlite3.OperationalError as exc:
                healthy = not conn.in_transaction
                if call.timed_out:
                    raise StoreBusy(
                        f"SQLite statement ran longer than {self.settings.statement_timeout_ms} ms and was interrupted",
                        retry_after_s=1.0,
                    ) from exc
                if _busy_error(exc):
                    raise StoreBusy(
                        f"SQLite database {self.path.name} stayed locked for {self.settings.busy_timeout_ms} ms",
                        retry_after_s=1.0,
                    ) from exc
                raise
            except BaseException:
                healthy = not conn.in_transaction
                raise
            finally:
                conn.set_progress_handler(None, 0)
                self._pool.give_back(conn, healthy=healthy)
            call.value = value
            call.committed = True
            return value
        finally:
            call.finish()

    def _transact(self, conn: sqlite3.Connection, body: Callable[[sqlite3.Connection], T],
                  transaction: _Transaction) -> T:
        if transaction == "none":
            return body(conn)
        synced = transaction == "durable" and self.settings.synchronous in _UNSYNCED_COMMITS
        if not synced:
            return self._commit(conn, body, transaction)
        conn.execute("PRAGMA synchronous = FULL")
        try:
            return self._commit(conn, body, transaction)
        finally:
            with contextlib.suppress(sqlite3.Error):  # left at FULL, the connection is only slower
                conn.execute(f"PRAGMA synchronous = {self.settings.synchronous}")

    @staticmethod
    def _commit(conn: sqlite3.Connection, body: Callable[[sqlite3.Connection], T], transaction: _Transaction) -> T:
        conn.execute("BEGIN" if transaction == "read" else "BEGIN IMMEDIATE")
        try:
            value = body(conn)
        except BaseException:
            conn.set_progress_handler(None, 0)
            if conn.in_transaction:
                conn.rollback()
            raise
        # A commit that has begun is never interrupted, so "returned" always means "committed".
        conn.set_progress_handler(None, 0)
        try:
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
        return value

    def _connect(self) -> sqlite3.Connection:
        settings = self.settings
        conn = sqlite3.connect(
            self.path,
            timeout=settings.busy_timeout_ms / 1000,
            isolation_level=None,  # transactions are explicit: BEGIN / BEGIN IMMEDIATE above
            check_same_thread=False,  # pooled: used by one worker thread at a time
        )
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(settings.busy_timeout_ms)}")
            conn.execute(f"PRAGMA synchronous = {settings.synchronous}")
            conn.execute(f"PRAGMA cache_size = {-int(settings.cache_size_kb)}")  # negative: KiB
            conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    def _prepare(self, migrations: tuple[MigrationSet, ...], conn: sqlite3.Connection) -> None:
        """In the thread, on the first connection: journal mode, bookkeeping, migrations."""
        conn.execute(f"PRAGMA journal_mode = {self.settings.journal_mode}")
        apply_migrations(conn, migrations)

    def _ensure_parent(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"<Database {str(self.path)!r}{' closed' if self._closed else ''}>"


def _close_all(conns: list[sqlite3.Connection]) -> None:
    for conn in conns:
        with contextlib.suppress(sqlite3.Error):
            conn.close()


@contextlib.asynccontextmanager
async def open_database(
    path: Path,
    settings: SQLiteSettings,
    limiter: trio.CapacityLimiter,
    *,
    migrations: Sequence[MigrationSet] = (),
) -> AsyncIterator[Database]:
    """``async with open_database(...) as db``: :meth:`Database.open`, then :meth:`Database.aclose`
    on exit, whatever happened."""
    db = await Database.open(path, settings, limiter, migrations=migrations)
    try:
        yield db
    finally:
        await db.aclose()
