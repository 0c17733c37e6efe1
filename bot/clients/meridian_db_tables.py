"""Table operations on the Meridian PostgreSQL: TRUNCATE with its foreign keys, and audit_logs.

PostgreSQL's TRUNCATE without CASCADE fails when any other table has a foreign key to the
table, whether or not the referencing table has rows; CASCADE empties every table that
references it, transitively. TRUNCATE fires no ON DELETE triggers, only TRUNCATE triggers.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg

from bot.errors import Refused, TargetRejected, TargetUnavailable

logger = logging.getLogger(__name__)

TARGET = "database"
AUDIT_LOGS_TABLE = "audit_logs"

_TABLE = """
SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p')
"""

# Every foreign key into the table or, transitively, into a table that references it: the
# closure TRUNCATE ... CASCADE empties. UNION (not UNION ALL) ends cycles.
_REFERENCES = """
WITH RECURSIVE reached(relid) AS (
    SELECT $1::oid
    UNION
    SELECT con.conrelid
    FROM pg_constraint AS con
    JOIN reached ON con.confrelid = reached.relid
    WHERE con.contype = 'f'
)
SELECT con.oid,
       con.conname,
       con.conrelid,
       quote_ident(sn.nspname) || '.' || quote_ident(src.relname) AS referencing,
       con.confrelid,
       quote_ident(tn.nspname) || '.' || quote_ident(tgt.relname) AS referenced
FROM pg_constraint AS con
JOIN pg_class AS src ON src.oid = con.conrelid
JOIN pg_namespace AS sn ON sn.oid = src.relnamespace
JOIN pg_class AS tgt ON tgt.oid = con.confrelid
JOIN pg_namespace AS tn ON tn.oid = tgt.relnamespace
WHERE con.contype = 'f' AND con.confrelid IN (SELECT relid FROM reached)
ORDER BY referenced, referencing, con.conname
"""

_LOCK_HOLDERS = """
SELECT DISTINCT l.pid, l.mode, a.usename, coalesce(a.application_name, '') AS application_name, a.state,
       now() - coalesce(a.xact_start, a.backend_start) AS held_for
FROM pg_locks AS l
LEFT JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.granted AND l.relation = ANY($1::oid[]) AND l.pid <> pg_backend_pid()
ORDER BY held_for DESC NULLS LAST
"""

_AUDIT_LOGS = """
SELECT to_jsonb(a) AS entry
FROM audit_logs AS a
WHERE a.created_at >= now() - $1::interval
  AND ($2::text IS NULL OR a.actor::text = $2)
ORDER BY a.created_at DESC
LIMIT $3
"""


@dataclass(frozen=True, slots=True)
class TableRows:
    """A table by oid and schema-qualified, quoted name; `rows` is None when the bot may not count them."""

    oid: int
    name: str
    rows: int | None


@dataclass(frozen=True, slots=True)
class ForeignKey:
    """A foreign key constraint from `referencing` to `referenced` (schema-qualified names)."""

    oid: int
    name: str
    referencing_oid: int
    referencing: str
    referenced_oid: int
    referenced: str

    @property
    def is_self_reference(self) -> bool:
        return self.referencing_oid == self.referenced_oid

    def to_json(self) -> list[object]:
        return [self.oid, self.name, self.referencing, self.referenced]


@dataclass(frozen=True, slots=True)
class TruncateInspection:
    """A table, the foreign keys that reach it, and what TRUNCATE ... CASCADE would also empty."""

    table: TableRows
    foreign_keys: tuple[ForeignKey, ...]  # every key into the CASCADE closure
    cascade_tables: tuple[TableRows, ...]  # the closure without the table itself

    @property
    def blocking_keys(self) -> list[ForeignKey]:
        """Keys from other tables into this one: with any of them, TRUNCATE without CASCADE fails."""
        return [key for key in self.foreign_keys if key.referenced_oid == self.table.oid and not key.is_self_reference]

    @property
    def plain_truncate_fails(self) -> bool:
        return bool(self.blocking_keys)

    def to_json(self) -> dict[str, Any]:
        return {
            "table": [self.table.oid, self.table.name, self.table.rows],
            "foreign_keys": [
                [key.oid, key.name, key.referencing_oid, key.referencing, key.referenced_oid, key.referenced]
                for key in self.foreign_keys
            ],
            "cascade_tables": [[table.oid, table.name, table.rows] for table in self.cascade_tables],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TruncateInspection:
        return cls(
            table=TableRows(*data["table"]),
            foreign_keys=tuple(ForeignKey(*key) for key in data["foreign_keys"]),
            cascade_tables=tuple(TableRows(*table) for table in data["cascade_tables"]),
        )

    def identity(self) -> dict[str, object]:
        """Return what an approval binds to: the table and every key of the closure, never row counts."""
        return {
            "table_oid": self.table.oid,
            "table": self.table.name,
            "foreign_keys": [key.to_json() for key in self.foreign_keys],
            "cascade_tables": sorted([table.oid, table.name] for table in self.cascade_tables),
        }


@dataclass(frozen=True, slots=True)
class TruncateOutcome:
    """Rows each emptied table had inside the TRUNCATE's transaction, by table name."""

    rows_removed: dict[str, int]


@dataclass(frozen=True, slots=True)
class AuditLogPage:
    """Rows of audit_logs as JSON objects, newest first; `more` is True when the limit cut the list."""

    entries: tuple[dict[str, Any], ...]
    more: bool


async def inspect_truncate(connection: asyncpg.Connection, *, table: str) -> TruncateInspection:
    """Raises Refused when the table does not exist in the bot's search_path."""
    record = await connection.fetchrow(_TABLE, table)
    if record is None:
        database = await connection.fetchval("SELECT current_database()")
        raise Refused(
            f"There is no table `{table}` in database {database} (searched the bot role's search_path).",
            hint="Check that DATABASE_URL names the Meridian database.",
        )
    return await _inspect(connection, oid=record["oid"], name=record["name"])


async def _inspect(connection: asyncpg.Connection, *, oid: int, name: str) -> TruncateInspection:
    # TODO: TRUNCATE also empties inheritance children and partitions of the table, which the
    # preview and the row counts leave out; Meridian's sessions table has none today.
    keys = tuple(
        ForeignKey(
            oid=key["oid"],
            name=key["conname"],
            referencing_oid=key["conrelid"],
            referencing=key["referencing"],
            referenced_oid=key["confrelid"],
            referenced=key["referenced"],
        )
        for key in await connection.fetch(_REFERENCES, oid)
    )
    others = {key.referencing_oid: key.referencing for key in keys if key.referencing_oid != oid}
    cascade_tables = []
    for other_oid, other_name in sorted(others.items(), key=lambda item: item[1]):
        cascade_tables.append(TableRows(oid=other_oid, name=other_name, rows=await _count_rows(connection, other_name)))
    table = TableRows(oid=oid, name=name, rows=await _count_rows(connection, name))
    return TruncateInspection(table=table, foreign_keys=keys, cascade_tables=tuple(cascade_tables))


async def _count_rows(connection: asyncpg.Connection, quoted_name: str) -> int | None:
    # quoted_name comes from quote_ident on the server, so it is safe to put in the statement.
    try:
        return int(await connection.fetchval(f"SELECT count(*) FROM {quoted_name}"))
    except asyncpg.InsufficientPrivilegeError:
        return None


async def truncate(
    connection: asyncpg.Connection,
    *,
    approved: TruncateInspection,
    cascade: bool,
    lock_timeout: float,
) -> TruncateOutcome:
    """Empty the approved table, and with `cascade` the approved closure, in one transaction.

    The tables are listed explicitly (no CASCADE keyword), so a foreign key added after the
    approval makes PostgreSQL reject the TRUNCATE instead of emptying an unapproved table.
    Raises Refused when the tables changed since the approval, TargetUnavailable when the
    locks are not granted within `lock_timeout` seconds, and TargetRejected when PostgreSQL
    rejects the TRUNCATE.
    """
    tables = [approved.table, *(approved.cascade_tables if cascade else ())]
    names = ", ".join(table.name for table in tables)
    try:
        async with connection.transaction():
            await connection.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout * 1000)}ms'")
            await connection.execute(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE")

            # Adding a foreign key locks the referenced table, so under these locks the keys
            # cannot change between this check and the TRUNCATE.
            current = await _inspect(connection, oid=approved.table.oid, name=approved.table.name)
            if current.identity() != approved.identity():
                raise Refused(
                    f"The foreign keys of {approved.table.name} changed after the approval, so nothing was truncated.",
                    hint="Start a new run to review the current keys.",
                )
            rows_removed = {table.name: await _locked_row_count(connection, table.name) for table in tables}
            await connection.execute(f"TRUNCATE TABLE {names}")
    except asyncpg.LockNotAvailableError as exc:
        holders = await _lock_holders(connection, [table.oid for table in tables])
        raise TargetUnavailable(
            TARGET,
            f"Could not lock {names} within {lock_timeout:g} s, so nothing was truncated. Held by: {holders}.",
            hint="End or wait for those sessions (`/meridian db kill PID --terminate`), then start a new run.",
        ) from exc
    except asyncpg.InsufficientPrivilegeError as exc:
        raise TargetRejected(
            TARGET,
            f"PostgreSQL did not let the bot truncate {names}: {exc}.",
            hint="Grant TRUNCATE on these tables to the bot's role.",
        ) from exc
    except (asyncpg.FeatureNotSupportedError, asyncpg.RaiseError) as exc:
        # FeatureNotSupportedError: a referencing table outside the list; RaiseError: a
        # TRUNCATE trigger that rejects it. The transaction was rolled back either way.
        raise TargetRejected(TARGET, f"PostgreSQL rejected the TRUNCATE of {names}: {exc}. Nothing was truncated.") from exc

    logger.info("Truncated %s: %s", names, rows_removed)
    return TruncateOutcome(rows_removed=rows_removed)


async def _locked_row_count(connection: asyncpg.Connection, quoted_name: str) -> int:
    # Under the ACCESS EXCLUSIVE lock no other session can write, so this is exactly what TRUNCATE removes.
    return int(await connection.fetchval(f"SELECT count(*) FROM {quoted_name}"))


async def _lock_holders(connection: asyncpg.Connection, oids: list[int]) -> str:
    records = await connection.fetch(_LOCK_HOLDERS, oids)
    if not records:
        return "no session holds them any more"
    holders = []
    for record in records:
        held_for = record["held_for"]
        seconds = int(held_for.total_seconds()) if held_for is not None else 0
        holders.append(
            f"pid {record['pid']} ({record['usename'] or '?'}, {record['application_name'] or 'no application'}, "
            f"{record['state'] or 'state unknown'}, {record['mode']}, transaction open {seconds} s)"
        )
    return "; ".join(holders)


async def read_audit_logs(
    connection: asyncpg.Connection,
    *,
    since: timedelta,
    actor: str | None,
    limit: int,
) -> AuditLogPage:
    """Raises TargetRejected when audit_logs, or its created_at or actor column, is missing or unreadable."""
    try:
        records = await connection.fetch(_AUDIT_LOGS, since, actor, limit + 1)
    except asyncpg.UndefinedTableError as exc:
        raise TargetRejected(
            TARGET,
            f"The database has no table {AUDIT_LOGS_TABLE} in the bot role's search_path.",
            hint="Check that DATABASE_URL names the Meridian database.",
        ) from exc
    except asyncpg.UndefinedColumnError as exc:
        raise TargetRejected(
            TARGET,
            f"{AUDIT_LOGS_TABLE} does not have the columns the bot reads: {exc}.",
            hint="The bot filters on created_at and actor.",
        ) from exc
    except asyncpg.InsufficientPrivilegeError as exc:
        raise TargetRejected(
            TARGET,
            f"PostgreSQL did not let the bot read {AUDIT_LOGS_TABLE}: {exc}.",
            hint=f"Grant SELECT on {AUDIT_LOGS_TABLE} to the bot's role.",
        ) from exc

    entries = tuple(json.loads(record["entry"]) for record in records[:limit])
    return AuditLogPage(entries=entries, more=len(records) > limit)
