"""Copy a table's rows from a scratch database into the live table, adding only missing rows.

pg_restore's `--data-only --disable-triggers` into the live database needs superuser (RDS
never grants it) and would switch off the audit_logs immutability trigger. Instead, the rows
are streamed with COPY (binary) from the scratch database into a temporary table on the live
connection, compared with the live table by primary key, and inserted with
`INSERT ... ON CONFLICT DO NOTHING` in one transaction, with every trigger on. Memory stays
bounded: at most `_QUEUED_CHUNKS` COPY chunks are held between the two connections.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg

from bot.clients.backups_databases import quote_identifier
from bot.errors import Refused, TargetRejected
from bot.observability.redaction import redactor

logger = logging.getLogger(__name__)

TARGET = "database"
STAGING_TABLE = "meridian_bot_restored_rows"
_QUEUED_CHUNKS = 16
_DONE = object()


@dataclass(frozen=True)
class TableComparison:
    """How the backup's rows of one table compare with the live table's, by primary key."""

    table: str
    columns: tuple[str, ...]
    primary_key: tuple[str, ...]
    rows_in_backup: int
    rows_to_add: int
    rows_conflicting: int  # same primary key in both
    rows_conflicting_different: int  # of those, rows whose values differ

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "columns": list(self.columns),
            "primary_key": list(self.primary_key),
            "rows_in_backup": self.rows_in_backup,
            "rows_to_add": self.rows_to_add,
            "rows_conflicting": self.rows_conflicting,
            "rows_conflicting_different": self.rows_conflicting_different,
        }


@dataclass(frozen=True)
class TableCopyOutcome:
    comparison: TableComparison
    rows_added: int

    @property
    def rows_skipped(self) -> int:
        return self.comparison.rows_in_backup - self.rows_added


async def table_columns(connection: asyncpg.Connection, table: str) -> list[tuple[str, str]]:
    """(name, type) of the table's ordinary columns in order; empty when there is no such table."""
    rows = await connection.fetch(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type FROM pg_attribute AS a "
        "JOIN pg_class AS c ON c.oid = a.attrelid JOIN pg_namespace AS n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relname = $1 AND a.attnum > 0 AND NOT a.attisdropped "
        "AND a.attgenerated = '' ORDER BY a.attnum",
        table,
    )
    return [(row["attname"], row["type"]) for row in rows]


async def primary_key(connection: asyncpg.Connection, table: str) -> tuple[str, ...]:
    rows = await connection.fetch(
        "SELECT a.attname FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indrelid "
        "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
        "JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, position) ON true "
        "JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum = k.attnum "
        "WHERE n.nspname = 'public' AND c.relname = $1 AND i.indisprimary ORDER BY k.position",
        table,
    )
    return tuple(row["attname"] for row in rows)


def check_compatible(table: str, backup: list[tuple[str, str]], live: list[tuple[str, str]]) -> None:
    """Raise Refused unless every column of the backup exists in the live table with its type."""
    if not backup:
        raise Refused(f"The backup has no table `{table}`.", hint="`pg_restore --list` on the dump shows its tables.")
    live_types = dict(live)
    differences = [
        f"{name} ({kind} in the backup, {live_types.get(name, 'missing')} live)"
        for name, kind in backup
        if live_types.get(name) != kind
    ]
    if differences:
        raise Refused(
            f"The columns of `{table}` changed since the backup: {', '.join(differences)}.",
            hint="Nothing was changed. Restore the whole backup into a new database with `/meridian restore` "
            "and copy the rows by hand.",
        )


async def compare_and_copy(
    *,
    live: asyncpg.Connection,
    scratch: asyncpg.Connection,
    table: str,
    apply: bool,
) -> TableCopyOutcome:
    """Stage the scratch table's rows on `live`, compare them, and insert the missing ones if `apply`.

    Everything happens in one transaction on `live`, which is rolled back when `apply` is false
    or anything fails, so the live table is either unchanged or has every missing row added.
    """
    backup_columns = await table_columns(scratch, table)
    live_columns = await table_columns(live, table)
    if not live_columns:
        raise Refused(f"The live database has no table `{table}`.")
    check_compatible(table, backup_columns, live_columns)
    key = await primary_key(live, table)
    if not key:
        raise Refused(
            f"`{table}` has no primary key, so rows that already exist cannot be told apart from missing ones.",
            hint="Nothing was changed. Restore into a new database with `/meridian restore` instead.",
        )
    columns = tuple(name for name, _ in backup_columns)
    if not set(key) <= set(columns):
        raise Refused(f"The backup of `{table}` lacks primary-key columns {', '.join(key)}.")

    quoted_table = f"public.{quote_identifier(table)}"
    column_list = ", ".join(quote_identifier(name) for name in columns)
    staging = quote_identifier(STAGING_TABLE)
    transaction = live.transaction()
    await transaction.start()
    try:
        await live.execute(
            f"CREATE TEMPORARY TABLE {staging} ON COMMIT DROP AS SELECT {column_list} FROM {quoted_table} WITH NO DATA"
        )
        await _stream_rows(scratch=scratch, live=live, table=table, columns=columns)
        comparison = await _compare(live, table=table, columns=columns, key=key)
        rows_added = 0
        if apply:
            status = await live.execute(
                f"INSERT INTO {quoted_table} ({column_list}) SELECT {column_list} FROM {staging} ON CONFLICT DO NOTHING"
            )
            rows_added = int(status.split()[-1])
    except asyncpg.PostgresError as error:
        await transaction.rollback()
        raise _copy_error(table, error) from error
    except BaseException:
        await transaction.rollback()
        raise
    if apply:
        await transaction.commit()
        logger.info("Restored %d rows into %s (%d were skipped)", rows_added, table, comparison.rows_in_backup - rows_added)
    else:
        await transaction.rollback()
    return TableCopyOutcome(comparison=comparison, rows_added=rows_added)


async def _stream_rows(*, scratch: asyncpg.Connection, live: asyncpg.Connection, table: str, columns: tuple[str, ...]) -> None:
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=_QUEUED_CHUNKS)

    async def produce() -> None:
        try:
            await scratch.copy_from_table(table, schema_name="public", columns=list(columns), output=queue.put, format="binary")
        finally:
            await queue.put(_DONE)

    async def chunks() -> AsyncIterator[bytes]:
        while (chunk := await queue.get()) is not _DONE:
            yield chunk

    producer = asyncio.create_task(produce())
    try:
        await live.copy_to_table(STAGING_TABLE, source=chunks(), columns=list(columns), format="binary")
    finally:
        if not producer.done():
            producer.cancel()
        await asyncio.gather(producer, return_exceptions=True)
    producer.result()


async def _compare(live: asyncpg.Connection, *, table: str, columns: tuple[str, ...], key: tuple[str, ...]) -> TableComparison:
    staging = quote_identifier(STAGING_TABLE)
    quoted_table = f"public.{quote_identifier(table)}"
    joined = " AND ".join(f"l.{quote_identifier(name)} = s.{quote_identifier(name)}" for name in key)
    # Text comparison works for every type, including those without an equality operator (json).
    differs = " OR ".join(f"l.{quote_identifier(name)}::text IS DISTINCT FROM s.{quote_identifier(name)}::text" for name in columns)
    row = await live.fetchrow(
        f"SELECT (SELECT count(*) FROM {staging}) AS total, "
        f"count(l.*) AS conflicting, count(l.*) FILTER (WHERE {differs}) AS different "
        f"FROM {staging} AS s JOIN {quoted_table} AS l ON {joined}"
    )
    assert row is not None
    total, conflicting = int(row["total"]), int(row["conflicting"])
    return TableComparison(
        table=table,
        columns=columns,
        primary_key=key,
        rows_in_backup=total,
        rows_to_add=total - conflicting,
        rows_conflicting=conflicting,
        rows_conflicting_different=int(row["different"]),
    )


def _copy_error(table: str, error: asyncpg.PostgresError) -> TargetRejected:
    message = redactor.scrub(str(error.args[0]) if error.args else type(error).__name__)[:300]
    if isinstance(error, asyncpg.ForeignKeyViolationError):
        reason = f"a restored row references a row that does not exist ({message})"
    elif isinstance(error, asyncpg.InsufficientPrivilegeError):
        reason = f"the bot's database role lacks a privilege ({message}); it needs SELECT and INSERT on {table}"
    else:
        reason = message
    return TargetRejected(TARGET, f"Copying rows into {table} failed: {reason}.", hint="The transaction was rolled back, so nothing was changed.")
