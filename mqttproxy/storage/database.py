"""SQLite behind a small async API.

aiosqlite runs every statement on one thread of its own, so the event loop
never blocks on the disk. WAL mode lets readers and the writer proceed
together; migrations bring any older file up to the current schema at open.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from mqttproxy.errors import MqttProxyError
from mqttproxy.storage.migrations import MIGRATIONS

logger = logging.getLogger(__name__)

Row = dict[str, Any]
Params = Sequence[Any]


class StorageError(MqttProxyError):
    """The database could not be opened, migrated or written."""


class Database:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._connection: aiosqlite.Connection | None = None
        # One writer at a time: a commit is connection-wide, so a statement run
        # during another task's transaction would commit (or lose) its work.
        self._writing = asyncio.Lock()
        # Group commit: statements from ``execute`` share the next commit (one fsync) with the
        # statements other tasks ran meanwhile. Numbered as run; ``_committed`` is the highest
        # number known to be on disk (or to have failed with its commit).
        self._executed = 0
        self._committed = 0
        self._commit_task: asyncio.Task[None] | None = None
        self._failures: deque[tuple[int, int, Exception]] = deque(maxlen=16)  # (first, last, error)

    @property
    def is_open(self) -> bool:
        return self._connection is not None

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._connection = await aiosqlite.connect(self.path)
            self._connection.row_factory = aiosqlite.Row
            await self._connection.execute("PRAGMA journal_mode=WAL")
            await self._connection.execute("PRAGMA foreign_keys=ON")
            # FULL: a commit is on disk before it returns, so what the gateway acknowledged (a shadow
            # update, a new token) survives a power cut, common at edge sites. In WAL mode that is one
            # fsync of the log per transaction; writers batch (presence, timeseries) to keep them few.
            await self._connection.execute("PRAGMA synchronous=FULL")
            await self._migrate()
        except aiosqlite.Error as exc:
            await self.close()
            raise StorageError(f"{self.path}: {exc}") from exc
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            async with self._writing:
                await self._commit_executed(connection)  # closing would roll back what waits for it
            await connection.close()

    async def _migrate(self) -> None:
        version = (await self.fetch_one("PRAGMA user_version") or {}).get("user_version", 0)
        if version > len(MIGRATIONS):
            raise StorageError(
                f"{self.path} has schema version {version}, newer than this gateway knows ({len(MIGRATIONS)})"
            )
        for number, (description, script) in enumerate(MIGRATIONS[version:], start=version + 1):
            logger.info("%s: migrating to schema version %d (%s)", self.path, number, description)
            connection = self._require()
            # executescript commits first; the BEGIN makes the step and its version one transaction.
            await connection.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")

    def _require(self) -> aiosqlite.Connection:
        if self._connection is None:
            raise StorageError(f"{self.path} is not open")
        return self._connection

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement and commit; return the last inserted row id (or the row count).

        Returns once the statement is committed. Concurrent callers share commits: with
        ``synchronous=FULL`` a commit costs an fsync, and many devices updating their shadows at
        once would otherwise wait on one fsync each, in turn.
        """
        connection = self._require()
        async with self._writing:
            cursor = await connection.execute(sql, params)
            self._executed += 1
            number = self._executed
        while self._committed < number:
            task = self._commit_task
            if task is None or task.done():
                task = self._commit_task = asyncio.create_task(self._commit(), name="database-commit")
            # Shielded: a caller that gives up must not cancel the commit of everyone else.
            await asyncio.shield(task)
        for first, last, error in self._failures:
            if first <= number <= last:
                raise StorageError(f"{self.path}: commit failed: {error}") from error
        if sql.lstrip().upper().startswith("INSERT"):
            return cursor.lastrowid or 0
        return cursor.rowcount

    async def _commit(self) -> None:
        async with self._writing:
            await self._commit_executed(self._require())

    async def _commit_executed(self, connection: aiosqlite.Connection) -> None:
        """With the write lock held: commit what ``execute`` has run; a failure is kept for its callers."""
        first, last = self._committed + 1, self._executed
        if first > last:
            return
        try:
            await connection.commit()
        except (aiosqlite.Error, OSError) as exc:
            # Those statements are lost and their callers told; the next ones start afresh.
            await connection.rollback()
            self._failures.append((first, last, exc))
            logger.error("%s: commit of %d statements failed: %s", self.path, last - first + 1, exc)
        self._committed = last

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        async with self._require().execute(sql, params) as cursor:
            return [dict(row) for row in await cursor.fetchall()]

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        async with self._require().execute(sql, params) as cursor:
            row = await cursor.fetchone()
        return dict(row) if row is not None else None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Several statements that stand or fall together."""
        connection = self._require()
        async with self._writing:
            # Statements of ``execute`` may wait in an implicit transaction, where BEGIN would fail.
            await self._commit_executed(connection)
            await connection.execute("BEGIN")
            try:
                yield connection
            except BaseException:
                await connection.rollback()
                raise
            await connection.commit()
