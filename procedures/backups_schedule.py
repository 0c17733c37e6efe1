"""The leader's backup jobs: the restore test on BACKUP_VERIFY_SCHEDULE, and the RPO watch.

The restore test (minutes to hours) runs as a task of its own and the job only starts it.
When it last started is kept in the store, so a test that falls due while leadership moves to
another replica still runs. The watch posts to the incident channel when the RPO or the dump
age passes its limit, and once more when it is back within it. Its state lives in the
leader's memory: a new leader starts without it and posts again any limit still exceeded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from croniter import croniter

from bot.clients.backups_targets import BackupTargets
from bot.engine.upkeep import Job
from bot.errors import BotError
from bot.slack.mrkdwn import escape
from bot.store.base import Store
from procedures.backups import STATUS_TAGS_READ, Finding, evaluate_dump, evaluate_rpo
from procedures.backups_common import record_good_dump
from procedures.backups_verify import (
    RestoreTestResult,
    report_restore_test,
    run_restore_test,
)

logger = logging.getLogger(__name__)

# How often the leader looks at the clock for the cron schedule; the test starts at most this late.
VERIFY_CHECK_INTERVAL_SECONDS = 60.0
RPO_WATCH_INTERVAL_SECONDS = 300.0
VERIFY_JOB = "backup-verify"
_LABELS = {"rpo": "RPO", "dump": "Daily dump"}


class BackupSchedule:
    def __init__(
        self,
        *,
        cron: str,
        rpo: timedelta,
        targets: BackupTargets,
        clock: Callable[[], float],
        store: Store,
    ) -> None:
        self._cron = cron
        self._rpo = rpo
        self._targets = targets
        self._clock = clock
        self._store = store
        self._verify_task: asyncio.Task[RestoreTestResult] | None = None
        self._exceeded: dict[str, bool] = {}

    def jobs(self) -> list[Job]:
        return [
            Job(VERIFY_JOB, VERIFY_CHECK_INTERVAL_SECONDS, self.verify_if_due),
            Job("backup-rpo-watch", RPO_WATCH_INTERVAL_SECONDS, self.watch),
        ]

    def next_verify_time(self, after: float) -> float:
        moment = croniter(self._cron, datetime.fromtimestamp(after, UTC)).get_next(datetime)
        return float(moment.timestamp())

    async def verify_if_due(self) -> None:
        """Start the restore test when the cron schedule has passed since the last check."""
        if self._targets.storage is None:
            return  # without BACKUP_BUCKET there is nothing to test
        now = self._clock()
        last = await self._store.last_job_run(VERIFY_JOB)
        if last is None:
            # The first check of a new deployment: the schedule counts from now.
            await self._store.record_job_run(VERIFY_JOB, now)
            logger.info("Next scheduled restore test at %s", datetime.fromtimestamp(self.next_verify_time(now), UTC).isoformat())
            return
        if now < self.next_verify_time(last):
            return
        await self._store.record_job_run(VERIFY_JOB, now)
        self.start_verify()

    def start_verify(self) -> asyncio.Task[RestoreTestResult] | None:
        """Start the restore test in the background unless one is still running."""
        if self._verify_task is not None and not self._verify_task.done():
            logger.warning("The scheduled restore test is due, but the previous one is still running")
            return None
        self._verify_task = asyncio.create_task(self._verify())
        return self._verify_task

    async def _verify(self) -> RestoreTestResult:
        logger.info("Scheduled restore test started")

        async def log_progress(text: str) -> None:
            logger.debug("Restore test: %s", text)

        result = await run_restore_test(self._targets, backup_name=None, progress=log_progress)
        report = await report_restore_test(self._targets, result, trigger=f"schedule `{self._cron}`")
        logger.info("Scheduled restore test ended: %s (%s)", result.summary(), report.text())
        return result

    async def watch(self) -> None:
        """Measure the RPO and the newest good dump's age; post when either crosses its limit."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        findings: dict[str, Finding] = {}
        targets = self._targets
        if targets.rds is not None and targets.rds_instance_id is not None:
            try:
                instance = await targets.rds.describe(targets.rds_instance_id)
                findings["rpo"] = evaluate_rpo(instance, rpo=self._rpo, now=now)
            except BotError as error:
                logger.warning("RPO watch could not read %s: %s", targets.rds_instance_id, error.user_message)
        if targets.storage is not None:
            try:
                listing = await targets.storage.list_backups(with_verification=STATUS_TAGS_READ)
                record_good_dump(targets, listing.newest_good, location=targets.storage.location)
                findings["dump"] = evaluate_dump(listing, now=now)
            except BotError as error:
                logger.warning("RPO watch could not list the backups: %s", error.user_message)

        for name, finding in findings.items():
            exceeded = not finding.within_limit
            was_exceeded = self._exceeded.get(name, False)
            self._exceeded[name] = exceeded
            if exceeded and not was_exceeded:
                await self._post(f"🔴 *{_LABELS[name]} limit exceeded*: {escape(finding.text)}")
            elif was_exceeded and not exceeded:
                await self._post(f"✅ *{_LABELS[name]} back within its limit*: {escape(finding.text)}")

    async def _post(self, text: str) -> None:
        if self._targets.incident is None:
            logger.warning("Not posted (INCIDENT_CHANNEL is not set): %s", text)
            return
        try:
            await self._targets.incident.post(text)
        except BotError as error:
            logger.error("Could not post to the incident channel: %s", error.user_message)

    async def close(self) -> None:
        if self._verify_task is not None:
            self._verify_task.cancel()
            await asyncio.gather(self._verify_task, return_exceptions=True)
            self._verify_task = None
