"""Translation of asyncpg and socket errors into bot errors for the database target."""

from __future__ import annotations

import asyncpg

from bot.errors import TargetError, TargetRejected, TargetTimeout, TargetUnavailable

TARGET = "database"

_CREDENTIALS_HINT = "Check the user name, password and database name in the connection URL."
_RETRY_HINT = "Check that PostgreSQL is running and reachable from the bot, then retry."


def translate_database_error(
    exc: BaseException,
    *,
    redacted_dsn: str,
    timeout: float,
) -> TargetError | None:
    """Return the bot error for a failure talking to PostgreSQL, or None if it is unexpected.

    `redacted_dsn` names the server in the message, so it must already be redacted.
    `timeout` is the limit in seconds of the operation that failed. The server's own message
    is included only for rejections and cancellations, which never quote a password.
    """
    where = f"PostgreSQL at {redacted_dsn}"
    match exc:
        case asyncpg.TooManyConnectionsError():
            return TargetUnavailable(
                TARGET,
                f"Could not connect to {where}: too many clients.",
                hint="The server or the role has reached its connection limit. Retry once "
                "connections are released, and look for idle sessions in pg_stat_activity.",
            )
        case (
            asyncpg.InvalidPasswordError()
            | asyncpg.InvalidAuthorizationSpecificationError()
            | asyncpg.InvalidCatalogNameError()
            | asyncpg.InsufficientPrivilegeError()
        ):
            return TargetRejected(
                TARGET,
                f"{where} rejected the connection: {_server_message(exc)}.",
                hint=_CREDENTIALS_HINT,
            )
        case asyncpg.QueryCanceledError():
            return TargetTimeout(
                TARGET,
                f"{where} cancelled the query: {_server_message(exc)}.",
                hint="The server is overloaded or a lock blocks the query; retry later.",
            )
        case TimeoutError():
            return TargetTimeout(
                TARGET,
                f"{where} did not respond within {timeout:g} seconds.",
                hint=_RETRY_HINT,
            )
        case asyncpg.CannotConnectNowError():
            return TargetUnavailable(
                TARGET,
                f"{where} is not accepting connections yet (starting up, shutting down or "
                "in recovery).",
                hint="Retry in a minute.",
            )
        case ConnectionRefusedError():
            return TargetUnavailable(
                TARGET,
                f"Could not connect to {where}: the connection was refused.",
                hint=_RETRY_HINT,
            )
        case OSError() | asyncpg.PostgresConnectionError():
            return TargetUnavailable(
                TARGET,
                f"Could not connect to {where}, or the connection was lost.",
                hint=_RETRY_HINT,
            )
        case asyncpg.ClientConfigurationError() | ValueError():
            # The parser's message may quote the DSN, so only the redacted form is shown.
            return TargetRejected(
                TARGET,
                f"The database connection URL {redacted_dsn} is invalid.",
                hint="Correct it to the form postgresql://user:password@host:5432/database.",
            )
    return None


def _server_message(exc: BaseException) -> str:
    return str(exc.args[0]) if exc.args else type(exc).__name__
