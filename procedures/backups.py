"""Database Operations, backups: manual and critical-table dumps, listing, RPO status, restore test."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.clients.aws_rds import RdsInstance
from bot.clients.backups_databases import quote_identifier
from bot.clients.backups_storage import BackupListing, BackupObject, Verification
from bot.clients.pg_tools import PgToolFailed, run_pg_dump, run_pg_restore
from bot.durations import format_duration
from bot.engine.arguments import Option
from bot.engine.catalog import Command
from bot.engine.context import StepContext
from bot.engine.procedure import Level, Parallel, Procedure, Risk, Step, StepResult
from bot.errors import Refused, TargetResponseInvalid
from procedures.backups_common import (
    DUMP_GRACE_HOURS,
    DUMP_INTERVAL_HOURS,
    ByteProgress,
    backups,
    counted,
    format_age,
    format_bytes,
    live_database,
    rds,
    record_good_dump,
    storage,
)
from procedures.backups_verify import (
    RestoreTestResult,
    report_restore_test,
    run_restore_test,
)

# The runbook's "Critical Tables Backup". Their data is dumped with the schema of every table:
# `pg_dump --table` alone leaves out the trigger function of audit_logs, so such a dump
# fails to restore its immutability trigger.
CRITICAL_TABLES = ("stablecoins", "baskets", "operations", "audit_logs")
# The runbook's `pg_dump --format=custom --compress=9`.
DUMP_OPTIONS = ("--format=custom", "--compress=9", "--no-password")
FULL_READ = ("--file=/dev/null",)
LIST_LIMIT = 10
# Dumps whose verification tags `backup status` reads, newest first, to find the newest good one.
STATUS_TAGS_READ = 10
# A dump takes hours at most; the bot's own steps are bounded well above that.
DUMP_TIMEOUT_SECONDS = 6 * 3600.0
READ_TIMEOUT_SECONDS = 60.0


def dump_name(*, critical_only: bool, now: datetime) -> str:
    kind = "critical" if critical_only else "full"
    return f"meridian_{kind}_{now:%Y%m%dT%H%M%SZ}.dump"


async def _critical_only_options(ctx: StepContext) -> list[str]:
    """`--exclude-table-data` for every table but the critical ones; raises when one is missing."""
    connection = await backups(ctx).connect_live()
    try:
        rows = await connection.fetch(
            "SELECT n.nspname, c.relname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2"
        )
    finally:
        await connection.close()
    public = {row["relname"] for row in rows if row["nspname"] == "public"}
    missing = [table for table in CRITICAL_TABLES if table not in public]
    if missing:
        raise Refused(f"The database has no table {', '.join(missing)}, so a critical-tables dump would be incomplete.")
    return [
        f"--exclude-table-data={quote_identifier(row['nspname'])}.{quote_identifier(row['relname'])}"
        for row in rows
        if not (row["nspname"] == "public" and row["relname"] in CRITICAL_TABLES)
    ]


async def dump_and_upload(ctx: StepContext) -> StepResult:
    store = storage(ctx)
    live = live_database(ctx)
    critical_only = bool(ctx.args.get("critical_only"))
    options = [*DUMP_OPTIONS, *(await _critical_only_options(ctx) if critical_only else [])]
    key = store.key_for(dump_name(critical_only=critical_only, now=datetime.now(UTC)))

    upload = store.start_upload(
        key, metadata={"created-by": "meridian-bot", "kind": "critical" if critical_only else "full", "database": live.database}
    )
    meter = ByteProgress(ctx.progress, "pg_dump → S3")

    async def send(chunk: bytes) -> None:
        await upload.write(chunk)
        await meter.add(len(chunk))

    try:
        await run_pg_dump(live, options=options, sink=send)
        uploaded = await upload.complete()
    except BaseException:
        await upload.abort()
        raise
    await store.put_checksum(key, uploaded.sha256)

    what = f"data of {', '.join(CRITICAL_TABLES)}" if critical_only else "the whole database"
    return StepResult(
        summary=f"uploaded {key} ({what}) · {format_bytes(uploaded.size)} in {uploaded.parts} part(s) · "
        f"{meter.rate()} · sha256 {uploaded.sha256[:12]}…",
        data={"key": key, "size": uploaded.size, "sha256": uploaded.sha256, "etag": uploaded.etag},
    )


async def verify_upload(ctx: StepContext) -> StepResult:
    """Read the uploaded object back whole: its SHA-256, and pg_restore reading every block."""
    store = storage(ctx)
    uploaded = ctx.results["dump"]
    key, etag = str(uploaded["key"]), str(uploaded["etag"])

    digest = hashlib.sha256()
    meter = ByteProgress(ctx.progress, "reading back", total=int(uploaded["size"]))
    source = counted(store.read(key, etag=etag), meter, digest)
    problems = []
    try:
        await run_pg_restore(None, options=FULL_READ, source=source)
    except PgToolFailed as error:
        problems.append(error.message)
    async for _ in source:
        pass  # pg_restore may stop before the end; the checksum needs every byte

    stored = await store.read_checksum(key)
    actual = digest.hexdigest()
    if stored != actual:
        problems.append(f"the checksum file says {str(stored)[:16]}…, the object hashes to {actual[:16]}…")
    if meter.count != int(uploaded["size"]):
        problems.append(f"{meter.count:,} bytes were read back, {int(uploaded['size']):,} were uploaded")

    passed = not problems
    await store.record_verification(key, Verification(passed=passed, method="full-read", at=datetime.now(UTC)))
    if not passed:
        raise TargetResponseInvalid(
            "S3",
            f"The uploaded dump {key} failed verification: {'; '.join(problems)}.",
            hint="It is tagged as failed and does not count as a backup. Run `/meridian backup now` again.",
        )
    backup = await store.head(key)
    record_good_dump(backups(ctx), backup, location=store.location)
    return StepResult(
        summary=f"verified: sha256 matches and pg_restore read all {format_bytes(meter.count)} ({meter.rate()})",
        data={"key": key, "verified": True},
    )


# Listing


def _verification_text(backup: BackupObject) -> str:
    verification: Verification | None = backup.verification
    if verification is None:
        return "not verified by the bot"
    what = "restore test" if verification.method == "restore-test" else "full read"
    verdict = "passed" if verification.passed else "FAILED"
    return f"{what} {verdict} {format_age(verification.at)} ago"


def backup_line(backup: BackupObject) -> str:
    checksum = "sha256 ✓" if backup.has_checksum else "no checksum file"
    return (
        f"{backup.name} · {format_bytes(backup.size)} · {format_age(backup.last_modified)} ago · "
        f"{checksum} · {_verification_text(backup)}"
    )


async def list_backups(ctx: StepContext) -> StepResult:
    store = storage(ctx)
    limit = int(ctx.args.get("limit") or LIST_LIMIT)
    listing = await store.list_backups(with_verification=limit)
    if not listing.backups:
        return StepResult(summary=f"no dumps under {store.location}", level=Level.WARNING)

    shown = listing.backups[:limit]
    lines = [backup_line(backup) for backup in shown]
    if len(listing.backups) > limit:
        lines.append(f"… and {len(listing.backups) - limit} older (use --limit)")
    if listing.incomplete_uploads:
        lines.append(f"{listing.incomplete_uploads} incomplete multipart upload(s) are not backups and are not counted")
    if listing.truncated:
        lines.append("The prefix holds more keys than one listing reads, so the newest dumps may be missing: move old dumps elsewhere.")
    newest = listing.backups[0]
    summary = f"{len(listing.backups)} dumps in {store.location}; newest {newest.name}, {format_age(newest.last_modified)} ago"
    return StepResult(summary=summary, detail="\n".join(lines), detail_title="Backups, newest first")


# Status against the RPO


@dataclass(frozen=True)
class Finding:
    """One line of a status check, and whether it is within its limit."""

    within_limit: bool
    text: str


def evaluate_rpo(instance: RdsInstance, *, rpo: timedelta, now: datetime) -> Finding:
    """RPO is met when the instance's LatestRestorableTime is younger than `rpo`."""
    if instance.backup_retention_days == 0:
        return Finding(False, f"{instance.identifier} has automated backups off (retention 0 days): no point-in-time recovery")
    latest = instance.latest_restorable_time
    if latest is None:
        return Finding(False, f"{instance.identifier} reports no LatestRestorableTime (status {instance.status})")
    age = now - latest
    text = (
        f"point-in-time recovery now reaches {latest:%Y-%m-%d %H:%M:%S} UTC, {format_duration(age)} ago "
        f"(RPO {format_duration(rpo)}) · retention {instance.backup_retention_days} days"
    )
    if age > rpo:
        return Finding(False, f"RPO exceeded: {text}")
    return Finding(True, text)


def evaluate_dump(listing: BackupListing, *, now: datetime) -> Finding:
    """The newest good dump must be younger than its daily schedule plus the grace period."""
    limit = timedelta(hours=DUMP_INTERVAL_HOURS + DUMP_GRACE_HOURS)
    good = listing.newest_good
    if good is None:
        return Finding(False, "no good dump (one with a checksum file and no failed verification)")
    age = now - good.last_modified
    text = f"newest good dump {good.name} is {format_duration(age)} old (daily; overdue after {format_duration(limit)})"
    if age > limit:
        return Finding(False, f"dump overdue: {text}")
    return Finding(True, text)


async def check_rpo(ctx: StepContext) -> StepResult:
    client, instance_id = rds(ctx)
    instance = await client.describe(instance_id)
    finding = evaluate_rpo(instance, rpo=ctx.settings.rpo, now=datetime.now(UTC))
    return StepResult(summary=finding.text, level=Level.OK if finding.within_limit else Level.CRITICAL)


async def check_newest_dump(ctx: StepContext) -> StepResult:
    store = storage(ctx)
    listing = await store.list_backups(with_verification=STATUS_TAGS_READ)
    record_good_dump(backups(ctx), listing.newest_good, location=store.location)
    finding = evaluate_dump(listing, now=datetime.now(UTC))
    text = finding.text
    newest = listing.backups[0] if listing.backups else None
    if newest is not None and newest is not listing.newest_good:
        text += f"; the newest dump {newest.name} is not good ({_verification_text(newest)}, {'with' if newest.has_checksum else 'no'} checksum)"
    if listing.incomplete_uploads:
        text += f"; {listing.incomplete_uploads} incomplete upload(s) not counted"
    return StepResult(summary=text, level=Level.OK if finding.within_limit else Level.CRITICAL)


# The restore test on demand


async def restore_test(ctx: StepContext) -> StepResult:
    result = await run_restore_test(backups(ctx), backup_name=ctx.args.get("backup"), progress=ctx.progress)
    return StepResult(
        summary=result.summary(),
        level=Level.OK if result.passed else Level.CRITICAL,
        data=result.to_json(),
    )


async def report_test(ctx: StepContext) -> StepResult:
    result = RestoreTestResult.from_json(ctx.results["test"])
    report = await report_restore_test(backups(ctx), result, trigger=f"requested by {ctx.run.requester}, run {ctx.run.id}")
    return StepResult(summary=report.text(), level=Level.WARNING if report.failed else Level.OK)


BACKUP_NOW = Procedure(
    name="backup-now",
    title="Backup now",
    summary="Dump the database to S3 with a checksum, then read it back to verify it",
    risk=Risk.WRITE,
    section="Database Operations",
    stages=(
        Step("dump", "pg_dump to S3 (streamed, SHA-256)", dump_and_upload, timeout=DUMP_TIMEOUT_SECONDS),
        Step("verify", "Read back: checksum and pg_restore", verify_upload, timeout=DUMP_TIMEOUT_SECONDS),
    ),
)

BACKUP_LIST = Procedure(
    name="backup-list",
    title="Backups",
    summary="List recent backups with size, age and checksum state",
    risk=Risk.READ,
    section="Database Operations",
    stages=(Step("list", "Dumps in S3", list_backups, timeout=READ_TIMEOUT_SECONDS),),
)

BACKUP_STATUS = Procedure(
    name="backup-status",
    title="Backup status",
    summary="Measure the RPO from RDS and the age of the newest good dump",
    risk=Risk.READ,
    section="Database Operations",
    stages=(
        Parallel(
            (
                Step("rpo", "RPO (RDS LatestRestorableTime)", check_rpo, timeout=READ_TIMEOUT_SECONDS),
                Step("dump", "Newest good dump", check_newest_dump, timeout=READ_TIMEOUT_SECONDS),
            )
        ),
    ),
)

BACKUP_VERIFY = Procedure(
    name="backup-verify",
    title="Backup restore test",
    summary="Restore the newest dump into a scratch database, check it, drop it, and report",
    risk=Risk.WRITE,
    section="Database Operations",
    stages=(
        Step("test", "Restore test", restore_test, timeout=DUMP_TIMEOUT_SECONDS),
        Step("report", "Report", report_test, timeout=READ_TIMEOUT_SECONDS),
    ),
)

COMMANDS = (
    Command(
        words=("backup", "now"),
        procedure=BACKUP_NOW,
        options=(Option("--critical-only", "flag", f"dump only the data of {', '.join(CRITICAL_TABLES)}"),),
        examples=("/meridian backup now", "/meridian backup now --critical-only"),
    ),
    Command(
        words=("backup", "list"),
        procedure=BACKUP_LIST,
        options=(Option("--limit", "count", f"how many dumps to show (default {LIST_LIMIT})", metavar="N"),),
        examples=("/meridian backup list",),
    ),
    Command(words=("backup", "status"), procedure=BACKUP_STATUS, examples=("/meridian backup status",)),
    Command(
        words=("backup", "verify"),
        procedure=BACKUP_VERIFY,
        options=(Option("--backup", "text", "the dump to test (default: the newest)", metavar="NAME"),),
        examples=("/meridian backup verify", "/meridian backup verify --backup meridian_full_20260104T030000Z.dump"),
    ),
)
