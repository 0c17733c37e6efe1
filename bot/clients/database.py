"""Client for the Meridian PostgreSQL database: a small dedicated asyncpg pool."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import NoReturn, Protocol

import asyncpg
from pydantic import SecretStr

from bot.clients.database_errors import translate_database_error
from bot.clients.dsn import redact_dsn

logger = logging.getLogger(__name__)

APPLICATION_NAME = "meridian-bot"


@dataclass(frozen=True, slots=True)
class DatabasePing:
    """The server's version string and the round-trip time of `SELECT 1`."""

    server_version: str
    latency_seconds: float


class Database(Protocol):
    """The Meridian database as the health checks use it."""

    async def ping(self) -> DatabasePing: ...

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
                    server_settings={"application_name": APPLICATION_NAME},
                )
                logger.info(
                    "Created a database pool for %s (max %d connections)",
                    self._redacted_dsn,
                    self._max_size,
                )
            return self._pool

    def _raise_translated(self, exc: Exception, *, timeout: float) -> NoReturn:
        error = translate_database_error(exc, redacted_dsn=self._redacted_dsn, timeout=timeout)
        if error is None:
            raise exc
        logger.debug("Database ping for %s failed: %s", self._redacted_dsn, error.message)
        raise error from exc
