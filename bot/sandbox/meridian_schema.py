"""A Meridian-like schema with seed data, for the tests and the sandbox's database.

The tables follow what the runbook names (stablecoins, baskets, operations, audit_logs,
sessions); the columns are this sandbox's own guess, not the Meridian migrations. audit_logs
rejects UPDATE, DELETE and TRUNCATE through triggers, and session_activity references sessions,
so TRUNCATE sessions without CASCADE fails as it would on a schema with such a key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import asyncpg

logger = logging.getLogger(__name__)

SANDBOX_DATABASE = "meridian_sandbox"
API_APPLICATION_NAME = "meridian-api"
# Any fixed number works; it serializes consoles preparing the same sandbox database.
_PREPARE_LOCK_KEY = 0x6D657264  # "merd"

SCHEMA = """
CREATE TABLE IF NOT EXISTS stablecoins (
    id         serial PRIMARY KEY,
    symbol     text NOT NULL UNIQUE,
    name       text NOT NULL,
    decimals   integer NOT NULL DEFAULT 6,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS baskets (
    id            serial PRIMARY KEY,
    stablecoin_id integer NOT NULL REFERENCES stablecoins (id),
    name          text NOT NULL,
    composition   jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS operations (
    id         bigserial PRIMARY KEY,
    basket_id  integer NOT NULL REFERENCES baskets (id),
    kind       text NOT NULL CHECK (kind IN ('mint', 'burn')),
    amount     numeric(38, 6) NOT NULL,
    tx_hash    text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS sessions (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    text NOT NULL,
    token_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL DEFAULT now() + interval '1 day'
);

CREATE TABLE IF NOT EXISTS session_activity (
    id         bigserial PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    path       text NOT NULL,
    at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS audit_logs (
    id            bigserial PRIMARY KEY,
    created_at    timestamptz NOT NULL DEFAULT now(),
    actor         text NOT NULL,
    action        text NOT NULL,
    resource_type text,
    resource_id   text,
    ip_address    inet,
    details       jsonb NOT NULL DEFAULT '{}'
);

CREATE OR REPLACE FUNCTION audit_logs_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_logs is append-only: % is not allowed', TG_OP;
END
$$;

DROP TRIGGER IF EXISTS audit_logs_no_change ON audit_logs;
CREATE TRIGGER audit_logs_no_change BEFORE UPDATE OR DELETE ON audit_logs
    FOR EACH ROW EXECUTE FUNCTION audit_logs_immutable();

DROP TRIGGER IF EXISTS audit_logs_no_truncate ON audit_logs;
CREATE TRIGGER audit_logs_no_truncate BEFORE TRUNCATE ON audit_logs
    FOR EACH STATEMENT EXECUTE FUNCTION audit_logs_immutable();
"""

SEED = """
INSERT INTO stablecoins (symbol, name) VALUES ('MUSD', 'Meridian USD'), ('MEUR', 'Meridian EUR');

INSERT INTO baskets (stablecoin_id, name, composition)
SELECT 1 + (n % 2), 'basket-' || n, jsonb_build_object('USDC', 50, 'DAI', 50)
FROM generate_series(1, 5) AS n;

INSERT INTO operations (basket_id, kind, amount, tx_hash, created_at)
SELECT 1 + (n % 5), CASE WHEN n % 3 = 0 THEN 'burn' ELSE 'mint' END, n * 100.5,
       '0x' || md5(n::text), now() - n * interval '1 hour'
FROM generate_series(1, 20) AS n;

INSERT INTO sessions (user_id, token_hash, created_at)
SELECT 'user-' || (n % 4), md5('token-' || n), now() - n * interval '10 minutes'
FROM generate_series(1, %(sessions)s) AS n;

INSERT INTO session_activity (session_id, path)
SELECT s.id, '/api/v1/baskets'
FROM sessions AS s, generate_series(1, 2);

INSERT INTO audit_logs (created_at, actor, action, resource_type, resource_id, ip_address, details) VALUES
    (now() - interval '5 minutes', 'alice', 'login', 'session', 's-1', '198.51.100.7', '{"mfa": true}'),
    (now() - interval '20 minutes', 'bob', 'mint', 'basket', '2', '198.51.100.9', '{"amount": "1000"}'),
    (now() - interval '40 minutes', 'alice', 'update_basket', 'basket', '3', '198.51.100.7', '{"field": "composition"}'),
    (now() - interval '3 hours', 'mallory', 'login_failed', 'session', NULL, '203.0.113.66', '{"attempts": 12}'),
    (now() - interval '5 hours', 'alice', 'api_key_created', 'api_key', 'k-9', '198.51.100.7', '{}'),
    (now() - interval '2 days', 'bob', 'burn', 'basket', '1', '198.51.100.9', '{"amount": "250"}');
"""

SEED_SESSIONS = 12
SEED_SESSION_ACTIVITY = 2 * SEED_SESSIONS
SEED_AUDIT_LOGS = 6


async def install_schema(connection: asyncpg.Connection) -> None:
    """Create the tables and triggers when missing; safe to run again."""
    await connection.execute(SCHEMA)


async def seed(connection: asyncpg.Connection, *, sessions: int = SEED_SESSIONS) -> None:
    """Insert the seed rows into empty tables, in one transaction."""
    async with connection.transaction():
        await connection.execute(SEED.replace("%(sessions)s", str(int(sessions))))


async def grant_bot_role(connection: asyncpg.Connection, role: str) -> None:
    """Give `role` what the bot's own database role needs for the database procedures."""
    quoted = _quote(role)
    await connection.execute(f"GRANT pg_monitor, pg_signal_backend TO {quoted}")
    await connection.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {quoted}")
    await connection.execute(f"GRANT TRUNCATE ON sessions, session_activity TO {quoted}")


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


async def prepare_sandbox_database(server_url: str, *, timeout: float = 5.0) -> str:
    """Create the sandbox database with the schema and seed data when missing; return its URL.

    Several consoles may start at once, so creation tolerates a concurrent one and the seed
    is inserted under an advisory lock, only into empty tables. Sessions are seeded again
    when a rehearsed TRUNCATE left the table empty.
    """
    admin = await asyncpg.connect(server_url, timeout=timeout)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", SANDBOX_DATABASE)
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                await admin.execute(f"CREATE DATABASE {SANDBOX_DATABASE}")
    finally:
        await admin.close()

    url = server_url.rsplit("/", 1)[0] + f"/{SANDBOX_DATABASE}"
    connection = await asyncpg.connect(url, timeout=timeout)
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", _PREPARE_LOCK_KEY)
        try:
            await install_schema(connection)
            if not await connection.fetchval("SELECT count(*) FROM stablecoins"):
                await seed(connection)
                logger.info("Seeded the sandbox database %s", SANDBOX_DATABASE)
            elif not await connection.fetchval("SELECT count(*) FROM sessions"):
                await connection.execute(
                    "INSERT INTO sessions (user_id, token_hash) SELECT 'user-' || n, md5(n::text) "
                    "FROM generate_series(1, $1) AS n",
                    SEED_SESSIONS,
                )
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", _PREPARE_LOCK_KEY)
    finally:
        await connection.close()
    return url


@dataclass
class ApiSessions:
    """Connections that stand in for the Meridian API's: idle, idle in transaction, or sleeping.

    A sleeping session runs `pg_sleep` for at most `sleep_seconds`, so a forgotten one still ends.
    """

    url: str
    sleep_seconds: float = 300.0
    connections: list[asyncpg.Connection] = field(default_factory=list)
    _sleepers: list[asyncio.Task[object]] = field(default_factory=list)

    async def idle(self) -> asyncpg.Connection:
        return await self._connect()

    async def idle_in_transaction(self) -> asyncpg.Connection:
        connection = await self._connect()
        await connection.execute("BEGIN; SELECT count(*) FROM sessions")
        return connection

    async def sleeping(self) -> asyncpg.Connection:
        """Start `pg_sleep` on a new connection and return once the server shows it active."""
        connection = await self._connect()
        pid = connection.get_server_pid()
        task = asyncio.create_task(connection.execute(f"SELECT pg_sleep({self.sleep_seconds:g})"))
        self._sleepers.append(task)
        probe = await self._connect(track=False)
        try:
            async with asyncio.timeout(5):
                while await probe.fetchval("SELECT state FROM pg_stat_activity WHERE pid = $1", pid) != "active":
                    await asyncio.sleep(0.02)
        finally:
            await probe.close()
        return connection

    async def close(self) -> None:
        """Close every connection, and end their server processes: a closed socket does not stop pg_sleep."""
        pids = [connection.get_server_pid() for connection in self.connections]
        if pids:
            with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
                closer = await self._connect(track=False)
                try:
                    await closer.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE pid = ANY($1::int[]) AND application_name = $2",
                        pids,
                        API_APPLICATION_NAME,
                    )
                finally:
                    await closer.close()
        for connection in self.connections:
            connection.terminate()
        for task in self._sleepers:
            task.cancel()
        await asyncio.gather(*self._sleepers, return_exceptions=True)
        self.connections.clear()
        self._sleepers.clear()

    async def _connect(self, *, track: bool = True) -> asyncpg.Connection:
        connection = await asyncpg.connect(
            self.url, timeout=5, server_settings={"application_name": API_APPLICATION_NAME}
        )
        if track:
            self.connections.append(connection)
        return connection
