"""Database Operations on AWS RDS: automated backup settings, manual snapshots, point-in-time recovery."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta

from bot.clients.aws_rds import (
    MAX_RETENTION_DAYS,
    MIN_RETENTION_DAYS,
    RdsInstance,
    RdsInstances,
    RestoreWindow,
)
from bot.durations import format_duration, parse_time
from bot.engine.approvals import ApprovalGate, Plan
from bot.engine.arguments import Argument, Option
from bot.engine.catalog import Command
from bot.engine.context import StepContext
from bot.engine.procedure import Procedure, Risk, Step, StepResult
from bot.errors import Refused, TargetRejected, UsageError
from procedures.backups_common import rds

STEP_TIMEOUT_SECONDS = 60.0
POLL_SECONDS = 15.0
SNAPSHOT_WAIT_SECONDS = 3600.0
# A point-in-time restore of a large instance can take hours; RTO is 4 hours.
RESTORE_WAIT_SECONDS = 4 * 3600.0
# RDS requires a backup window of at least 30 minutes (hh24:mi-hh24:mi, UTC).
MIN_BACKUP_WINDOW_MINUTES = 30
_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
_MAINTENANCE = re.compile(r"^(mon|tue|wed|thu|fri|sat|sun):(\d\d):(\d\d)-(mon|tue|wed|thu|fri|sat|sun):(\d\d):(\d\d)$")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# DB instance identifiers: 1 to 63 letters, digits or hyphens, starting with a letter, with no
# two hyphens in a row and no hyphen at the end.
_INSTANCE_ID = re.compile(r"^[a-zA-Z](?:[a-zA-Z0-9]|-(?!-)){0,62}(?<!-)$")
_FAILED_STATES = frozenset(
    {"failed", "incompatible-restore", "incompatible-parameters", "incompatible-network", "storage-full", "inaccessible-encryption-credentials"}
)


# Automated backup settings


def _minutes(hours: str, minutes: str) -> int:
    return int(hours) * 60 + int(minutes)


def check_backup_window(window: str, *, maintenance_window: str | None) -> None:
    """Raise UsageError or Refused unless RDS would take `window` as the daily backup window."""
    match = _WINDOW.match(window)
    if match is None:
        raise UsageError(f"`{window}` is not a backup window.", hint="Write hh24:mi-hh24:mi in UTC, for example `03:00-04:00`.")
    start, end = _minutes(*match.group(1, 2)), _minutes(*match.group(3, 4))
    length = (end - start) % 1440
    if length < MIN_BACKUP_WINDOW_MINUTES:
        raise UsageError(f"The backup window {window} is {length} minutes long; RDS needs at least {MIN_BACKUP_WINDOW_MINUTES}.")

    maintenance = _MAINTENANCE.match((maintenance_window or "").lower())
    if maintenance is None:
        return
    week = 7 * 1440
    m_start = _DAYS.index(maintenance.group(1)) * 1440 + _minutes(*maintenance.group(2, 3))
    m_length = (_DAYS.index(maintenance.group(4)) * 1440 + _minutes(*maintenance.group(5, 6)) - m_start) % week
    for day in range(7):
        b_start = day * 1440 + start
        # Two intervals on a circle overlap when either starts inside the other.
        if (b_start - m_start) % week < m_length or (m_start - b_start) % week < length:
            raise Refused(
                f"The backup window {window} overlaps the maintenance window {maintenance_window}, which RDS rejects.",
                hint="Choose a backup window outside it.",
            )


def check_retention(days: int) -> None:
    if days > MAX_RETENTION_DAYS:
        raise Refused(
            f"RDS keeps automated backups for at most {MAX_RETENTION_DAYS} days, so a retention of {days} days "
            "cannot be set on the instance (the runbook's 90 days is a compliance target, not an RDS setting).",
            hint="Nothing was sent to AWS. For longer retention, keep copies outside the automated backups: "
            "an AWS Backup plan with a 90-day (or longer) rule for the instance, or daily manual snapshots "
            "(`/meridian rds snapshot`) deleted after 90 days. Then run this command with "
            f"--retention {MAX_RETENTION_DAYS} or less.",
        )
    if days < MIN_RETENTION_DAYS:
        raise UsageError(f"--retention must be between {MIN_RETENTION_DAYS} and {MAX_RETENTION_DAYS} days.")


async def check_backup_settings(ctx: StepContext) -> StepResult:
    retention = ctx.args.get("retention")
    if retention is None:
        raise UsageError("--retention is required.", hint="For example `/meridian rds configure-backups --retention 35 --window 03:00-04:00`.")
    check_retention(int(retention))
    client, instance_id = rds(ctx)
    instance = await client.describe(instance_id)
    window = ctx.args.get("window")
    if window:
        check_backup_window(window, maintenance_window=instance.maintenance_window)
    return StepResult(
        summary=f"{instance.identifier}: retention {instance.backup_retention_days} days, window {instance.backup_window or 'none'} "
        f"(maintenance {instance.maintenance_window or 'none'})",
        data={"retention": instance.backup_retention_days, "window": instance.backup_window},
    )


async def plan_backup_settings(ctx: StepContext) -> Plan:
    client, instance_id = rds(ctx)
    instance = await client.describe(instance_id)
    retention = int(ctx.args["retention"])
    window = ctx.args.get("window") or instance.backup_window
    preview = [
        f"{instance.identifier}: backup retention {instance.backup_retention_days} → {retention} days; "
        f"backup window {instance.backup_window or 'none'} → {window or 'none'} (UTC), applied immediately."
    ]
    if retention == 0:
        preview.append("Retention 0 turns automated backups OFF: point-in-time recovery stops working.")
    if (retention == 0) != (instance.backup_retention_days == 0):
        preview.append("Switching automated backups on or off causes a brief outage of the instance (an I/O suspension).")
    return Plan(
        summary=f"Set the backup retention of {instance.identifier} to {retention} days",
        targets=(f"rds:{instance.identifier}",),
        identity={
            "instance": instance.identifier,
            "current_retention": instance.backup_retention_days,
            "current_window": instance.backup_window,
        },
        preview="\n".join(preview),
        facts={"window": window},
    )


async def apply_backup_settings(ctx: StepContext) -> StepResult:
    assert ctx.plan is not None
    client, instance_id = rds(ctx)
    retention = int(ctx.args["retention"])
    check_retention(retention)
    instance = await client.modify_backups(instance_id, retention_days=retention, window=ctx.plan.facts.get("window"))
    pending = f" (pending: {instance.pending_retention_days} days)" if instance.pending_retention_days is not None else ""
    return StepResult(
        summary=f"{instance.identifier}: retention {instance.backup_retention_days} days{pending}, "
        f"window {instance.backup_window or 'none'}, status {instance.status}"
    )


# Manual snapshot


async def take_snapshot(ctx: StepContext) -> StepResult:
    client, instance_id = rds(ctx)
    snapshot_id = f"meridian-bot-{instance_id}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    snapshot = await client.create_snapshot(instance_id, snapshot_id=snapshot_id)
    started = time.monotonic()
    while snapshot.status != "available":
        if snapshot.status in _FAILED_STATES:
            raise TargetRejected("RDS", f"The snapshot {snapshot_id} ended in status {snapshot.status}.")
        percent = f", {snapshot.progress_percent}%" if snapshot.progress_percent is not None else ""
        await ctx.progress(f"{snapshot_id}: {snapshot.status}{percent} · {format_duration_since(started)}")
        await asyncio.sleep(POLL_SECONDS)
        snapshot = await client.describe_snapshot(snapshot_id)
    return StepResult(summary=f"snapshot {snapshot_id} is available", data={"snapshot": snapshot_id})


def format_duration_since(started: float) -> str:
    return format_duration(timedelta(seconds=time.monotonic() - started))


# Point-in-time recovery


def resolve_restore_time(text: str, *, window: RestoreWindow) -> datetime | None:
    """Parse TIME (`latest`, ISO 8601 UTC or `-2h`); None means the latest restorable time."""
    if text.strip().lower() == "latest":
        return None
    moment = parse_time(text).replace(microsecond=0)
    if not window.contains(moment):
        estimated = " (estimated from the retention period)" if window.estimated else ""
        raise Refused(
            f"{moment:%Y-%m-%dT%H:%M:%SZ} is outside the restorable window "
            f"{window.earliest:%Y-%m-%dT%H:%M:%SZ} to {window.latest:%Y-%m-%dT%H:%M:%SZ}{estimated}.",
            hint="Nothing was sent to AWS. Choose a time inside the window, or `latest`.",
        )
    return moment


def default_target_instance(source: str, moment: datetime) -> str:
    return f"{source}-pitr-{moment:%Y%m%d%H%M}"[:63].rstrip("-")


async def _window(client: RdsInstances, instance: RdsInstance) -> RestoreWindow:
    window = await client.restore_window(instance)
    if window is None:
        raise Refused(
            f"{instance.identifier} has no point-in-time recovery: automated backups are off (retention 0 days).",
            hint="Restore from a snapshot or a dump instead (`/meridian restore`).",
        )
    return window


async def check_restore_time(ctx: StepContext) -> StepResult:
    client, instance_id = rds(ctx)
    instance = await client.describe(instance_id)
    window = await _window(client, instance)
    moment = resolve_restore_time(ctx.args["time"], window=window)
    target = ctx.args.get("target_instance") or default_target_instance(instance_id, moment or window.latest)
    if not _INSTANCE_ID.match(target):
        raise UsageError(
            f"`{target}` is not a valid DB instance identifier.",
            hint="Use 1 to 63 letters, digits or hyphens, starting with a letter, without `--` or a hyphen at the end.",
        )
    if await client.exists(target):
        raise Refused(f"The RDS instance `{target}` already exists.", hint="Choose another --target-instance.")
    when = f"{moment:%Y-%m-%dT%H:%M:%SZ}" if moment else f"the latest restorable time ({window.latest:%H:%M:%S} UTC now)"
    return StepResult(
        summary=f"{when} is inside {window.earliest:%Y-%m-%d %H:%M} – {window.latest:%Y-%m-%d %H:%M} UTC; new instance {target}",
        data={"restore_time": moment.isoformat() if moment else None, "target": target},
    )


async def plan_pitr(ctx: StepContext) -> Plan:
    _, instance_id = rds(ctx)
    checked = ctx.results["window"]
    target = str(checked["target"])
    restore_time = checked["restore_time"]
    settings = ctx.settings
    when = restore_time or "the latest restorable time"
    preview = [
        f"Creates the RDS instance {target} ({settings.rds_restore_instance_class}) from {instance_id} as it was at {when}.",
        f"Subnet group: {settings.rds_subnet_group or 'the source instance default'}; "
        f"security groups: {', '.join(settings.rds_security_group_ids) or 'the VPC default'}.",
        "The application keeps using the current database. Switching DATABASE_URL to the new endpoint is a separate, explicit step.",
        "The new instance is billed from its creation until someone deletes it.",
    ]
    return Plan(
        summary=f"Restore {instance_id} to {when} as the new instance {target}",
        targets=(f"rds:{target}",),
        identity={"source": instance_id, "target": target, "restore_time": restore_time},
        preview="\n".join(preview),
        facts={"target": target, "restore_time": restore_time},
    )


async def start_pitr(ctx: StepContext) -> StepResult:
    assert ctx.plan is not None
    client, instance_id = rds(ctx)
    settings = ctx.settings
    restore_time = ctx.plan.facts["restore_time"]
    moment = datetime.fromisoformat(restore_time) if restore_time else None
    if moment is not None:
        # The window's start moves forward while the approvals are collected.
        window = await _window(client, await client.describe(instance_id))
        resolve_restore_time(restore_time, window=window)
    instance = await client.restore_to_point_in_time(
        source=instance_id,
        target=str(ctx.plan.facts["target"]),
        restore_time=moment,
        instance_class=settings.rds_restore_instance_class,
        subnet_group=settings.rds_subnet_group,
        security_group_ids=settings.rds_security_group_ids,
    )
    return StepResult(summary=f"RDS accepted the restore: {instance.identifier} is {instance.status}")


async def wait_for_instance(ctx: StepContext) -> StepResult:
    assert ctx.plan is not None
    client, _ = rds(ctx)
    target = str(ctx.plan.facts["target"])
    started = time.monotonic()
    instance = await client.describe(target)
    while instance.status != "available":
        if instance.status in _FAILED_STATES:
            raise TargetRejected("RDS", f"The restored instance {target} ended in status {instance.status}.", hint="Read its events in the RDS console.")
        await ctx.progress(f"{target} is {instance.status} · {format_duration_since(started)}")
        await asyncio.sleep(POLL_SECONDS)
        instance = await client.describe(target)
    endpoint = f"{instance.endpoint}:{instance.port}" if instance.endpoint else "no endpoint reported"
    return StepResult(
        summary=f"{target} is available at {endpoint} after {format_duration_since(started)}",
        data={"endpoint": instance.endpoint, "port": instance.port},
    )


async def report_pitr(ctx: StepContext) -> StepResult:
    assert ctx.plan is not None
    target = str(ctx.plan.facts["target"])
    waited = ctx.results["wait"]
    restore_time = ctx.plan.facts["restore_time"] or "<the restore time>"
    query = f"SELECT count(*) FROM operations WHERE created_at > '{restore_time}';"
    lines = [
        f"Endpoint: {waited.get('endpoint')}:{waited.get('port')}",
        f"Verify it (psql against the new endpoint, same credentials as the source): {query}",
        "The count must be 0: no operation after the restore time may exist in the restored copy.",
        "Switching the application is a separate step: change DATABASE_URL to the new endpoint and roll out the API.",
    ]
    return StepResult(summary=f"{target} is ready; verify it before switching", detail="\n".join(lines), detail_title="Next steps")


CONFIGURE_BACKUPS = Procedure(
    name="rds-configure-backups",
    title="Configure RDS automated backups",
    summary="Set the automated backup retention (0-35 days) and window of the RDS instance (one approver)",
    risk=Risk.HIGH,
    section="Database Operations",
    stages=(
        Step("check", "Check the settings and read the instance", check_backup_settings, timeout=STEP_TIMEOUT_SECONDS),
        ApprovalGate(plan=plan_backup_settings),
        Step("modify", "Modify the instance", apply_backup_settings, timeout=STEP_TIMEOUT_SECONDS),
    ),
)

SNAPSHOT = Procedure(
    name="rds-snapshot",
    title="RDS manual snapshot",
    summary="Create a manual snapshot of the RDS instance and wait until it is available",
    risk=Risk.WRITE,
    section="Database Operations",
    stages=(Step("snapshot", "Create the snapshot", take_snapshot, timeout=SNAPSHOT_WAIT_SECONDS),),
)

PITR = Procedure(
    name="pitr",
    title="Point-in-time recovery",
    summary="Restore the RDS instance to a point in time as a new instance (two approvers)",
    risk=Risk.CRITICAL,
    section="Database Operations",
    stages=(
        Step("window", "Check TIME against the restorable window", check_restore_time, timeout=STEP_TIMEOUT_SECONDS),
        ApprovalGate(plan=plan_pitr),
        Step("restore", "Start the restore", start_pitr, timeout=STEP_TIMEOUT_SECONDS),
        Step("wait", "Wait until the instance is available", wait_for_instance, timeout=RESTORE_WAIT_SECONDS),
        Step("report", "Endpoint and verification", report_pitr, timeout=STEP_TIMEOUT_SECONDS),
    ),
)

COMMANDS = (
    Command(
        words=("rds", "configure-backups"),
        procedure=CONFIGURE_BACKUPS,
        options=(
            Option("--retention", "number", f"days to keep automated backups ({MIN_RETENTION_DAYS}-{MAX_RETENTION_DAYS})", metavar="DAYS"),
            Option("--window", "text", "daily backup window, hh24:mi-hh24:mi in UTC (default: unchanged)", metavar="WINDOW"),
        ),
        examples=("/meridian rds configure-backups --retention 35 --window 03:00-04:00",),
    ),
    Command(words=("rds", "snapshot"), procedure=SNAPSHOT, examples=("/meridian rds snapshot",)),
    Command(
        words=("pitr",),
        procedure=PITR,
        arguments=(Argument("TIME", "time", "ISO 8601 UTC time such as 2026-01-04T12:00:00Z, a time before now such as -2h, or latest"),),
        options=(Option("--target-instance", "text", "the new instance's identifier (default: SOURCE-pitr-YYYYMMDDHHMM)", metavar="ID"),),
        examples=("/meridian pitr 2026-01-04T12:00:00Z", "/meridian pitr -30m --target-instance meridian-prod-restored"),
    ),
)
