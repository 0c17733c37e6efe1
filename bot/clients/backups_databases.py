"""The PostgreSQL server that restores and restore tests write to: new databases and their checks.

It is VERIFY_DATABASE_URL's server, or DATABASE_URL's when that is unset. The bot only
creates databases here, restores into them, reads them and drops the ones it created for a
test. The live database (DATABASE_URL's) is never a target.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic import SecretStr

from bot.clients.database_errors import translate_database_error
from bot.clients.pg_tools import PgTarget
from bot.errors import Refused, TargetError, TargetRejected, UsageError
from bot.observability.redaction import redactor

logger = logging.getLogger(__name__)

TARGET = "restore server"
CONNECT_TIMEOUT_SECONDS = 10.0
# Unquoted PostgreSQL identifiers: a letter or underscore, then letters, digits or
# underscores, at most 63 bytes (NAMEDATALEN - 1).
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Tables whose emptiness means the restore lost the data that matters most.
TABLES_THAT_MUST_HAVE_ROWS = ("baskets", "audit_logs")
IMMUTABLE_TABLE = "audit_logs"
# pg_trigger.tgtype bits (src/include/catalog/pg_trigger.h).
_TRIGGER_DELETE = 1 << 3
_TRIGGER_UPDATE = 1 << 4


def check_identifier(name: str, *, what: str) -> str:
    if not _IDENTIFIER.match(name):
        raise UsageError(
            f"`{name}` is not a valid {what}.",
            hint="Use lower-case letters, digits and underscores, starting with a letter (at most 63).",
        )
    return name


def quote_identifier(name: str) -> str:
    """Quote `name` for SQL, whatever it contains."""
    return '"' + name.replace('"', '""') + '"'


def scratch_database_name(purpose: str, *, now: datetime | None = None) -> str:
    """Generate a new database name such as `meridian_verify_20260104t040000_3fa9c1`."""
    moment = (now or datetime.now(UTC)).strftime("%Y%m%dt%H%M%S")
    return check_identifier(f"meridian_{purpose}_{moment}_{secrets.token_hex(3)}", what="database name")


@dataclass(frozen=True)
class RestoredDatabase:
    """Contents of a restored database: row counts per table and the integrity checks."""

    name: str
    row_counts: dict[str, int]
    foreign_keys: int
    immutability_triggers: tuple[str, ...]  # enabled triggers on audit_logs that stop UPDATE or DELETE
    blocks_update: bool
    blocks_delete: bool
    problems: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return not self.problems

    def figures(self) -> str:
        shown = ", ".join(f"{table} {self.row_counts[table]:,}" for table in sorted(self.row_counts))
        triggers = ", ".join(self.immutability_triggers) or "none"
        return f"rows: {shown or 'no tables'}; foreign keys: {self.foreign_keys}; audit_logs immutability triggers: {triggers}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "row_counts": self.row_counts,
            "foreign_keys": self.foreign_keys,
            "immutability_triggers": list(self.immutability_triggers),
            "blocks_update": self.blocks_update,
            "blocks_delete": self.blocks_delete,
            "problems": list(self.problems),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RestoredDatabase:
        return cls(
            name=str(data["name"]),
            row_counts={str(table): int(rows) for table, rows in data["row_counts"].items()},
            foreign_keys=int(data["foreign_keys"]),
            immutability_triggers=tuple(data["immutability_triggers"]),
            blocks_update=bool(data["blocks_update"]),
            blocks_delete=bool(data["blocks_delete"]),
            problems=tuple(data["problems"]),
        )


class RestoreServer:
    """Connections to the restore server's maintenance database and to the databases on it."""

    def __init__(
        self,
        *,
        url: SecretStr,
        live_url: SecretStr | None,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    ) -> None:
        self._url = url
        self._live = PgTarget.from_url(live_url.get_secret_value()) if live_url else None
        self._connect_timeout = connect_timeout
        self.target = PgTarget.from_url(url.get_secret_value())

    @property
    def server(self) -> str:
        return self.target.server

    def database_target(self, name: str) -> PgTarget:
        return self.target.with_database(name)

    def is_live(self, name: str) -> bool:
        """True when `name` on this server is the live database of DATABASE_URL."""
        live = self._live
        return live is not None and live.server == self.server and live.database == name

    async def database_exists(self, name: str) -> bool:
        async with self._connect() as connection:
            return bool(await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))

    async def create_database(self, name: str) -> None:
        if self.is_live(name):
            raise Refused(f"`{name}` is the live database; a restore always goes into a new database.")
        async with self._connect() as connection:
            try:
                await connection.execute(f"CREATE DATABASE {quote_identifier(name)}")
            except asyncpg.DuplicateDatabaseError as error:
                raise Refused(
                    f"The database `{name}` already exists on {self.server}.",
                    hint="A restore only goes into a new database: choose another --target-db.",
                ) from error
        logger.info("Created database %s on %s", name, self.server)

    async def drop_database(self, name: str) -> None:
        """Drop `name` and end its sessions; the live database is never dropped."""
        if self.is_live(name):
            raise Refused(f"`{name}` is the live database; the bot never drops it.")
        async with self._connect() as connection:
            await connection.execute(f"DROP DATABASE IF EXISTS {quote_identifier(name)} WITH (FORCE)")
        logger.info("Dropped database %s on %s", name, self.server)

    async def inspect(self, name: str) -> RestoredDatabase:
        """Count the rows of every table in `name` and run the integrity checks."""
        async with self._connect(database=name) as connection:
            tables = await connection.fetch(
                "SELECT c.relname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p') AND n.nspname = 'public' AND NOT c.relispartition ORDER BY 1"
            )
            counts = {}
            for row in tables:
                table = row["relname"]
                counts[table] = int(await connection.fetchval(f"SELECT count(*) FROM public.{quote_identifier(table)}"))
            foreign_keys = int(
                await connection.fetchval(
                    "SELECT count(*) FROM pg_constraint AS c JOIN pg_namespace AS n ON n.oid = c.connamespace "
                    "WHERE c.contype = 'f' AND n.nspname = 'public'"
                )
            )
            triggers = await connection.fetch(
                "SELECT t.tgname, t.tgtype FROM pg_trigger AS t JOIN pg_class AS c ON c.oid = t.tgrelid "
                "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relname = $1 AND NOT t.tgisinternal AND t.tgenabled <> 'D' "
                "ORDER BY t.tgname",
                IMMUTABLE_TABLE,
            )

        blocks_update = any(row["tgtype"] & _TRIGGER_UPDATE for row in triggers)
        blocks_delete = any(row["tgtype"] & _TRIGGER_DELETE for row in triggers)
        problems = []
        for table in TABLES_THAT_MUST_HAVE_ROWS:
            if table not in counts:
                problems.append(f"table {table} is missing")
            elif counts[table] == 0:
                problems.append(f"table {table} has no rows")
        if not (blocks_update and blocks_delete):
            problems.append("audit_logs has no enabled trigger that blocks UPDATE and DELETE")
        if foreign_keys == 0:
            problems.append("no foreign keys were restored")
        return RestoredDatabase(
            name=name,
            row_counts=counts,
            foreign_keys=foreign_keys,
            immutability_triggers=tuple(row["tgname"] for row in triggers if row["tgtype"] & (_TRIGGER_UPDATE | _TRIGGER_DELETE)),
            blocks_update=blocks_update,
            blocks_delete=blocks_delete,
            problems=tuple(problems),
        )

    async def connect(self, database: str) -> asyncpg.Connection:
        """Open a connection to `database` on this server; the caller closes it."""
        try:
            return await asyncpg.connect(
                self._dsn(database), timeout=self._connect_timeout, server_settings={"application_name": "meridian-bot"}
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise translate_server_error(error, self.server) from error

    def _dsn(self, database: str | None) -> str:
        url = self._url.get_secret_value()
        if database is None:
            return url
        base, _, query = url.partition("?")
        return base.rsplit("/", 1)[0] + "/" + database + (f"?{query}" if query else "")

    def _connect(self, database: str | None = None) -> _Connection:
        return _Connection(self, database or self.target.database)


class _Connection:
    """`async with`: a connection that is closed at the end, with errors in the bot's terms."""

    def __init__(self, server: RestoreServer, database: str) -> None:
        self._server = server
        self._database = database
        self._connection: asyncpg.Connection | None = None

    async def __aenter__(self) -> asyncpg.Connection:
        self._connection = await self._server.connect(self._database)
        return self._connection

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: Any) -> None:
        if self._connection is not None:
            await self._connection.close()
        if isinstance(exc, (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)) and not isinstance(exc, TargetError):
            raise translate_server_error(exc, self._server.server) from exc


def translate_server_error(error: BaseException, server: str) -> TargetError:
    """Translate a failed connection or statement on `server` (`host:port`) into a bot error."""
    known = translate_database_error(error, redacted_dsn=server, timeout=CONNECT_TIMEOUT_SECONDS)
    if known is not None:
        return known
    message = redactor.scrub(str(error.args[0]) if error.args else type(error).__name__)[:300]
    return TargetRejected(TARGET, f"PostgreSQL at {server} rejected the request: {message}.")
