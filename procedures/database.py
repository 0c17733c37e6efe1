"""Database Operations and INC-002 (pool exhaustion): connections, long queries, audit logs.

The actions (cancel or terminate a backend, TRUNCATE sessions) are in `database_kill` and
`database_truncate`; this module gathers every database command.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.clients.meridian_db import Backend, ConnectionSummary
from bot.durations import format_duration
from bot.engine.arguments import Option
from bot.engine.catalog import Command
from bot.engine.context import StepContext
from bot.engine.procedure import Level, Procedure, Risk, Step, StepResult
from procedures import database_kill, database_truncate
from procedures.database_common import (
    STEP_TIMEOUT_SECONDS,
    age,
    database,
    shorten,
    table,
)

INCIDENT_SECTION = "Incident Response Procedures"
EMERGENCY_SECTION = "Emergency Procedures"

# Thresholds of the connection report; judgment calls, not PostgreSQL limits.
CONNECTIONS_WARNING_USAGE = 0.75
CONNECTIONS_CRITICAL_USAGE = 0.9
IDLE_IN_TRANSACTION_WARNING = timedelta(seconds=60)
LONG_QUERY_WARNING = timedelta(seconds=60)

DEFAULT_LONG_QUERIES = 10
MAX_LONG_QUERIES = 50
DEFAULT_AUDIT_SINCE_SECONDS = 24 * 3600.0
DEFAULT_AUDIT_ENTRIES = 20
MAX_AUDIT_ENTRIES = 200
_AUDIT_HEADLINE_FIELDS = ("id", "created_at", "actor", "action")


# db connections


async def read_connections(ctx: StepContext) -> StepResult:
    summary = await database(ctx).connection_summary()
    clients = summary.clients
    idle_in_transaction = summary.idle_in_transaction

    parts = [f"{len(clients)} of {summary.max_connections} connections ({summary.usage:.0%})"]
    parts.extend(f"{count} {state}" for state, count in sorted(summary.by_state.items()))
    if idle_in_transaction:
        parts.append(f"oldest idle in transaction {age(idle_in_transaction[0].state_duration)} (pid {idle_in_transaction[0].pid})")

    return StepResult(
        summary=" · ".join(parts),
        level=_connections_level(summary),
        detail=_connections_detail(summary),
        detail_title="Connections",
        data={
            "total": len(clients),
            "max_connections": summary.max_connections,
            "by_state": dict(summary.by_state),
            "idle_in_transaction_pids": [backend.pid for backend in idle_in_transaction],
        },
    )


def _connections_level(summary: ConnectionSummary) -> Level:
    if summary.usage >= CONNECTIONS_CRITICAL_USAGE:
        return Level.CRITICAL
    stale_transaction = any(
        (backend.state_duration or timedelta(0)) >= IDLE_IN_TRANSACTION_WARNING for backend in summary.idle_in_transaction
    )
    if summary.usage >= CONNECTIONS_WARNING_USAGE or stale_transaction:
        return Level.WARNING
    return Level.OK


def _connections_detail(summary: ConnectionSummary) -> str:
    clients = summary.clients
    sections = [
        f"Client connections: {len(clients)} of max_connections {summary.max_connections} "
        f"({summary.superuser_reserved_connections} reserved for superusers), of which the bot's own: {summary.own}.",
        f"Background processes (not counted against max_connections): {summary.background_processes}.",
        f"The bot is connected to database {summary.database}.",
        "",
        "By state",
        table(("STATE", "COUNT"), sorted(summary.by_state.items())),
        "",
        "By database, user and application",
        table(
            ("DATABASE", "USER", "APPLICATION", "COUNT"),
            [(*key, count) for key, count in sorted(summary.by_user_and_application.items())],
        ),
    ]
    idle_in_transaction = summary.idle_in_transaction
    if idle_in_transaction:
        sections += [
            "",
            "Idle in transaction (longest idle first); each holds its locks and a connection",
            table(
                ("PID", "DATABASE", "USER", "APPLICATION", "IDLE FOR", "TRANSACTION OPEN", "LAST QUERY"),
                [
                    (
                        backend.pid,
                        backend.database or "-",
                        backend.user or "-",
                        backend.application or "-",
                        age(backend.state_duration),
                        age(backend.transaction_duration),
                        shorten(backend.query, 80),
                    )
                    for backend in idle_in_transaction
                ],
            ),
        ]
    return "\n".join(sections)


CONNECTIONS = Procedure(
    name="db-connections",
    title="Database connections",
    summary="Count connections by state, user and application against max_connections",
    risk=Risk.READ,
    section=INCIDENT_SECTION,
    stages=(Step("connections", "Connections", read_connections, timeout=STEP_TIMEOUT_SECONDS),),
)


# db long-queries


async def read_long_queries(ctx: StepContext) -> StepResult:
    limit = min(ctx.args.get("limit") or DEFAULT_LONG_QUERIES, MAX_LONG_QUERIES)
    min_duration = timedelta(seconds=ctx.args.get("min_duration") or 0)
    found = await database(ctx).long_queries(limit=limit, min_duration=min_duration)

    threshold = f" running for {format_duration(min_duration)} or more" if min_duration else ""
    if not found.queries:
        return StepResult(summary=f"no non-idle queries{threshold} (the bot's own are left out)")

    longest = found.queries[0]
    shown = f"{len(found.queries)} of {found.matching}" if found.matching > len(found.queries) else str(len(found.queries))
    summary = f"{shown} non-idle queries{threshold}; longest {age(longest.query_duration)} (pid {longest.pid}, {longest.state})"
    level = Level.WARNING if (longest.query_duration or timedelta(0)) >= LONG_QUERY_WARNING else Level.OK
    return StepResult(
        summary=summary,
        level=level,
        detail="\n\n".join(_describe_query(backend) for backend in found.queries),
        detail_title="Long-running queries",
        data={"pids": [backend.pid for backend in found.queries], "matching": found.matching},
    )


def _describe_query(backend: Backend) -> str:
    facts = [
        f"pid {backend.pid}",
        f"{backend.user or '-'}@{backend.database or '-'}",
        backend.application or "no application",
        backend.state or "unknown state",
        f"wait {backend.wait}",
        f"running {age(backend.query_duration)}",
    ]
    return " · ".join(facts) + "\n  " + shorten(backend.query)


LONG_QUERIES = Procedure(
    name="db-long-queries",
    title="Long-running queries",
    summary="List the longest-running non-idle queries (the bot's own are left out)",
    risk=Risk.READ,
    section=INCIDENT_SECTION,
    stages=(Step("queries", "Non-idle queries", read_long_queries, timeout=STEP_TIMEOUT_SECONDS),),
)


# db audit-logs


async def read_audit_logs(ctx: StepContext) -> StepResult:
    limit = min(ctx.args.get("limit") or DEFAULT_AUDIT_ENTRIES, MAX_AUDIT_ENTRIES)
    since = timedelta(seconds=ctx.args.get("since") or DEFAULT_AUDIT_SINCE_SECONDS)
    actor = ctx.args.get("actor")
    page = await database(ctx).audit_logs(since=since, actor=actor, limit=limit)

    scope = f"in the last {format_duration(since)}" + (f" by {actor}" if actor else "")
    if not page.entries:
        return StepResult(summary=f"no audit_logs entries {scope}")
    more = f" (the newest {limit}; more exist, raise --limit or narrow --since)" if page.more else ""
    return StepResult(
        summary=f"{len(page.entries)} audit_logs entries {scope}{more}",
        detail="\n".join(_describe_audit_entry(entry) for entry in page.entries),
        detail_title="audit_logs",
        data={"entries": len(page.entries), "more": page.more},
    )


def _describe_audit_entry(entry: dict[str, Any]) -> str:
    headline = f"{_timestamp(entry.get('created_at'))}  {entry.get('actor', '-')}  {entry.get('action', '-')}"
    extras = [
        f"{key}={_compact(value)}"
        for key, value in entry.items()
        if key not in _AUDIT_HEADLINE_FIELDS and value not in (None, {}, [], "")
    ]
    return shorten(f"{headline}  {' '.join(extras)}".rstrip(), 300)


def _timestamp(value: Any) -> str:
    """Format to_jsonb's timestamp text as UTC to the second; other values are shown as they are."""
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if parsed.tzinfo is None:
        return parsed.isoformat(timespec="seconds")
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _compact(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


AUDIT_LOGS = Procedure(
    name="db-audit-logs",
    title="Meridian audit logs",
    summary="Show recent rows of the Meridian audit_logs table for a breach review (read-only)",
    risk=Risk.READ,
    section=EMERGENCY_SECTION,
    stages=(Step("audit_logs", "audit_logs", read_audit_logs, timeout=STEP_TIMEOUT_SECONDS),),
)


COMMANDS = (
    Command(words=("db", "connections"), procedure=CONNECTIONS, examples=("/meridian db connections",)),
    Command(
        words=("db", "long-queries"),
        procedure=LONG_QUERIES,
        options=(
            Option(
                "--limit",
                "count",
                f"how many queries to show (default {DEFAULT_LONG_QUERIES}, at most {MAX_LONG_QUERIES})",
                metavar="N",
            ),
            Option("--min-duration", "duration", "only queries running at least this long, such as 30s", metavar="DURATION"),
        ),
        examples=("/meridian db long-queries", "/meridian db long-queries --limit 5 --min-duration 30s"),
    ),
    *database_kill.COMMANDS,
    *database_truncate.COMMANDS,
    Command(
        words=("db", "audit-logs"),
        procedure=AUDIT_LOGS,
        options=(
            Option("--since", "duration", "how far back to read, such as 2h (default 24h)", metavar="DURATION"),
            Option("--actor", "text", "only rows whose actor is exactly this value", metavar="X"),
            Option(
                "--limit",
                "count",
                f"how many rows to show, newest first (default {DEFAULT_AUDIT_ENTRIES}, at most {MAX_AUDIT_ENTRIES})",
                metavar="N",
            ),
        ),
        examples=("/meridian db audit-logs --since 2h", "/meridian db audit-logs --actor alice --limit 50"),
    ),
)
