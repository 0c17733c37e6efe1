"""One interface over SQLite (aiosqlite) and PostgreSQL (asyncpg) for the SQL store.

Queries are written once with `?` placeholders; the PostgreSQL adapter numbers them ($1, $2...).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import aiosqlite
import asyncpg

logger = logging.getLogger(__name__)

Row = tuple[Any, ...]
# How long a SQLite statement waits for another connection's lock before failing, in seconds.
SQLITE_BUSY_TIMEOUT = 10.0
_WAL_RETRY_DELAY = 0.05
_PLACEHOLDER = re.compile(r"\?")
# Any fixed number works; all replicas must use the same one for the migration lock.
MIGRATION_LOCK_KEY = 0x6D657269  # "meri"


class Session(Protocol):
    async def execute(self, query: str, params: Sequence[Any] = ()) -> int:
        """Run a statement and return the number of rows it changed."""
        ...

    async def fetch(self, query: str, params: Sequence[Any] = ()) -> list[Row]: ...


class Connection(Protocol):
    dialect: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def session(self) -> contextlib.AbstractAsyncContextManager[Session]:
        """A session for single statements, each committed on its own."""
        ...

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Session]:
        """A session whose statements commit together or not at all."""
        ...

    def migration_lock(self) -> contextlib.AbstractAsyncContextManager[Session]:
        """A transaction that no other process migrates in at the same time."""
        ...


class _SqliteSession:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def execute(self, query: str, params: Sequence[Any] = ()) -> int:
        cursor = await self._db.execute(query, tuple(params))
        return cursor.rowcount

    async def fetch(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        async with self._db.execute(query, tuple(params)) as cursor:
            return [tuple(row) for row in await cursor.fetchall()]


class SqliteConnection:
    """One aiosqlite connection; a lock keeps each transaction's statements together."""

    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self._path = path
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(self._path, isolation_level=None)
        try:
            await db.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT * 1000)}")
            if self._path != ":memory:":
                await self._use_wal(db)
        except BaseException:
            await db.close()
            raise
        self._db = db

    async def _use_wal(self, db: aiosqlite.Connection) -> None:
        """Switch the file to write-ahead logging, waiting for other connections that block it.

        The switch needs an exclusive lock. When another connection opens or migrates the
        same new file at the same time, SQLite can report "database is locked" at once instead
        of waiting for the busy timeout, so this retries until that timeout has passed.
        """
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT
        while True:
            try:
                async with db.execute("PRAGMA journal_mode=WAL") as cursor:
                    row = await cursor.fetchone()
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(_WAL_RETRY_DELAY)
                continue
            mode = row[0] if row else None
            if mode == "wal":
                return
            if time.monotonic() >= deadline:
                # SQLite keeps the rollback journal. The store still works, with less concurrency.
                logger.warning("SQLite file %s stayed in journal mode %s instead of WAL", self._path, mode)
                return
            await asyncio.sleep(_WAL_RETRY_DELAY)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def _connection(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("the store is not open")
        return self._db

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Session]:
        async with self._lock:
            yield _SqliteSession(self._connection)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Session]:
        async with self._lock:
            # IMMEDIATE takes the write lock now, so another process cannot interleave.
            await self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteSession(self._connection)
            except BaseException:
                await self._connection.execute("ROLLBACK")
                raise
            await self._connection.execute("COMMIT")

    def migration_lock(self) -> contextlib.AbstractAsyncContextManager[Session]:
        return self.transaction()


class _PostgresSession:
    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    async def execute(self, query: str, params: Sequence[Any] = ()) -> int:
        status = await self._connection.execute(_numbered(query), *params)
        # asyncpg returns the command tag, such as "UPDATE 1" or "INSERT 0 1".
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0

    async def fetch(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        return [tuple(record) for record in await self._connection.fetch(_numbered(query), *params)]


def _numbered(query: str) -> str:
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", query)


class PostgresConnection:
    """A small asyncpg pool shared by the bot's replicas through one database."""

    dialect = "postgresql"

    def __init__(self, dsn: str, *, max_size: int = 5, timeout: float = 10.0) -> None:
        self._dsn = dsn
        self._max_size = max_size
        self._timeout = timeout
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self._dsn,
            min_size=1,
            max_size=self._max_size,
            timeout=self._timeout,
            command_timeout=self._timeout,
            server_settings={"application_name": "meridian-bot-state"},
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def _connections(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the store is not open")
        return self._pool

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Session]:
        async with self._connections.acquire() as connection:
            yield _PostgresSession(connection)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Session]:
        async with self._connections.acquire() as connection, connection.transaction():
            yield _PostgresSession(connection)

    @contextlib.asynccontextmanager
    async def migration_lock(self) -> AsyncIterator[Session]:
        async with self._connections.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
            yield _PostgresSession(connection)
