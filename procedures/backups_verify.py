"""Backup Verification (Weekly): restore the newest dump into a scratch database and check it.

The same test runs from `/meridian backup verify` and from the leader's weekly schedule.
Whatever happens, the scratch database is dropped, the result is posted to the incident
channel, and a FAIL triggers a PagerDuty alert (a PASS resolves it).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.clients.backups_databases import RestoredDatabase, scratch_database_name
from bot.clients.backups_storage import BackupObject, Verification
from bot.clients.backups_targets import BackupTargets
from bot.clients.pg_tools import run_pg_restore
from bot.durations import format_duration
from bot.errors import BotError
from bot.slack.mrkdwn import code, escape
from procedures.backups_common import (
    ByteProgress,
    Progress,
    compute_checksum,
    counted,
    expected_checksum,
    format_bytes,
)

logger = logging.getLogger(__name__)

RESTORE_OPTIONS = ("--no-owner", "--no-privileges", "--exit-on-error")
VERIFY_METHOD = "restore-test"


@dataclass(frozen=True)
class RestoreTestResult:
    """PASS or FAIL, with the figures of the restored database or the reasons it failed."""

    passed: bool
    backup: BackupObject | None
    problems: tuple[str, ...] = ()
    restored: RestoredDatabase | None = None
    scratch_database: str | None = None
    scratch_dropped: bool = True
    seconds: float = 0.0

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

    def summary(self) -> str:
        name = self.backup.key if self.backup else "no dump"
        if self.passed and self.restored is not None:
            return f"PASS · {name} · {self.restored.figures()} · {format_duration_seconds(self.seconds)}"
        return f"FAIL · {name} · {'; '.join(self.problems)}"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RestoreTestResult:
        return cls(
            passed=bool(data["passed"]),
            backup=BackupObject.from_json(data["backup"]) if data.get("backup") else None,
            problems=tuple(data["problems"]),
            restored=RestoredDatabase.from_json(data["restored"]) if data.get("restored") else None,
            scratch_database=data.get("scratch_database"),
            scratch_dropped=bool(data.get("scratch_dropped", True)),
            seconds=float(data.get("seconds", 0.0)),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "backup": self.backup.to_json() if self.backup else None,
            "problems": list(self.problems),
            "restored": self.restored.to_json() if self.restored else None,
            "scratch_database": self.scratch_database,
            "scratch_dropped": self.scratch_dropped,
            "seconds": round(self.seconds, 3),
        }


def format_duration_seconds(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else format_duration(timedelta(seconds=seconds))


async def run_restore_test(targets: BackupTargets, *, backup_name: str | None, progress: Progress) -> RestoreTestResult:
    """Check the dump's checksum, restore it into a new scratch database, check it, drop it.

    Never raises a BotError: anything that stops the test is a FAIL with its reason.
    """
    started = time.monotonic()
    store, server = targets.storage, targets.restore_server
    if store is None or server is None:
        missing = "BACKUP_BUCKET" if store is None else "VERIFY_DATABASE_URL or DATABASE_URL"
        return RestoreTestResult(passed=False, backup=None, problems=(f"not configured (set {missing})",))

    backup: BackupObject | None = None
    try:
        if backup_name:
            backup = await store.head(store.key_for(backup_name))
        else:
            await progress("finding the newest dump")
            listing = await store.list_backups()
            if not listing.backups:
                return _failed(None, f"there is no dump under {store.location}", started)
            backup = listing.backups[0]

        expected = await expected_checksum(store, backup)
        checksum = await compute_checksum(store, backup, expected=expected, progress=progress)
        if not checksum.matches:
            return _failed(backup, checksum.mismatch_text(backup.key), started)
    except BotError as error:
        return _failed(backup, error.user_message, started)

    name = scratch_database_name("verify")
    restored: RestoredDatabase | None = None
    problems: list[str] = []
    dropped = False
    try:
        await progress(f"creating the scratch database {name}")
        await server.create_database(name)
        meter = ByteProgress(progress, f"restoring into {name}", total=backup.size)
        await run_pg_restore(
            server.database_target(name),
            options=RESTORE_OPTIONS,
            source=counted(store.read(backup.key, etag=backup.etag), meter),
        )
        await progress("checking the restored data")
        restored = await server.inspect(name)
        problems.extend(restored.problems)
    except BotError as error:
        problems.append(error.user_message)
    finally:
        try:
            await server.drop_database(name)
            dropped = True
        except BotError as error:
            logger.error("Could not drop the scratch database %s on %s: %s", name, server.server, error.user_message)
            problems.append(f"the scratch database {name} could not be dropped ({error.user_message}); drop it by hand")

    return RestoreTestResult(
        passed=not problems,
        backup=backup,
        problems=tuple(problems),
        restored=restored,
        scratch_database=name,
        scratch_dropped=dropped,
        seconds=time.monotonic() - started,
    )


def _failed(backup: BackupObject | None, problem: str, started: float) -> RestoreTestResult:
    return RestoreTestResult(passed=False, backup=backup, problems=(problem,), seconds=time.monotonic() - started)


def pagerduty_dedup_key(location: str) -> str:
    """Return the alert key of a backup location: repeated failures update one alert, and a PASS resolves it."""
    return f"meridian-bot/backup-verification/{location}"


@dataclass
class ReportOutcome:
    """Outcome of reporting a result: the notifications sent and those that failed."""

    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "; ".join([*self.done, *self.failed])


async def report_restore_test(targets: BackupTargets, result: RestoreTestResult, *, trigger: str) -> ReportOutcome:
    """Record the result (tag, gauge), post it to the incident channel, and page on FAIL.

    A failure to notify is logged and returned, never raised, because the test result itself
    must still reach the card.
    """
    outcome = ReportOutcome()
    location = targets.storage.location if targets.storage is not None else "unconfigured"

    if targets.metrics is not None:
        targets.metrics.backup_verification_success.labels(location=location).set(1 if result.passed else 0)
    if targets.storage is not None and result.backup is not None:
        verdict = Verification(passed=result.passed, method=VERIFY_METHOD, at=datetime.now(UTC))
        try:
            await targets.storage.record_verification(result.backup.key, verdict)
        except BotError as error:
            outcome.failed.append(f"the verdict was not tagged on the dump: {error.user_message}")
            logger.warning("Could not tag %s with the restore test result: %s", result.backup.key, error.user_message)

    if targets.incident is None:
        outcome.failed.append("not posted: INCIDENT_CHANNEL is not set")
    else:
        try:
            await targets.incident.post(_incident_text(result, trigger=trigger))
            outcome.done.append("posted to the incident channel")
        except BotError as error:
            outcome.failed.append(f"not posted to the incident channel: {error.user_message}")
            logger.error("Could not post the restore test result: %s", error.user_message)

    if targets.pagerduty is None:
        if not result.passed:
            outcome.failed.append("no PagerDuty alert: PAGERDUTY_ROUTING_KEY is not set")
    else:
        dedup_key = pagerduty_dedup_key(location)
        try:
            if result.passed:
                await targets.pagerduty.resolve(dedup_key=dedup_key)
                outcome.done.append("PagerDuty alert resolved (if one was open)")
            else:
                await targets.pagerduty.trigger(
                    dedup_key=dedup_key,
                    summary=f"Backup restore test FAILED: {'; '.join(result.problems)}",
                    severity="critical",
                    details=result.to_json(),
                )
                outcome.done.append("PagerDuty alert triggered")
        except BotError as error:
            outcome.failed.append(f"PagerDuty event not sent: {error.user_message}")
            logger.error("Could not send the PagerDuty event for the restore test: %s", error.user_message)
    return outcome


def _incident_text(result: RestoreTestResult, *, trigger: str) -> str:
    backup = result.backup
    lines = [
        f"{'✅' if result.passed else '🔴'} *Backup restore test {result.verdict}* ({escape(trigger)})",
    ]
    if backup is not None:
        lines.append(
            f"Dump {code(backup.key)} · {format_bytes(backup.size)} · written "
            f"{backup.last_modified.strftime('%Y-%m-%d %H:%M UTC')}"
        )
    if result.restored is not None:
        lines.append(escape(result.restored.figures()))
    for problem in result.problems:
        lines.append(f"• {escape(problem)}")
    if result.scratch_database is not None:
        state = "dropped" if result.scratch_dropped else "NOT dropped"
        lines.append(f"Scratch database {code(result.scratch_database)} {state} · took {format_duration_seconds(result.seconds)}")
    return "\n".join(lines)
