"""The SQLite seam: migrations at open, WAL, transactions, and what survives a restart."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import mqttproxy.storage.database as database_module
from mqttproxy.storage import Database
from mqttproxy.storage.database import StorageError
from mqttproxy.storage.migrations import MIGRATIONS


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "gateway.db")
    await database.open()
    yield database
    await database.close()


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        version: int = connection.execute("PRAGMA user_version").fetchone()[0]
    connection.close()
    return version


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    connection.close()
    return {row[0] for row in rows}


def old_file(path: Path, version: int) -> None:
    """A file as a gateway at schema ``version`` left it: its migrations applied, and some rows."""
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE keepsake (note TEXT)")
    connection.execute("INSERT INTO keepsake VALUES ('from before')")
    for _, script in MIGRATIONS[:version]:
        connection.executescript(script)
    if version >= 1:
        connection.execute(
            "INSERT INTO operators (username, password_hash, created_at) VALUES ('old', 'hash', 1.0)"
        )
    connection.execute(f"PRAGMA user_version = {version}")
    connection.commit()
    connection.close()


async def test_a_new_file_gets_every_migration(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "new.db"
    database = Database(path)
    await database.open()
    try:
        assert database.is_open
        row = await database.fetch_one("PRAGMA user_version")
        assert row == {"user_version": len(MIGRATIONS)}
    finally:
        await database.close()
    assert not database.is_open
    assert user_version(path) == len(MIGRATIONS)
    assert {"operators", "api_tokens"} <= tables(path)


@pytest.mark.parametrize("version", range(len(MIGRATIONS)), ids=lambda version: f"from-v{version}")
async def test_an_older_file_is_migrated_and_keeps_its_rows(tmp_path: Path, version: int) -> None:
    path = tmp_path / "old.db"
    old_file(path, version)
    database = Database(path)
    await database.open()
    try:
        assert await database.fetch_all("SELECT note FROM keepsake") == [{"note": "from before"}]
        if version >= 1:
            assert await database.fetch_one("SELECT username FROM operators") == {"username": "old"}
    finally:
        await database.close()
    assert user_version(path) == len(MIGRATIONS)


async def test_a_file_from_a_newer_gateway_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    old_file(path, len(MIGRATIONS))
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    connection.close()
    database = Database(path)
    try:
        with pytest.raises(StorageError, match="newer"):
            await database.open()
    finally:
        await database.close()
    assert user_version(path) == len(MIGRATIONS) + 1


async def test_a_refused_file_leaves_the_database_closed(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    connection.close()
    database = Database(path)
    try:
        with pytest.raises(StorageError):
            await database.open()
        assert not database.is_open  # no connection (and its thread) left behind
    finally:
        await database.close()


async def test_a_failing_migration_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "gateway.db"
    broken = ("half done", "CREATE TABLE half (x); INSERT INTO no_such_table VALUES (1);")
    monkeypatch.setattr(database_module, "MIGRATIONS", [*MIGRATIONS, broken])
    database = Database(path)
    with pytest.raises(StorageError):
        await database.open()
    assert not database.is_open
    assert user_version(path) == len(MIGRATIONS)
    assert "half" not in tables(path)


async def test_wal_mode_is_on(db: Database) -> None:
    assert await db.fetch_one("PRAGMA journal_mode") == {"journal_mode": "wal"}
    assert await db.fetch_one("PRAGMA foreign_keys") == {"foreign_keys": 1}


async def test_commits_reach_the_disk_before_they_return(db: Database) -> None:
    """synchronous=FULL (2): what the gateway acknowledged survives a power cut, not only a crash."""
    assert await db.fetch_one("PRAGMA synchronous") == {"synchronous": 2}


async def test_execute_returns_the_row_id_of_an_insert_and_the_count_otherwise(db: Database) -> None:
    insert = "INSERT INTO operators (username, password_hash, created_at) VALUES (?, ?, ?)"
    first = await db.execute(insert, ("a", "h", 1.0))
    second = await db.execute(
        "  insert into operators (username, password_hash, created_at) VALUES ('b', 'h', 2)"
    )
    assert (first, second) == (1, 2)
    assert await db.fetch_one("SELECT id FROM operators WHERE username = 'b'") == {"id": 2}
    assert await db.execute("UPDATE operators SET created_at = 3") == 2
    assert await db.execute("DELETE FROM operators WHERE username = 'nobody'") == 0


async def test_a_transaction_commits_together(db: Database) -> None:
    async with db.transaction() as connection:
        await connection.execute(
            "INSERT INTO operators (username, password_hash, created_at) VALUES ('a', 'h', 1)"
        )
        await connection.execute(
            "INSERT INTO operators (username, password_hash, created_at) VALUES ('b', 'h', 1)"
        )
    rows = await db.fetch_all("SELECT username FROM operators ORDER BY username")
    assert rows == [{"username": "a"}, {"username": "b"}]


async def test_a_transaction_rolls_back_on_error(db: Database) -> None:
    async def insert_then_fail() -> None:
        async with db.transaction() as connection:
            await connection.execute(
                "INSERT INTO operators (username, password_hash, created_at) VALUES ('a', 'h', 1)"
            )
            raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError, match="changed my mind"):
        await insert_then_fail()
    assert await db.fetch_all("SELECT * FROM operators") == []
    # The connection is usable afterwards.
    assert await db.execute(
        "INSERT INTO operators (username, password_hash, created_at) VALUES ('b', 'h', 1)"
    )


async def test_a_transaction_is_not_committed_by_a_concurrent_statement(db: Database) -> None:
    """Another task's ``execute`` while a transaction is open must not commit that transaction."""
    inside = asyncio.Event()
    release = asyncio.Event()

    async def rolled_back() -> None:
        async with db.transaction() as connection:
            await connection.execute(
                "INSERT INTO operators (username, password_hash, created_at) VALUES ('tx', 'h', 1)"
            )
            inside.set()
            await release.wait()
            raise RuntimeError("roll back")

    task = asyncio.create_task(rolled_back())
    await inside.wait()
    other = asyncio.create_task(
        db.execute("INSERT INTO operators (username, password_hash, created_at) VALUES ('other', 'h', 1)")
    )
    # Let the other statement finish if it can run now (it may also wait for the transaction).
    await asyncio.wait({other}, timeout=0.2)
    release.set()
    with pytest.raises(RuntimeError, match="roll back"):
        await task
    await other
    names = [row["username"] for row in await db.fetch_all("SELECT username FROM operators")]
    assert "tx" not in names, names
    assert "other" in names


async def test_rows_survive_close_and_reopen(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mqttproxy.storage")
    path = tmp_path / "gateway.db"
    database = Database(path)
    await database.open()
    await database.execute("INSERT INTO operators (username, password_hash, created_at) VALUES ('a', 'h', 1)")
    await database.close()
    assert "migrating" in caplog.text
    caplog.clear()

    reopened = Database(path)
    await reopened.open()
    try:
        assert await reopened.fetch_all("SELECT username FROM operators") == [{"username": "a"}]
        assert await reopened.fetch_one("PRAGMA user_version") == {"user_version": len(MIGRATIONS)}
    finally:
        await reopened.close()
    assert "migrating" not in caplog.text


async def test_a_closed_database_refuses_statements(tmp_path: Path) -> None:
    database = Database(tmp_path / "gateway.db")
    with pytest.raises(StorageError, match="not open"):
        await database.fetch_all("SELECT 1")
    await database.open()
    await database.close()
    with pytest.raises(StorageError, match="not open"):
        await database.execute("SELECT 1")


# --- group commit ------------------------------------------------------------------------


async def test_concurrent_statements_share_commits_and_each_is_on_disk_when_it_returns(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await db.execute("CREATE TABLE samples (k INTEGER PRIMARY KEY, v TEXT)")
    connection = db._require()
    commits = 0
    real_commit = connection.commit

    async def counting_commit() -> None:
        nonlocal commits
        commits += 1
        await real_commit()

    monkeypatch.setattr(connection, "commit", counting_commit)

    async def insert(key: int) -> None:
        await db.execute("INSERT INTO samples (k, v) VALUES (?, ?)", (key, f"v{key}"))
        # Returned means committed: another connection, another process, sees it.
        with sqlite3.connect(db.path) as other:
            assert other.execute("SELECT v FROM samples WHERE k = ?", (key,)).fetchone() == (f"v{key}",)
        other.close()

    await asyncio.gather(*(insert(key) for key in range(200)))
    assert 1 <= commits < 100  # shared, not one fsync per statement


async def test_a_failing_statement_fails_alone(db: Database) -> None:
    await db.execute("CREATE TABLE samples (k INTEGER PRIMARY KEY)")
    results = await asyncio.gather(
        *(db.execute("INSERT INTO samples (k) VALUES (?)", (key % 5,)) for key in range(10)),
        return_exceptions=True,
    )
    assert sum(isinstance(result, sqlite3.IntegrityError) for result in results) == 5
    rows = await db.fetch_all("SELECT k FROM samples ORDER BY k")
    assert [row["k"] for row in rows] == [0, 1, 2, 3, 4]


async def test_a_failed_commit_reaches_every_statement_it_held(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that refuses the commit (a fault SQLite cannot be made to produce on demand here)."""
    await db.execute("CREATE TABLE samples (k INTEGER PRIMARY KEY)")
    connection = db._require()
    real_commit = connection.commit

    async def failing_commit() -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(connection, "commit", failing_commit)
    results = await asyncio.gather(
        *(db.execute("INSERT INTO samples (k) VALUES (?)", (key,)) for key in range(5)),
        return_exceptions=True,
    )
    assert all(isinstance(result, StorageError) for result in results), results
    monkeypatch.setattr(connection, "commit", real_commit)
    await db.execute("INSERT INTO samples (k) VALUES (99)")  # later statements are not affected
    rows = await db.fetch_all("SELECT k FROM samples")
    assert [row["k"] for row in rows] == [99]


async def test_a_transaction_after_pending_statements(db: Database) -> None:
    await db.execute("CREATE TABLE samples (k INTEGER PRIMARY KEY)")
    pending = asyncio.ensure_future(db.execute("INSERT INTO samples (k) VALUES (1)"))
    await asyncio.sleep(0)
    async with db.transaction() as connection:
        await connection.execute("INSERT INTO samples (k) VALUES (2)")
    assert await pending == 1
    rows = await db.fetch_all("SELECT k FROM samples ORDER BY k")
    assert [row["k"] for row in rows] == [1, 2]


async def test_close_commits_what_waits(tmp_path: Path) -> None:
    database = Database(tmp_path / "gateway.db")
    await database.open()
    await database.execute("CREATE TABLE samples (k INTEGER PRIMARY KEY)")
    pending = asyncio.ensure_future(database.execute("INSERT INTO samples (k) VALUES (7)"))
    await asyncio.sleep(0.05)
    await database.close()
    await asyncio.gather(pending, return_exceptions=True)
    with sqlite3.connect(tmp_path / "gateway.db") as other:
        assert other.execute("SELECT k FROM samples").fetchall() == [(7,)]
    other.close()
