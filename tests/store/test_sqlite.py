"""Database: pragmas, migrations, transactions and the bounds of every call (G3, G5, G5a).

With ``autojump_clock`` (threshold 0) the virtual clock jumps whenever Trio is idle, including
while a SQLite thread runs, so a call's own deadline can pass before its thread answers. Tests
under that clock therefore make exactly one call that is meant to miss its deadline, after an
open (which has no deadline), and check the database with plain ``sqlite3``.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
import trio
import trio.testing

from everos.errors import ConfigError, StoreBusy
from everos.store import Database, MigrationSet, open_database, split_statements

from .conftest import sqlite_settings

# A query that never ends on its own: only the progress handler stops it.
ENDLESS_QUERY = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"


def pragma(name: str):
    return lambda conn: conn.execute(f"PRAGMA {name}").fetchone()[0]


# -- opening -----------------------------------------------------------------------------------


async def test_open_creates_parent_directories_and_sets_pragmas(db_path: Path) -> None:
    settings = sqlite_settings(synchronous="FULL", busy_timeout_ms=1234, cache_size_kb=4096)
    async with open_database(db_path, settings, trio.CapacityLimiter(2)) as db:
        assert db_path.is_file()
        assert await db.read(pragma("journal_mode")) == "wal"
        assert await db.read(pragma("synchronous")) == 2  # FULL
        assert await db.read(pragma("busy_timeout")) == 1234
        assert await db.read(pragma("cache_size")) == -4096  # negative: KiB
        assert await db.read(pragma("foreign_keys")) == 1


async def test_migration_steps_run_once_per_database(db_path: Path) -> None:
    calls: list[str] = []
    migration = MigrationSet("things", ("CREATE TABLE things (x)", lambda conn: calls.append("step 2")))
    for _ in range(2):
        async with open_database(db_path, sqlite_settings(), trio.CapacityLimiter(1), migrations=[migration]) as db:
            version = await db.fetchone("SELECT version FROM schema_migrations WHERE name = 'things'")
    assert calls == ["step 2"]
    assert version[0] == 2


async def test_migration_sets_are_tracked_independently_and_new_steps_run_alone(db_path: Path) -> None:
    first = MigrationSet("a", ("CREATE TABLE a (x)",))
    other = MigrationSet("b", ("CREATE TABLE b (x)",))
    async with open_database(db_path, sqlite_settings(), trio.CapacityLimiter(1), migrations=[first, other]):
        pass
    grown = MigrationSet("a", ("CREATE TABLE a (x)", "ALTER TABLE a ADD COLUMN y; CREATE INDEX a_y ON a (y)"))
    async with open_database(db_path, sqlite_settings(), trio.CapacityLimiter(1), migrations=[grown, other]) as db:
        rows = await db.fetchall("SELECT name, version FROM schema_migrations ORDER BY name")
        assert [tuple(r) for r in rows] == [("a", 2), ("b", 1)]
        assert await db.read(pragma("user_version")) == 1


async def test_failed_migration_step_leaves_nothing_and_runs_again_next_open(db_path: Path) -> None:
    broken = MigrationSet("m", ("CREATE TABLE one (x)", "CREATE TABLE two (x); INSERT INTO missing VALUES (1)"))
    with pytest.raises(sqlite3.OperationalError):
        await Database.open(db_path, sqlite_settings(), trio.CapacityLimiter(1), migrations=[broken])
    fixed = MigrationSet("m", ("CREATE TABLE one (x)", "CREATE TABLE two (x)"))
    async with open_database(db_path, sqlite_settings(), trio.CapacityLimiter(1), migrations=[fixed]) as db:
        assert (await db.fetchone("SELECT version FROM schema_migrations"))[0] == 2
        assert await db.fetchall("SELECT * FROM two") == []


async def test_schema_newer_than_this_build_is_refused(db_path: Path) -> None:
    async with open_database(db_path, sqlite_settings(), trio.CapacityLimiter(1),
                             migrations=[MigrationSet("m", ("SELECT 1", "SELECT 2"))]):
        pass
    with pytest.raises(ConfigError, match="newer"):
        await Database.open(db_path, sqlite_settings(), trio.CapacityLimiter(1),
                            migrations=[MigrationSet("m", ("SELECT 1",))])


async def test_duplicate_migration_set_names_are_refused(db_path: Path) -> None:
    with pytest.raises(ConfigError, match="unique"):
        await Database.open(db_path, sqlite_settings(), trio.CapacityLimiter(1),
                            migrations=[MigrationSet("m", ()), MigrationSet("m", ())])


def test_split_statements_keeps_semicolons_inside_strings_and_triggers() -> None:
    script = """
        CREATE TABLE t (x TEXT);
        INSERT INTO t VALUES ('a; b');
        CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET x = 'c'; END;
        SELECT 1
    """
    statements = split_statements(script)
    assert len(statements) == 4
    assert statements[1] == "INSERT INTO t VALUES ('a; b')"
    assert statements[2].endswith("SET x = 'c'; END")
    assert statements[3] == "SELECT 1"


# -- transactions ------------------------------------------------------------------------------


async def test_write_commits_and_conveniences_read_it(db: Database) -> None:
    assert await db.execute("INSERT INTO notes (body) VALUES (?)", ("hello",)) == 1
    assert (await db.fetchone("SELECT body FROM notes"))["body"] == "hello"
    assert [r["body"] for r in await db.fetchall("SELECT body FROM notes")] == ["hello"]
    assert await db.fetchone("SELECT body FROM notes WHERE body = 'nope'") is None


async def test_a_durable_write_syncs_its_commit_and_leaves_the_connection_as_configured(db: Database) -> None:
    """G6: an accepted upload's job row is synced at its commit (synchronous FULL for that
    transaction), not only at the next WAL checkpoint as NORMAL would; other writes keep NORMAL."""
    def synchronous(conn: sqlite3.Connection) -> int:
        count = conn.execute("SELECT count(*) FROM notes").fetchone()[0]
        conn.execute("INSERT INTO notes (body) VALUES (?)", (f"note {count}",))
        return conn.execute("PRAGMA synchronous").fetchone()[0]

    full, normal = 2, 1
    assert await db.write(synchronous, durable=True) == full
    assert await db.write(synchronous) == normal  # the same pooled connection, back as configured
    with pytest.raises(sqlite3.IntegrityError):
        await db.write(lambda conn: conn.execute("INSERT INTO notes (body) VALUES ('note 0')"), durable=True)
    assert await db.write(synchronous) == normal
    assert len(await db.fetchall("SELECT * FROM notes")) == 3


async def test_write_rolls_back_everything_when_fn_raises(db: Database) -> None:
    def insert_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO notes (body) VALUES ('first')")
        conn.execute("INSERT INTO notes (body) VALUES ('first')")  # UNIQUE violation

    with pytest.raises(sqlite3.IntegrityError):
        await db.write(insert_then_fail)
    assert await db.fetchall("SELECT * FROM notes") == []


# -- bounds (G3, G5a) ----------------------------------------------------------------------------


async def test_call_past_its_deadline_raises_store_busy(db_path: Path, autojump_clock: trio.abc.Clock) -> None:
    """G3: the Trio side gives up at call_timeout_seconds, in virtual time."""
    settings = sqlite_settings(call_timeout_seconds=5.0, statement_timeout_ms=3_600_000)
    async with open_database(db_path, settings, trio.CapacityLimiter(1)) as db:
        start = trio.current_time()
        with pytest.raises(StoreBusy, match="within 5.0 s"):
            await db.fetchone(ENDLESS_QUERY)
        assert trio.current_time() - start == pytest.approx(5.0)


async def test_write_past_its_deadline_raises_store_busy_once_its_thread_ended(
    db_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """G3 for writes: the deadline is virtual; the outcome (nothing written) is known on return."""
    settings = sqlite_settings(call_timeout_seconds=5.0, busy_timeout_ms=200)
    table = MigrationSet("t", ("CREATE TABLE t (x)",))
    async with open_database(db_path, settings, trio.CapacityLimiter(1), migrations=[table]) as db:
        holder = sqlite3.connect(db_path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreBusy, match="within 5.0 s"):
                await db.execute("INSERT INTO t VALUES (1)")
            holder.execute("ROLLBACK")
            assert holder.execute("SELECT count(*) FROM t").fetchone()[0] == 0
        finally:
            holder.close()


async def test_statement_over_statement_timeout_is_interrupted_in_its_thread(db_path: Path) -> None:
    """G5a: the thread bounds itself, whatever the Trio side waits."""
    settings = sqlite_settings(statement_timeout_ms=50, call_timeout_seconds=60.0)
    async with open_database(db_path, settings, trio.CapacityLimiter(1)) as db:
        with pytest.raises(StoreBusy, match="longer than 50 ms"):
            await db.fetchone(ENDLESS_QUERY)
        assert (await db.fetchone("SELECT 1"))[0] == 1


async def test_interrupted_write_writes_nothing(db: Database, db_path: Path) -> None:
    async with open_database(db_path, sqlite_settings(statement_timeout_ms=50), trio.CapacityLimiter(1)) as fast:
        def insert_then_spin(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO notes (body) VALUES ('partial')")
            conn.execute(ENDLESS_QUERY).fetchone()

        with pytest.raises(StoreBusy):
            await fast.write(insert_then_spin)
    assert await db.fetchall("SELECT * FROM notes") == []


async def test_write_waiting_for_a_held_lock_raises_store_busy(db_path: Path) -> None:
    async with open_database(db_path, sqlite_settings(busy_timeout_ms=100), trio.CapacityLimiter(1)) as db:
        holder = sqlite3.connect(db_path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreBusy, match="locked"):
                await db.execute("CREATE TABLE t (x)")
        finally:
            holder.close()
        assert await db.execute("CREATE TABLE t (x)") == -1


async def test_cancelled_read_returns_at_once_and_frees_its_connection(db_path: Path) -> None:
    """G5a: the abandoned thread is told to stop and gives back the only limiter token."""
    settings = sqlite_settings(statement_timeout_ms=3_600_000)
    limiter = trio.CapacityLimiter(1)
    entered = threading.Event()

    def endless(conn: sqlite3.Connection) -> None:
        entered.set()
        conn.execute(ENDLESS_QUERY).fetchone()

    async with open_database(db_path, settings, limiter) as db:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                scope = trio.CancelScope()

                async def endless_read() -> None:
                    with scope:
                        await db.read(endless)

                nursery.start_soon(endless_read)
                await trio.to_thread.run_sync(entered.wait, 30)
                scope.cancel()
            assert scope.cancelled_caught
            assert (await db.fetchone("SELECT 1"))[0] == 1  # needs the token the read held


async def test_cancelled_write_that_committed_returns_its_value(db: Database) -> None:
    """The outcome of a cancelled write is known: here it committed, so the call returns."""
    entered, gate = threading.Event(), threading.Event()

    def insert_then_wait(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO notes (body) VALUES ('kept')")
        entered.set()
        gate.wait(30)  # plain Python: the stop request cannot interrupt it
        return "done"

    results: list[str] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def writer() -> None:
                with scope:
                    results.append(await db.write(insert_then_wait))

            nursery.start_soon(writer)
            await trio.to_thread.run_sync(entered.wait, 30)
            scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            gate.set()
    assert results == ["done"]
    assert [r["body"] for r in await db.fetchall("SELECT body FROM notes")] == ["kept"]


async def test_cancelled_write_stopped_before_commit_raises_cancelled_and_writes_nothing(db: Database) -> None:
    entered, gate = threading.Event(), threading.Event()

    def insert_wait_then_query(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO notes (body) VALUES ('lost')")
        entered.set()
        gate.wait(30)
        conn.execute(ENDLESS_QUERY).fetchone()  # interrupted: the Trio side asked to stop

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def writer() -> None:
                with scope:
                    await db.write(insert_wait_then_query)

            nursery.start_soon(writer)
            await trio.to_thread.run_sync(entered.wait, 30)
            scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            gate.set()
    assert scope.cancelled_caught
    assert await db.fetchall("SELECT * FROM notes") == []


async def test_write_cancelled_while_waiting_for_a_thread_never_runs(db_path: Path) -> None:
    limiter = trio.CapacityLimiter(1)
    async with open_database(db_path, sqlite_settings(), limiter) as db:
        await db.execute("CREATE TABLE t (x)")
        async with limiter:  # every thread slot taken: the write waits on the Trio side
            with trio.move_on_after(0) as scope:
                await db.execute("INSERT INTO t VALUES (1)")
        assert scope.cancelled_caught
        assert await db.fetchall("SELECT * FROM t") == []


# -- closing -------------------------------------------------------------------------------------


async def test_aclose_is_idempotent_and_later_calls_raise_closed(db_path: Path) -> None:
    db = await Database.open(db_path, sqlite_settings(), trio.CapacityLimiter(2))
    await db.fetchone("SELECT 1")
    await db.aclose()
    await db.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await db.fetchone("SELECT 1")
    assert not Path(f"{db_path}-wal").exists()  # the last close checkpointed the WAL
