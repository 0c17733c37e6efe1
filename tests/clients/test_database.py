"""MeridianDatabase against the local PostgreSQL server and against dead or silent ports."""

from __future__ import annotations

import asyncio
import logging
import socket
import traceback
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from pydantic import SecretStr

from bot.clients.database import MeridianDatabase
from bot.clients.database_errors import translate_database_error
from bot.errors import TargetError, TargetRejected, TargetTimeout, TargetUnavailable

PASSWORD_CANARY = "canary-pw-93b1e7d04f"
SERVER = "127.0.0.1:5432"
ADMIN_DSN = f"postgresql://postgres@{SERVER}/postgres"


def dsn(user: str, *, database: str = "postgres", address: str = SERVER) -> SecretStr:
    return SecretStr(f"postgresql://{user}:{PASSWORD_CANARY}@{address}/{database}")


def assert_no_password(error: BaseException) -> None:
    """Check the message, hint, repr and the whole traceback including causes."""
    texts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    if isinstance(error, TargetError):
        texts.append(error.user_message)
    for text in texts:
        assert PASSWORD_CANARY not in text


def unused_port() -> int:
    """Return a loopback port that nothing listens on: bound once, then released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
async def exhausted_role() -> AsyncIterator[str]:
    """A role with CONNECTION LIMIT 0, which the server rejects like a full server."""
    role = f"meridian_bot_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(
            f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD_CANARY}' CONNECTION LIMIT 0"
        )
        yield role
    finally:
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """A loopback TCP server that accepts connections and never sends a byte."""
    release = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        release.set()
        server.close()
        await server.wait_closed()


@pytest.fixture
async def database() -> AsyncIterator[MeridianDatabase]:
    client = MeridianDatabase(dsn=dsn("postgres"), connect_timeout=5, statement_timeout=5)
    yield client
    await client.close()


async def test_ping_returns_version(database: MeridianDatabase) -> None:
    admin = await asyncpg.connect(ADMIN_DSN)
    expected_version = await admin.fetchval("SHOW server_version")
    await admin.close()

    ping = await database.ping()

    assert ping.server_version == expected_version
    assert 0 <= ping.latency_seconds < 5


async def test_ping_after_close_reconnects(database: MeridianDatabase) -> None:
    await database.ping()
    await database.close()
    await database.close()

    ping = await database.ping()

    assert ping.server_version


async def test_too_many_clients_unavailable(
    exhausted_role: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = MeridianDatabase(dsn=dsn(exhausted_role), connect_timeout=5)

    try:
        with pytest.raises(TargetUnavailable) as caught:
            await client.ping()
    finally:
        await client.close()

    error = caught.value
    assert type(error) is TargetUnavailable
    assert "could not connect to" in error.message.lower()
    assert "too many clients" in error.message
    assert f"{exhausted_role}:***@{SERVER}" in error.message
    assert isinstance(error.__cause__, asyncpg.TooManyConnectionsError)
    assert_no_password(error)
    assert PASSWORD_CANARY not in caplog.text
    assert PASSWORD_CANARY not in repr(client)


async def test_unknown_role_rejected() -> None:
    role = f"meridian_bot_missing_{uuid.uuid4().hex[:12]}"
    client = MeridianDatabase(dsn=dsn(role))

    with pytest.raises(TargetRejected) as caught:
        await client.ping()
    await client.close()

    assert f'role "{role}" does not exist' in caught.value.message
    assert "password" in (caught.value.hint or "")
    assert_no_password(caught.value)


async def test_unknown_database_rejected() -> None:
    database_name = f"meridian_bot_missing_{uuid.uuid4().hex[:12]}"
    client = MeridianDatabase(dsn=dsn("postgres", database=database_name))

    with pytest.raises(TargetRejected) as caught:
        await client.ping()
    await client.close()

    assert f'database "{database_name}" does not exist' in caught.value.message
    assert_no_password(caught.value)


async def test_closed_port_unavailable_quickly() -> None:
    address = f"127.0.0.1:{unused_port()}"
    client = MeridianDatabase(dsn=dsn("postgres", address=address), connect_timeout=5)

    async with asyncio.timeout(2):
        with pytest.raises(TargetUnavailable) as caught:
            await client.ping()
    await client.close()

    assert type(caught.value) is TargetUnavailable
    assert "connection was refused" in caught.value.message
    assert address in caught.value.message
    assert_no_password(caught.value)


async def test_silent_server_times_out(silent_server: str) -> None:
    client = MeridianDatabase(dsn=dsn("postgres", address=silent_server), connect_timeout=0.3)

    async with asyncio.timeout(3):
        with pytest.raises(TargetTimeout) as caught:
            await client.ping()
    await client.close()

    assert "did not respond within 0.3 seconds" in caught.value.message
    assert_no_password(caught.value)


async def test_invalid_url_rejected() -> None:
    invalid_port = SecretStr(f"postgresql://bot:{PASSWORD_CANARY}@127.0.0.1:port/meridian")
    client = MeridianDatabase(dsn=invalid_port)

    with pytest.raises(TargetRejected) as caught:
        await client.ping()
    await client.close()

    assert "is invalid" in caught.value.message
    assert_no_password(caught.value)


@pytest.mark.parametrize(
    ("exception", "error_class", "expected_text"),
    [
        (
            asyncpg.InvalidPasswordError('password authentication failed for user "bot"'),
            TargetRejected,
            'password authentication failed for user "bot"',
        ),
        (
            asyncpg.InsufficientPrivilegeError('permission denied for database "meridian"'),
            TargetRejected,
            "permission denied",
        ),
        (
            asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
            TargetTimeout,
            "statement timeout",
        ),
        (
            asyncpg.CannotConnectNowError("the database system is starting up"),
            TargetUnavailable,
            "not accepting connections",
        ),
        (
            asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
            TargetUnavailable,
            "connection was lost",
        ),
        (TimeoutError(), TargetTimeout, "within 2.5 seconds"),
    ],
)
def test_translate_database_error(
    exception: BaseException, error_class: type[TargetError], expected_text: str
) -> None:
    error = translate_database_error(
        exception, redacted_dsn="postgresql://bot:***@db:5432/meridian", timeout=2.5
    )

    assert type(error) is error_class
    assert error is not None
    assert expected_text in error.message
    assert "postgresql://bot:***@db:5432/meridian" in error.message


def test_translate_unexpected_error_is_none() -> None:
    error = translate_database_error(
        asyncpg.UndefinedTableError('relation "x" does not exist'),
        redacted_dsn="postgresql://bot:***@db/meridian",
        timeout=1,
    )

    assert error is None
