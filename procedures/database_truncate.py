"""EMERGENCY: Security Breach Suspected, "invalidate all sessions": TRUNCATE sessions."""

from __future__ import annotations

from bot.clients.meridian_db_tables import TableRows, TruncateInspection
from bot.engine.approvals import ApprovalGate, Plan
from bot.engine.arguments import Option
from bot.engine.catalog import Command
from bot.engine.context import StepContext
from bot.engine.procedure import Level, Procedure, Risk, Step, StepResult
from bot.errors import Refused
from procedures.database_common import STEP_TIMEOUT_SECONDS, database

SESSIONS_TABLE = "sessions"
# TRUNCATE waits for an ACCESS EXCLUSIVE lock, and while it waits every other query on the
# table queues behind it, so the API's logins stall. A short lock timeout bounds that stall.
TRUNCATE_LOCK_TIMEOUT_SECONDS = 5.0
# Tables whose rows are records, not sessions: --cascade never empties them.
PROTECTED_TABLES = frozenset({"audit_logs", "operations", "baskets", "stablecoins"})
_KEYS_SHOWN = 5


def _rows(table: TableRows) -> str:
    return "rows unknown (the bot's role may not read it)" if table.rows is None else f"{table.rows:,} rows"


def _keys_text(inspection: TruncateInspection) -> str:
    keys = inspection.blocking_keys
    shown = ", ".join(f"{key.referencing} ({key.name})" for key in keys[:_KEYS_SHOWN])
    more = f" and {len(keys) - _KEYS_SHOWN} more" if len(keys) > _KEYS_SHOWN else ""
    return shown + more


def _cascade_text(inspection: TruncateInspection) -> str:
    return ", ".join(f"{table.name} ({_rows(table)})" for table in inspection.cascade_tables)


def check_truncatable(inspection: TruncateInspection, *, cascade: bool) -> None:
    """Raise Refused when the TRUNCATE cannot succeed or would empty a protected table."""
    name = inspection.table.name
    if not cascade and inspection.plain_truncate_fails:
        raise Refused(
            f"TRUNCATE {name} would fail: foreign keys from {_keys_text(inspection)} reference it. "
            f"TRUNCATE ... CASCADE would also empty {_cascade_text(inspection)}.",
            hint="Nothing was changed. Check that list, then run `/meridian db truncate-sessions --cascade` "
            "to empty those tables too, or drop the foreign keys first.",
        )
    if cascade:
        protected = [table.name for table in inspection.cascade_tables if table.name.split(".")[-1].strip('"') in PROTECTED_TABLES]
        if protected:
            raise Refused(
                f"TRUNCATE {name} CASCADE would also empty {', '.join(protected)}, which hold records "
                "the bot never deletes.",
                hint="Nothing was changed. Remove or change the foreign keys from those tables first.",
            )


async def inspect_sessions(ctx: StepContext) -> StepResult:
    inspection = await database(ctx).inspect_truncate(SESSIONS_TABLE)
    check_truncatable(inspection, cascade=ctx.args["cascade"])

    lines = [f"{inspection.table.name}: {_rows(inspection.table)}"]
    if inspection.blocking_keys:
        lines.append(f"Referenced by: {_keys_text(inspection)}")
        lines.append(f"Also emptied with --cascade: {_cascade_text(inspection)}")
    else:
        lines.append("No other table references it, so TRUNCATE needs no CASCADE.")
    summary = f"{_rows(inspection.table)} in {inspection.table.name}"
    if inspection.blocking_keys:
        summary += f"; --cascade also empties {_cascade_text(inspection)}"
    return StepResult(summary=summary, detail="\n".join(lines), detail_title="Sessions table")


async def plan_truncate(ctx: StepContext) -> Plan:
    cascade = ctx.args["cascade"]
    inspection = await database(ctx).inspect_truncate(SESSIONS_TABLE)
    try:
        check_truncatable(inspection, cascade=cascade)
    except Refused as refusal:
        if ctx.run.plan is None:
            raise
        # Read again at an approval click: the keys changed, so the identity below differs
        # from the approved one and the engine voids the run.
        return Plan(
            summary=f"The foreign keys of {inspection.table.name} changed",
            targets=(f"table:{inspection.table.name}",),
            identity={**inspection.identity(), "refused": refusal.message},
            preview=refusal.message,
        )

    emptied = [inspection.table, *(inspection.cascade_tables if cascade else ())]
    preview = [f"Empties {table.name}: {_rows(table)} now." for table in emptied]
    preview.append("Every user of the Meridian API must sign in again.")
    if inspection.blocking_keys:
        preview.append(f"Foreign keys into {inspection.table.name}: {_keys_text(inspection)}; --cascade empties them in the same TRUNCATE.")
    else:
        preview.append(f"No other table references {inspection.table.name}.")
    preview.append(
        f"Runs in one transaction with lock_timeout {TRUNCATE_LOCK_TIMEOUT_SECONDS:g} s; the row counts may "
        "change until then, and the report gives the rows actually removed."
    )
    also = f" and {len(emptied) - 1} referencing table(s)" if len(emptied) > 1 else ""
    return Plan(
        summary=f"TRUNCATE {inspection.table.name}{also} ({_rows(inspection.table)} now)",
        targets=tuple(f"table:{table.name}" for table in emptied),
        identity=inspection.identity(),
        preview="\n".join(preview),
        facts={"inspection": inspection.to_json()},
    )


async def truncate_sessions(ctx: StepContext) -> StepResult:
    assert ctx.plan is not None
    approved = TruncateInspection.from_json(dict(ctx.plan.facts["inspection"]))
    await ctx.progress(f"locking {approved.table.name} (lock_timeout {TRUNCATE_LOCK_TIMEOUT_SECONDS:g} s)")
    outcome = await database(ctx).truncate(
        approved,
        cascade=ctx.args["cascade"],
        lock_timeout=TRUNCATE_LOCK_TIMEOUT_SECONDS,
    )
    removed = ", ".join(f"{rows:,} rows from {name}" for name, rows in outcome.rows_removed.items())
    return StepResult(
        summary=f"removed {removed}",
        level=Level.OK,
        data={"rows_removed": outcome.rows_removed},
    )


TRUNCATE_SESSIONS = Procedure(
    name="db-truncate-sessions",
    title="Invalidate all sessions (TRUNCATE sessions)",
    summary="Empty the sessions table so every user must sign in again (two approvers)",
    risk=Risk.CRITICAL,
    section="Emergency Procedures",
    stages=(
        Step("inspect", "Read sessions and its foreign keys", inspect_sessions, timeout=STEP_TIMEOUT_SECONDS),
        ApprovalGate(plan=plan_truncate),
        Step("truncate", "TRUNCATE", truncate_sessions, timeout=STEP_TIMEOUT_SECONDS),
    ),
)

COMMANDS = (
    Command(
        words=("db", "truncate-sessions"),
        procedure=TRUNCATE_SESSIONS,
        options=(
            Option(
                "--cascade",
                "flag",
                "also empty the tables whose foreign keys reference sessions (listed in the preview)",
            ),
        ),
        examples=("/meridian db truncate-sessions", "/meridian db truncate-sessions --cascade"),
    ),
)
