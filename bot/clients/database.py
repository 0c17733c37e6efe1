"""Client for the Meridian PostgreSQL database: a small dedicated asyncpg pool."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import NoReturn, Protocol

import asyncpg
from pydantic import SecretStr

from bot.clients import meridian_db, meridian_db_tables
from bot.clients.database_errors import translate_database_error
from bot.clients.dsn import redact_dsn
from bot.clients.meridian_db import Backend, ConnectionSummary, LongQueries, SignalOutcome
from bot.clients.meridian_db_tables import AuditLogPage, TruncateInspection, TruncateOutcome

logger = logging.getLogger(__name__)

APPLICATION_NAME = "meridian-bot"


@dataclass(frozen=True, slots=True)
class DatabasePing:
    """The server's version string and the round-trip time of `SELECT 1`."""

    server_version: str
    latency_seconds: float


class Database(Protocol):
    """The Meridian database as the health checks and the database procedures use it."""

    async def ping(self) -> DatabasePing: ...

    async def connection_summary(self) -> ConnectionSummary: ...

    async def long_queries(self, *, limit: int, min_duration: timedelta) -> LongQueries: ...

    async def backend(self, pid: int) -> tuple[Backend | None, str]: ...

    async def signal_backend(
        self,
        identity: meridian_db.BackendIdentity,
        *,
        terminate: bool,
        wait_seconds: float,
    ) -> SignalOutcome: ...

    async def inspect_truncate(self, table: str) -> TruncateInspection: ...

    async def truncate(
        self,
        approved: TruncateInspection,
        *,
        cascade: bool,
        lock_timeout: float,
    ) -> TruncateOutcome: ...

    async def audit_logs(self, *, since: timedelta, actor: str | None, limit: int) -> AuditLogPage: ...

    async def close(self) -> None: ...


class MeridianDatabase:
    """A lazily created asyncpg pool for the bot's own connections to the database.

    Connection errors surface on the first `ping`, not at construction, and a failed pool
    creation is retried on the next call.
    """

    def __init__(
        self,
        *,
        dsn: SecretStr,
        connect_timeout: float = 5.0,
        statement_timeout: float = 10.0,
        min_size: int = 0,
        max_size: int = 2,
    ) -> None:
        self._dsn = dsn
        self._redacted_dsn = redact_dsn(dsn.get_secret_value())
        self._connect_timeout = connect_timeout
        self._statement_timeout = statement_timeout
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"MeridianDatabase(dsn={self._redacted_dsn!r})"

    async def ping(self) -> DatabasePing:
        """Run `SELECT 1` and return its latency with the server's version string.

        Raises TargetUnavailable (refused, unreachable, too many clients), TargetRejected
        (bad credentials, unknown role or database, invalid URL) or TargetTimeout.
        """
        try:
            pool = await self._get_pool()
            connection = await pool.acquire(timeout=self._connect_timeout)
        except Exception as exc:
            self._raise_translated(exc, timeout=self._connect_timeout)

        try:
            started = time.perf_counter()
            await connection.fetchval("SELECT 1")
            latency = time.perf_counter() - started
            # server_version is reported by the server at connection start, so it needs no query.
            server_version = connection.get_settings().server_version
        except Exception as exc:
            self._raise_translated(exc, timeout=self._statement_timeout)
        finally:
            await pool.release(connection)

        return DatabasePing(server_version=server_version, latency_seconds=latency)

    async def connection_summary(self) -> ConnectionSummary:
        """Read every server process from pg_stat_activity with the connection limits."""
        async with self._connection("read the connections") as connection:
            return await meridian_db.read_connection_summary(connection, application_name=APPLICATION_NAME)

    async def long_queries(self, *, limit: int, min_duration: timedelta) -> LongQueries:
        """Read the longest-running non-idle client queries, leaving out the bot's own."""
        async with self._connection("read the long-running queries") as connection:
            return await meridian_db.read_long_queries(
                connection,
                application_name=APPLICATION_NAME,
                limit=limit,
                min_duration=min_duration,
            )

    async def backend(self, pid: int) -> tuple[Backend | None, str]:
        """Return the server process with this pid (None when there is none) and the current database."""
        async with self._connection(f"read backend {pid}") as connection:
            return await meridian_db.read_backend(connection, pid=pid, application_name=APPLICATION_NAME)

    async def signal_backend(
        self,
        identity: meridian_db.BackendIdentity,
        *,
        terminate: bool,
        wait_seconds: float,
    ) -> SignalOutcome:
        """Cancel or terminate the backend only if it still matches `identity`, then watch it."""
        action = "terminate" if terminate else "cancel"
        async with self._connection(f"{action} backend {identity.pid}") as connection:
            return await meridian_db.signal_backend(
                connection,
                identity=identity,
                terminate=terminate,
                wait_seconds=wait_seconds,
            )

    async def inspect_truncate(self, table: str) -> TruncateInspection:
        """Read a table's oid, row count and the foreign keys that TRUNCATE must respect."""
        async with self._connection(f"inspect table {table}") as connection:
            return await meridian_db_tables.inspect_truncate(connection, table=table)

    async def truncate(
        self,
        approved: TruncateInspection,
        *,
        cascade: bool,
        lock_timeout: float,
    ) -> TruncateOutcome:
        """Empty the approved table (and, with `cascade`, its approved referencing tables)."""
        async with self._connection(f"truncate {approved.table.name}") as connection:
            return await meridian_db_tables.truncate(
                connection,
                approved=approved,
                cascade=cascade,
                lock_timeout=lock_timeout,
            )

    async def audit_logs(self, *, since: timedelta, actor: str | None, limit: int) -> AuditLogPage:
        """Read recent rows of audit_logs, newest first."""
        async with self._connection("read audit_logs") as connection:
            return await meridian_db_tables.read_audit_logs(connection, since=since, actor=actor, limit=limit)

    @contextlib.asynccontextmanager
    async def _connection(self, purpose: str) -> AsyncIterator[asyncpg.Connection]:
        """Lend a pooled connection; failures to connect or to query become bot errors.

        BotErrors raised inside the block pass through unchanged, and so do database errors
        that `translate_database_error` does not know, which the caller should have handled.
        """
        try:
            pool = await self._get_pool()
            connection = await pool.acquire(timeout=self._connect_timeout)
        except Exception as exc:
            self._raise_translated(exc, timeout=self._connect_timeout, purpose=purpose)

        try:
            yield connection
        except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
            self._raise_translated(exc, timeout=self._statement_timeout, purpose=purpose)
        finally:
            await pool.release(connection)

    async def close(self) -> None:
        """Close the pool, waiting at most the connect timeout for busy connections."""
        async with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), timeout=self._connect_timeout)
        except TimeoutError:
            logger.warning(
                "Closing the pool for %s timed out after %g s; terminating its connections",
                self._redacted_dsn,
                self._connect_timeout,
            )
            pool.terminate()
        logger.info("Closed the database pool for %s", self._redacted_dsn)

    async def _get_pool(self) -> asyncpg.Pool:
        async with self._pool_lock:
            if self._pool is None:
                # With min_size 0 no connection is opened here; the first acquire connects.
                self._pool = await asyncpg.create_pool(
                    dsn=self._dsn.get_secret_value(),
                    min_size=self._min_size,
                    max_size=self._max_size,
                    timeout=self._connect_timeout,
                    command_timeout=self._statement_timeout,
                    server_settings={
                        "application_name": APPLICATION_NAME,
                        # The server enforces the limit too, in case the client stops waiting.
                        "statement_timeout": str(int(self._statement_timeout * 1000)),
                    },
                )
                logger.info(
                    "Created a database pool for %s (max %d connections)",
                    self._redacted_dsn,
                    self._max_size,
                )
            return self._pool

    def _raise_translated(self, exc: Exception, *, timeout: float, purpose: str = "ping") -> NoReturn:
        error = translate_database_error(exc, redacted_dsn=self._redacted_dsn, timeout=timeout)
        if error is None:
            raise exc
        logger.debug("Database %s for %s failed: %s", purpose, self._redacted_dsn, error.message)
        raise error from exc
