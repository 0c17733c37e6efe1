"""Server activity of the Meridian PostgreSQL: connections, long queries, cancel and terminate.

Everything here reads pg_stat_activity (PostgreSQL 15 columns). For a role without pg_monitor
(or pg_read_all_stats), the view returns a NULL state and the query `<insufficient privilege>`
for other roles' sessions. So the bot's role needs pg_monitor, and pg_signal_backend to signal
sessions of other roles.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from bot.errors import TargetRejected

logger = logging.getLogger(__name__)

CLIENT_BACKEND = "client backend"
IDLE = "idle"
ACTIVE = "active"
IDLE_IN_TRANSACTION_STATES = ("idle in transaction", "idle in transaction (aborted)")
_POLL_INTERVAL_SECONDS = 0.1

# `can_signal` mirrors the checks of PostgreSQL 15's pg_cancel_backend and pg_terminate_backend.
# A superuser may signal any backend, and only a superuser may signal a superuser's backend.
# Otherwise the caller needs the privileges of the backend's role or of pg_signal_backend.
_BACKENDS = """
SELECT a.pid,
       a.datname,
       a.usename,
       coalesce(a.application_name, '') AS application_name,
       host(a.client_addr) AS client_addr,
       a.backend_type,
       a.state,
       a.backend_start,
       a.xact_start,
       a.query_start,
       a.state_change,
       a.wait_event_type,
       a.wait_event,
       coalesce(a.query, '') AS query,
       now() AS observed_at,
       (a.pid = pg_backend_pid()
        OR (a.application_name = $1 AND a.usename = current_user)) AS is_own,
       CASE
           WHEN me.rolsuper THEN true
           WHEN r.rolsuper THEN false
           WHEN a.usesysid IS NULL THEN false
           WHEN pg_has_role(current_user, a.usesysid, 'USAGE') THEN true
           ELSE pg_has_role(current_user, 'pg_signal_backend', 'USAGE')
       END AS can_signal,
       count(*) OVER () AS matching
FROM pg_stat_activity AS a
LEFT JOIN pg_roles AS r ON r.oid = a.usesysid
CROSS JOIN (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS me
"""

_LONG_QUERIES = (
    _BACKENDS
    + """
WHERE a.backend_type = 'client backend'
  AND a.datname = current_database()
  AND a.state IS NOT NULL
  AND a.state <> 'idle'
  AND a.query_start IS NOT NULL
  AND NOT (a.pid = pg_backend_pid() OR (a.application_name = $1 AND a.usename = current_user))
  AND now() - a.query_start >= $2
ORDER BY a.query_start
LIMIT $3
"""
)

# The identity is checked in the same statement that sends the signal, so a pid that was
# reused, or a backend that moved on to another query, is never signalled.
_SIGNAL = """
SELECT CASE WHEN $4 THEN pg_terminate_backend(a.pid) ELSE pg_cancel_backend(a.pid) END AS signalled,
       a.query_start
FROM pg_stat_activity AS a
WHERE a.pid = $1
  AND a.backend_start = $2
  AND a.datname = current_database()
  AND a.backend_type = 'client backend'
  AND encode(sha256(convert_to(coalesce(a.query, ''), 'UTF8')), 'hex') = $3
  AND ($4 OR a.state = 'active')
"""

_PROCESS = "SELECT state, backend_start, query_start FROM pg_stat_activity WHERE pid = $1"


def query_digest(query: str) -> str:
    """Return the SHA-256 of a query text as pg_stat_activity shows it (hex)."""
    return hashlib.sha256(query.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Backend:
    """One server process from pg_stat_activity, as seen at `observed_at` (server time)."""

    pid: int
    database: str | None
    user: str | None
    application: str
    client_address: str | None
    backend_type: str
    state: str | None
    backend_start: datetime | None
    transaction_start: datetime | None
    query_start: datetime | None
    state_change: datetime | None
    wait_event_type: str | None
    wait_event: str | None
    query: str
    observed_at: datetime
    is_own: bool  # a connection of the bot itself (its role and application_name)
    can_signal: bool  # whether the bot's role may cancel or terminate it

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> Backend:
        return cls(
            pid=record["pid"],
            database=record["datname"],
            user=record["usename"],
            application=record["application_name"],
            client_address=record["client_addr"],
            backend_type=record["backend_type"] or "unknown",
            state=record["state"],
            backend_start=record["backend_start"],
            transaction_start=record["xact_start"],
            query_start=record["query_start"],
            state_change=record["state_change"],
            wait_event_type=record["wait_event_type"],
            wait_event=record["wait_event"],
            query=record["query"],
            observed_at=record["observed_at"],
            is_own=record["is_own"],
            can_signal=record["can_signal"],
        )

    @property
    def is_client(self) -> bool:
        return self.backend_type == CLIENT_BACKEND

    @property
    def is_idle_in_transaction(self) -> bool:
        return self.state in IDLE_IN_TRANSACTION_STATES

    @property
    def query_duration(self) -> timedelta | None:
        """How long the current (or, when idle, the last) query has been running."""
        return self.observed_at - self.query_start if self.query_start else None

    @property
    def state_duration(self) -> timedelta | None:
        """How long the backend has been in its current state."""
        return self.observed_at - self.state_change if self.state_change else None

    @property
    def transaction_duration(self) -> timedelta | None:
        return self.observed_at - self.transaction_start if self.transaction_start else None

    @property
    def wait(self) -> str:
        if self.wait_event_type is None:
            return "-"
        return f"{self.wait_event_type}:{self.wait_event}"

    @property
    def identity(self) -> BackendIdentity:
        if self.backend_start is None:
            raise ValueError(f"backend {self.pid} has no start time")
        return BackendIdentity(pid=self.pid, backend_start=self.backend_start, query_sha256=query_digest(self.query))


@dataclass(frozen=True, slots=True)
class BackendIdentity:
    """The identity of a backend session; a reused pid has another start time."""

    pid: int
    backend_start: datetime
    query_sha256: str

    def to_json(self) -> dict[str, object]:
        return {"pid": self.pid, "backend_start": self.backend_start.isoformat(), "query_sha256": self.query_sha256}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> BackendIdentity:
        return cls(
            pid=int(str(data["pid"])),
            backend_start=datetime.fromisoformat(str(data["backend_start"])),
            query_sha256=str(data["query_sha256"]),
        )


@dataclass(frozen=True, slots=True)
class ConnectionSummary:
    """Every server process with the server's connection limits."""

    database: str
    max_connections: int
    superuser_reserved_connections: int
    backends: tuple[Backend, ...]

    @property
    def clients(self) -> list[Backend]:
        """Client backends: the processes that count against max_connections."""
        return [backend for backend in self.backends if backend.is_client]

    @property
    def background_processes(self) -> int:
        return len(self.backends) - len(self.clients)

    @property
    def usage(self) -> float:
        """Client backends as a fraction of max_connections."""
        return len(self.clients) / self.max_connections if self.max_connections else 0.0

    @property
    def by_state(self) -> Counter[str]:
        return Counter(backend.state or "unknown (not visible to the bot's role)" for backend in self.clients)

    @property
    def by_user_and_application(self) -> Counter[tuple[str, str, str]]:
        return Counter(
            (backend.database or "-", backend.user or "-", backend.application or "-") for backend in self.clients
        )

    @property
    def idle_in_transaction(self) -> list[Backend]:
        """Sessions idle inside an open transaction, longest idle first."""
        sessions = [backend for backend in self.clients if backend.is_idle_in_transaction]
        return sorted(sessions, key=lambda backend: backend.state_duration or timedelta(0), reverse=True)

    @property
    def own(self) -> int:
        return sum(backend.is_own for backend in self.clients)


@dataclass(frozen=True, slots=True)
class LongQueries:
    """The longest-running non-idle queries, longest first; `matching` counts all before the limit."""

    queries: tuple[Backend, ...]
    matching: int


@dataclass(frozen=True, slots=True)
class SignalOutcome:
    """What happened to a backend after the bot sent it a cancel or terminate signal.

    `signalled` is False when the backend no longer matched the approved identity (or was no
    longer running a query, for a cancel), so no signal was sent. `ended` is whether the
    query (cancel) or the session (terminate) ended within the wait; `state` is the
    backend's state afterwards, None when its process is gone.
    """

    signalled: bool
    ended: bool
    state: str | None
    waited_seconds: float


async def read_connection_summary(connection: asyncpg.Connection, *, application_name: str) -> ConnectionSummary:
    records = await connection.fetch(_BACKENDS + " ORDER BY a.pid", application_name)
    settings = await connection.fetchrow(
        """
        SELECT current_database() AS database,
               current_setting('max_connections')::int AS max_connections,
               current_setting('superuser_reserved_connections')::int AS reserved
        """
    )
    assert settings is not None
    return ConnectionSummary(
        database=settings["database"],
        max_connections=settings["max_connections"],
        superuser_reserved_connections=settings["reserved"],
        backends=tuple(Backend.from_record(record) for record in records),
    )


async def read_long_queries(
    connection: asyncpg.Connection,
    *,
    application_name: str,
    limit: int,
    min_duration: timedelta,
) -> LongQueries:
    records = await connection.fetch(_LONG_QUERIES, application_name, min_duration, limit)
    matching = records[0]["matching"] if records else 0
    return LongQueries(queries=tuple(Backend.from_record(record) for record in records), matching=matching)


async def read_backend(connection: asyncpg.Connection, *, pid: int, application_name: str) -> tuple[Backend | None, str]:
    record = await connection.fetchrow(_BACKENDS + " WHERE a.pid = $2", application_name, pid)
    database = await connection.fetchval("SELECT current_database()")
    return (Backend.from_record(record) if record else None), database


async def signal_backend(
    connection: asyncpg.Connection,
    *,
    identity: BackendIdentity,
    terminate: bool,
    wait_seconds: float,
) -> SignalOutcome:
    """Signal the backend if it still matches `identity`, then wait until it reacts.

    Raises TargetRejected when the bot's role may not signal it.
    """
    try:
        record = await connection.fetchrow(
            _SIGNAL,
            identity.pid,
            identity.backend_start,
            identity.query_sha256,
            terminate,
        )
    except asyncpg.InsufficientPrivilegeError as exc:
        raise TargetRejected(
            "database",
            f"PostgreSQL did not let the bot signal backend {identity.pid}: {exc}.",
            hint="Grant pg_signal_backend to the bot's role; a superuser's backend can only be "
            "signalled by a superuser.",
        ) from exc
    if record is None or not record["signalled"]:
        # No row matched (the backend changed), or PostgreSQL found no such process.
        return SignalOutcome(signalled=False, ended=False, state=None, waited_seconds=0.0)

    logger.info("Sent %s to backend %d", "pg_terminate_backend" if terminate else "pg_cancel_backend", identity.pid)
    return await _wait_for_end(
        connection,
        identity=identity,
        query_start=record["query_start"],
        terminate=terminate,
        wait_seconds=wait_seconds,
    )


async def _wait_for_end(
    connection: asyncpg.Connection,
    *,
    identity: BackendIdentity,
    query_start: datetime | None,
    terminate: bool,
    wait_seconds: float,
) -> SignalOutcome:
    loop = asyncio.get_running_loop()
    started = loop.time()
    state: str | None = None
    while True:
        waited = loop.time() - started
        record = await connection.fetchrow(_PROCESS, identity.pid)
        process_is_gone = record is None or record["backend_start"] != identity.backend_start
        if process_is_gone:
            return SignalOutcome(signalled=True, ended=True, state=None, waited_seconds=waited)

        state = record["state"]
        query_ended = state != ACTIVE or record["query_start"] != query_start
        if not terminate and query_ended:
            return SignalOutcome(signalled=True, ended=True, state=state, waited_seconds=waited)
        if waited >= wait_seconds:
            return SignalOutcome(signalled=True, ended=False, state=state, waited_seconds=waited)
        await asyncio.sleep(_POLL_INTERVAL_SECONDS)
