"""Database Operations, Restore Procedures: a full restore into a new database, and a table restore.

Both read the dump twice at most, never buffer it, and check its SHA-256 against the
`.sha256` file before anything is created: a mismatch ends the run before the approval.
Every later read of the object is conditional on the ETag that was checked, so the bytes
restored are the bytes that were verified. A full restore never writes to the live database;
a table restore only adds the live table's missing rows, in one transaction with triggers on.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from bot.clients.backups_databases import (
    RestoreServer,
    check_identifier,
    scratch_database_name,
)
from bot.clients.backups_storage import BackupObject, BackupStorage
from bot.clients.backups_table_copy import (
    TableComparison,
    TableCopyOutcome,
    compare_and_copy,
    primary_key,
    table_columns,
)
from bot.clients.backups_targets import BackupTargets
from bot.clients.pg_tools import run_pg_restore
from bot.engine.approvals import ApprovalGate, Plan
from bot.engine.arguments import Argument, Option
from bot.engine.catalog import Command
from bot.engine.context import StepContext
from bot.engine.procedure import Level, Procedure, Risk, Step, StepResult
from bot.errors import BotError, Refused, TargetRejected, TargetResponseInvalid
from procedures.backups_common import (
    ByteProgress,
    Progress,
    backups,
    compute_checksum,
    counted,
    expected_checksum,
    format_bytes,
    restore_server,
    storage,
)
from procedures.backups_verify import RESTORE_OPTIONS

logger = logging.getLogger(__name__)

STEP_TIMEOUT_SECONDS = 60.0
# Reading or restoring a dump takes as long as the dump is big; RTO is 4 hours.
RESTORE_TIMEOUT_SECONDS = 4 * 3600.0


def default_target_name(now: datetime) -> str:
    return f"meridian_restored_{now:%Y%m%d%H%M}"


async def _checked_backup(store: BackupStorage, name: str) -> tuple[BackupObject, str]:
    backup = await store.head(store.key_for(name))
    return backup, await expected_checksum(store, backup)


async def verify_checksum(ctx: StepContext) -> StepResult:
    """Hash the whole object before anything is created; a mismatch ends the run here."""
    store = storage(ctx)
    inspected = ctx.results["inspect"]
    backup = BackupObject.from_json(inspected["backup"])
    result = await compute_checksum(store, backup, expected=str(inspected["sha256"]), progress=ctx.progress)
    if not result.matches:
        raise TargetResponseInvalid("S3", result.mismatch_text(backup.key), hint="Nothing was created or restored.")
    rate = format_bytes(result.size / max(result.seconds, 1e-6))
    return StepResult(summary=f"sha256 matches · {format_bytes(result.size)} read at {rate}/s")


# Full restore


async def inspect_full_restore(ctx: StepContext) -> StepResult:
    store = storage(ctx)
    server = restore_server(ctx)
    backup, checksum = await _checked_backup(store, ctx.args["backup"])
    target = check_identifier(ctx.args.get("target_db") or default_target_name(datetime.now(UTC)), what="database name")
    if server.is_live(target):
        raise Refused(
            f"`{target}` is the live database. A restore never writes over it.",
            hint="Choose another --target-db; switching the application to the restored database is a separate step.",
        )
    if await server.database_exists(target):
        raise Refused(f"The database `{target}` already exists on {server.server}.", hint="Choose another --target-db.")
    return StepResult(
        summary=f"{backup.key} · {format_bytes(backup.size)} · into the new database {target} on {server.server}",
        data={"backup": backup.to_json(), "sha256": checksum, "target_db": target},
    )


async def plan_full_restore(ctx: StepContext) -> Plan:
    store = storage(ctx)
    server = restore_server(ctx)
    inspected = ctx.results["inspect"]
    target = str(inspected["target_db"])
    # Read again at every approval: a replaced object or a database created meanwhile voids the run.
    backup = await store.head(str(inspected["backup"]["key"]))
    exists = await server.database_exists(target)
    preview = [
        f"Creates the database {target} on {server.server} and restores {backup.key} "
        f"({format_bytes(backup.size)}, sha256 {str(inspected['sha256'])[:16]}…) into it with "
        "pg_restore --no-owner --no-privileges --exit-on-error.",
        "Then counts the rows of every table and checks baskets, audit_logs, its immutability trigger and the foreign keys.",
        "The live database is not touched; switching the application to the restored database is a separate step.",
    ]
    if exists:
        preview.append(f"{target} exists now, so the run would stop before restoring.")
    return Plan(
        summary=f"Restore {backup.name} into the new database {target}",
        targets=(f"database:{server.server}/{target}",),
        identity={
            "key": backup.key,
            "etag": backup.etag,
            "sha256": inspected["sha256"],
            "server": server.server,
            "target_db": target,
            "target_exists": exists,
        },
        preview="\n".join(preview),
        facts={"backup": backup.to_json(), "target_db": target},
    )


async def create_target(ctx: StepContext) -> StepResult:
    assert ctx.plan is not None
    target = str(ctx.plan.facts["target_db"])
    await restore_server(ctx).create_database(target)
    return StepResult(summary=f"created {target}")


async def restore_into_target(ctx: StepContext) -> StepResult:
    assert ctx.plan is not None
    store = storage(ctx)
    server = restore_server(ctx)
    backup = BackupObject.from_json(dict(ctx.plan.facts["backup"]))
    target = str(ctx.plan.facts["target_db"])
    meter = ByteProgress(ctx.progress, f"pg_restore into {target}", total=backup.size)
    try:
        await run_pg_restore(
            server.database_target(target),
            options=RESTORE_OPTIONS,
            source=counted(store.read(backup.key, etag=backup.etag), meter),
        )
    except BaseException as error:
        # A partial restore must not be mistaken for a good one, so the database is dropped.
        await _drop_quietly(server, target)
        if isinstance(error, BotError):
            raise TargetRejected(
                "pg_restore", f"{error.message} The partial database {target} was dropped.", hint=error.hint
            ) from error
        raise
    return StepResult(summary=f"restored {format_bytes(meter.count)} into {target} at {meter.rate()}")


async def check_restored(ctx: StepContext) -> StepResult:
    assert ctx.plan is not None
    target = str(ctx.plan.facts["target_db"])
    server = restore_server(ctx)
    restored = await server.inspect(target)
    lines = [f"{table}: {rows:,} rows" for table, rows in sorted(restored.row_counts.items())]
    lines.append(f"foreign keys: {restored.foreign_keys}")
    lines.append(f"audit_logs immutability triggers: {', '.join(restored.immutability_triggers) or 'none'}")
    lines.extend(f"PROBLEM: {problem}" for problem in restored.problems)
    lines.append(
        f"The application still uses DATABASE_URL. To switch it to {target} on {server.server}, "
        "update DATABASE_URL in the deployment as a separate, reviewed change."
    )
    verdict = "checks passed" if restored.passed else f"checks FAILED: {'; '.join(restored.problems)}"
    return StepResult(
        summary=f"{target}: {verdict} · {sum(restored.row_counts.values()):,} rows in {len(restored.row_counts)} tables",
        level=Level.OK if restored.passed else Level.CRITICAL,
        detail="\n".join(lines),
        detail_title=f"Restored database {target}",
        data=restored.to_json(),
    )


# Selective table restore


async def inspect_table_restore(ctx: StepContext) -> StepResult:
    store = storage(ctx)
    restore_server(ctx)
    table = check_identifier(ctx.args["table"], what="table name")
    live = await backups(ctx).connect_live()
    try:
        columns = await table_columns(live, table)
        key = await primary_key(live, table) if columns else ()
    finally:
        await live.close()
    if not columns:
        raise Refused(f"The live database has no table `public.{table}`.")
    if not key:
        raise Refused(
            f"`{table}` has no primary key, so rows that already exist cannot be told apart from missing ones.",
            hint="Restore the whole dump into a new database with `/meridian restore` instead.",
        )
    backup, checksum = await _checked_backup(store, ctx.args["backup"])
    return StepResult(
        summary=f"{table} (primary key {', '.join(key)}) from {backup.key} · {format_bytes(backup.size)}",
        data={
            "backup": backup.to_json(),
            "sha256": checksum,
            "table": table,
            "columns": [f"{name} {kind}" for name, kind in columns],
        },
    )


async def _restore_table(
    targets: BackupTargets,
    server: RestoreServer,
    store: BackupStorage,
    *,
    backup: BackupObject,
    table: str,
    apply: bool,
    progress: Progress,
) -> tuple[TableCopyOutcome, bool]:
    """Restore `table` into a scratch database, compare or copy its rows, and drop the scratch.

    Returns the outcome and whether the scratch database was dropped.
    """
    name = scratch_database_name("table")
    await progress(f"creating the scratch database {name}")
    await server.create_database(name)
    try:
        meter = ByteProgress(progress, f"restoring {table} into {name}", total=backup.size)
        await run_pg_restore(
            server.database_target(name),
            options=(*RESTORE_OPTIONS, "--schema=public", f"--table={table}"),
            source=counted(store.read(backup.key, etag=backup.etag), meter),
        )
        await progress("copying rows" if apply else "comparing rows with the live table")
        scratch = await server.connect(name)
        try:
            live = await targets.connect_live()
            try:
                outcome = await compare_and_copy(live=live, scratch=scratch, table=table, apply=apply)
            finally:
                await live.close()
        finally:
            await scratch.close()
    except BaseException:
        await _drop_quietly(server, name)
        raise
    return outcome, await _drop_quietly(server, name)


def _comparison_text(comparison: TableComparison) -> str:
    return (
        f"{comparison.rows_in_backup:,} rows in the backup: {comparison.rows_to_add:,} missing from the live table, "
        f"{comparison.rows_conflicting:,} already there by primary key "
        f"({comparison.rows_conflicting_different:,} of them differ from the backup)"
    )


async def preview_table_restore(ctx: StepContext) -> StepResult:
    """Check the checksum, then count what the copy would add, with nothing changed live."""
    await verify_checksum(ctx)
    inspected = ctx.results["inspect"]
    outcome, dropped = await _restore_table(
        backups(ctx),
        restore_server(ctx),
        storage(ctx),
        backup=BackupObject.from_json(inspected["backup"]),
        table=str(inspected["table"]),
        apply=False,
        progress=ctx.progress,
    )
    summary = "sha256 matches · " + _comparison_text(outcome.comparison)
    if not dropped:
        summary += " · the scratch database could not be dropped (see the log)"
    return StepResult(summary=summary, data=outcome.comparison.to_json())


async def plan_table_restore(ctx: StepContext) -> Plan:
    inspected = ctx.results["inspect"]
    counted_rows = ctx.results["preview"]
    table = str(inspected["table"])
    backup = await storage(ctx).head(str(inspected["backup"]["key"]))
    preview = [
        f"Adds to the live table {table} the rows of {backup.key} that it lacks: "
        f"{counted_rows['rows_to_add']:,} when counted before this request (the copy counts again).",
        f"{counted_rows['rows_conflicting']:,} rows with the same primary key already exist "
        f"({counted_rows['rows_conflicting_different']:,} differ from the backup); they are kept as they are.",
        "The rows go through a scratch database and are inserted with INSERT ... ON CONFLICT DO NOTHING "
        "in one transaction, with every trigger on (audit_logs stays append-only). "
        "A foreign key or trigger error rolls everything back.",
    ]
    return Plan(
        summary=f"Restore the missing rows of {table} from {backup.name}",
        targets=(f"table:public.{table}",),
        identity={
            "key": backup.key,
            "etag": backup.etag,
            "sha256": inspected["sha256"],
            "table": table,
            "columns": inspected["columns"],
        },
        preview="\n".join(preview),
        facts={"backup": backup.to_json(), "table": table},
    )


async def copy_table_rows(ctx: StepContext) -> StepResult:
    assert ctx.plan is not None
    table = str(ctx.plan.facts["table"])
    outcome, dropped = await _restore_table(
        backups(ctx),
        restore_server(ctx),
        storage(ctx),
        backup=BackupObject.from_json(dict(ctx.plan.facts["backup"])),
        table=table,
        apply=True,
        progress=ctx.progress,
    )
    summary = (
        f"added {outcome.rows_added:,} rows to {table}; {outcome.rows_skipped:,} rows of the backup "
        "already existed and were left unchanged"
    )
    if not dropped:
        summary += " · the scratch database could not be dropped (see the log)"
    return StepResult(summary=summary, data={"rows_added": outcome.rows_added, "rows_skipped": outcome.rows_skipped})


async def _drop_quietly(server: RestoreServer, name: str) -> bool:
    try:
        await server.drop_database(name)
    except BotError as error:
        logger.error("Could not drop the database %s on %s: %s", name, server.server, error.user_message)
        return False
    return True


RESTORE = Procedure(
    name="restore",
    title="Restore from backup",
    summary="Restore a dump into a new database after checking its checksum (two approvers)",
    risk=Risk.CRITICAL,
    section="Database Operations",
    stages=(
        Step("inspect", "Read the backup and the target", inspect_full_restore, timeout=STEP_TIMEOUT_SECONDS),
        Step("checksum", "Verify the SHA-256", verify_checksum, timeout=RESTORE_TIMEOUT_SECONDS),
        ApprovalGate(plan=plan_full_restore),
        Step("create", "Create the database", create_target, timeout=STEP_TIMEOUT_SECONDS),
        Step("restore", "pg_restore", restore_into_target, timeout=RESTORE_TIMEOUT_SECONDS),
        Step("check", "Row counts and integrity checks", check_restored, timeout=RESTORE_TIMEOUT_SECONDS),
    ),
)

RESTORE_TABLE = Procedure(
    name="restore-table",
    title="Restore one table",
    summary="Add a table's missing rows from a dump, through a scratch database (two approvers)",
    risk=Risk.CRITICAL,
    section="Database Operations",
    stages=(
        Step("inspect", "Read the live table and the backup", inspect_table_restore, timeout=STEP_TIMEOUT_SECONDS),
        Step("preview", "Checksum, then count rows to add", preview_table_restore, timeout=RESTORE_TIMEOUT_SECONDS),
        ApprovalGate(plan=plan_table_restore),
        Step("copy", "Copy the missing rows", copy_table_rows, timeout=RESTORE_TIMEOUT_SECONDS),
    ),
)

COMMANDS = (
    Command(
        words=("restore",),
        procedure=RESTORE,
        arguments=(Argument("BACKUP", "text", "the dump to restore, as `/meridian backup list` names it"),),
        options=(
            Option(
                "--target-db",
                "text",
                "the new database to create (default: meridian_restored_YYYYMMDDHHMM)",
                metavar="NAME",
            ),
        ),
        examples=("/meridian restore meridian_full_20260104T030000Z.dump --target-db meridian_restored",),
    ),
    Command(
        words=("restore", "table"),
        procedure=RESTORE_TABLE,
        arguments=(
            Argument("TABLE", "text", "the table in the public schema whose missing rows to restore"),
            Argument("BACKUP", "text", "the dump to take them from"),
        ),
        examples=("/meridian restore table operations meridian_full_20260104T030000Z.dump",),
    ),
)
