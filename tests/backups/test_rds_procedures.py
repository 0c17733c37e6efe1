"""`rds configure-backups`, `rds snapshot`, `pitr` and `backup status` against moto's RDS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.clients.aws_rds import RdsInstance
from bot.clients.backups_storage import BackupListing, BackupObject, Verification
from bot.errors import Refused, UsageError
from bot.sandbox.environment import Sandbox
from procedures.backups import evaluate_dump, evaluate_rpo
from procedures.rds import check_backup_window
from tests.backups.conftest import Aws, approve, card_text, request, run_state, step_summary, thread_text

NOW = datetime(2026, 1, 4, 12, 0, tzinfo=UTC)


def retention(aws: Aws) -> int:
    return int(aws.rds.describe_db_instances(DBInstanceIdentifier=aws.instance_id)["DBInstances"][0]["BackupRetentionPeriod"])


def instance_ids(aws: Aws) -> list[str]:
    return sorted(item["DBInstanceIdentifier"] for item in aws.rds.describe_db_instances()["DBInstances"])


async def test_retention_over_35_rejected(bot: Sandbox, aws: Aws) -> None:
    run_id = await request(bot, "rds configure-backups --retention 90")

    assert await run_state(bot, run_id) == "failed"
    summary = await step_summary(bot, run_id, "check")
    assert summary.startswith("RDS keeps automated backups for at most 35 days, so a retention of 90 days cannot be set")
    assert "Nothing was sent to AWS." in summary
    assert "AWS Backup plan" in summary and "manual snapshots" in summary
    assert "waiting" not in card_text(bot, run_id)
    assert retention(aws) == 7


async def test_retention_change_needs_approval(bot: Sandbox, aws: Aws) -> None:
    run_id = await request(bot, "rds configure-backups --retention 35 --window 02:00-02:45")
    assert await run_state(bot, run_id) == "waiting_for_approval", card_text(bot, run_id)
    assert "1 approval from APPROVERS" in card_text(bot, run_id)
    assert "backup retention 7 → 35 days; backup window 03:00-04:00 → 02:00-02:45" in card_text(bot, run_id)
    assert retention(aws) == 7

    await approve(bot, run_id, user=bot.users.approver)

    assert await run_state(bot, run_id) == "completed", card_text(bot, run_id)
    described = aws.rds.describe_db_instances(DBInstanceIdentifier=aws.instance_id)["DBInstances"][0]
    assert described["BackupRetentionPeriod"] == 35
    assert described["PreferredBackupWindow"] == "02:00-02:45"


async def test_retention_zero_warns(bot: Sandbox) -> None:
    run_id = await request(bot, "rds configure-backups --retention 0 --dry-run")

    text = card_text(bot, run_id)
    assert "Retention 0 turns automated backups OFF: point-in-time recovery stops working." in text
    assert "brief outage" in text


@pytest.mark.parametrize(
    ("window", "error", "message"),
    [
        ("3-4", UsageError, "`3-4` is not a backup window."),
        ("03:00-03:20", UsageError, "The backup window 03:00-03:20 is 20 minutes long; RDS needs at least 30."),
        ("23:45-00:30", None, ""),
        ("05:30-06:30", Refused, "The backup window 05:30-06:30 overlaps the maintenance window sun:05:00-sun:06:00"),
        ("04:30-05:00", None, ""),
    ],
)
def test_backup_window_checked(window: str, error: type[Exception] | None, message: str) -> None:
    if error is None:
        check_backup_window(window, maintenance_window="sun:05:00-sun:06:00")
        return
    with pytest.raises(error) as raised:
        check_backup_window(window, maintenance_window="sun:05:00-sun:06:00")
    assert str(raised.value).startswith(message)


async def test_snapshot_created(bot: Sandbox, aws: Aws) -> None:
    run_id = await request(bot, "rds snapshot")

    assert await run_state(bot, run_id) == "completed", card_text(bot, run_id)
    snapshots = aws.rds.describe_db_snapshots(DBInstanceIdentifier=aws.instance_id, SnapshotType="manual")["DBSnapshots"]
    assert len(snapshots) == 1
    assert snapshots[0]["DBSnapshotIdentifier"].startswith(f"meridian-bot-{aws.instance_id}-")
    assert f"snapshot {snapshots[0]['DBSnapshotIdentifier']} is available" in await step_summary(bot, run_id, "snapshot")


async def test_pitr_future_time_is_usage_error(bot: Sandbox, aws: Aws) -> None:
    before = instance_ids(aws)

    outcome = await bot.command("pitr 2099-01-01T00:00:00Z")

    assert outcome.reply_text.startswith("TIME: `2099-01-01T00:00:00Z` is in the future.")
    assert outcome.cards == []
    assert instance_ids(aws) == before


@pytest.mark.parametrize("time_text", ["-2d", "2020-01-01T00:00:00Z"])
async def test_pitr_outside_window_rejected(bot: Sandbox, aws: Aws, time_text: str) -> None:
    before = instance_ids(aws)

    run_id = await request(bot, f"pitr {time_text}")

    assert await run_state(bot, run_id) == "failed"
    summary = await step_summary(bot, run_id, "window")
    assert "is outside the restorable window" in summary, summary
    assert "Nothing was sent to AWS." in summary
    assert instance_ids(aws) == before


async def test_pitr_needs_two_approvals(bot: Sandbox, aws: Aws) -> None:
    target = f"{aws.instance_id}-restored"

    run_id = await request(bot, f"pitr latest --target-instance {target}")
    assert await run_state(bot, run_id) == "waiting_for_approval", card_text(bot, run_id)
    assert "2 approvals from APPROVERS" in card_text(bot, run_id)
    assert "Switching DATABASE_URL to the new endpoint is a separate, explicit step." in card_text(bot, run_id)

    await approve(bot, run_id, user=bot.users.approver)
    assert await run_state(bot, run_id) == "waiting_for_approval"
    assert target not in instance_ids(aws)

    await approve(bot, run_id, user=bot.users.second_approver)
    assert await run_state(bot, run_id) == "completed", card_text(bot, run_id)
    assert target in instance_ids(aws)
    assert f"{target} is available at " in await step_summary(bot, run_id, "wait")
    thread = thread_text(bot, run_id)
    assert "SELECT count(*) FROM operations WHERE created_at >" in thread
    assert "Switching the application is a separate step" in thread


async def test_pitr_rejects_existing_target(bot: Sandbox, aws: Aws) -> None:
    run_id = await request(bot, f"pitr latest --target-instance {aws.instance_id}")

    assert await run_state(bot, run_id) == "failed"
    assert f"The RDS instance `{aws.instance_id}` already exists." in await step_summary(bot, run_id, "window")


async def test_status_reports_rpo_and_dump(bot: Sandbox, aws: Aws) -> None:
    backup_id = await request(bot, "backup now")
    assert await run_state(bot, backup_id) == "completed"

    run_id = await request(bot, "backup status")

    rpo = await step_summary(bot, run_id, "rpo")
    assert rpo.startswith("point-in-time recovery now reaches "), rpo
    assert "(RPO 1h) · retention 7 days" in rpo
    dump = await step_summary(bot, run_id, "dump")
    assert dump.startswith("newest good dump meridian_full_"), dump


def instance(*, latest: datetime | None, retention_days: int = 7) -> RdsInstance:
    return RdsInstance(
        identifier="meridian-prod",
        status="available",
        engine="postgres",
        instance_class="db.t3.medium",
        backup_retention_days=retention_days,
        backup_window="03:00-04:00",
        maintenance_window=None,
        latest_restorable_time=latest,
        created_at=None,
        endpoint=None,
        port=None,
    )


@pytest.mark.parametrize(
    ("rds_instance", "within", "start"),
    [
        (instance(latest=NOW - timedelta(minutes=5)), True, "point-in-time recovery now reaches 2026-01-04 11:55:00 UTC, 5m ago"),
        (instance(latest=NOW - timedelta(minutes=61)), False, "RPO exceeded: point-in-time recovery now reaches"),
        (instance(latest=None), False, "meridian-prod reports no LatestRestorableTime"),
        (instance(latest=NOW, retention_days=0), False, "meridian-prod has automated backups off"),
    ],
    ids=["fresh", "stale", "unknown", "off"],
)
def test_rpo_evaluated(rds_instance: RdsInstance, within: bool, start: str) -> None:
    finding = evaluate_rpo(rds_instance, rpo=timedelta(hours=1), now=NOW)

    assert finding.within_limit is within
    assert finding.text.startswith(start), finding.text


def dump(age: timedelta, *, checksum: bool = True, passed: bool | None = None) -> BackupObject:
    verification = None if passed is None else Verification(passed=passed, method="restore-test", at=NOW)
    return BackupObject(
        key=f"daily/dump-{age.total_seconds():.0f}.dump",
        size=10,
        last_modified=NOW - age,
        etag='"x"',
        has_checksum=checksum,
        verification=verification,
    )


@pytest.mark.parametrize(
    ("backups", "within", "start"),
    [
        ((dump(timedelta(hours=3)),), True, "newest good dump dump-10800.dump is 3h old"),
        ((dump(timedelta(hours=27)),), False, "dump overdue: newest good dump dump-97200.dump is 1d 3h old"),
        ((dump(timedelta(hours=1), passed=False), dump(timedelta(hours=25))), True, "newest good dump dump-90000.dump"),
        ((dump(timedelta(hours=1), checksum=False),), False, "no good dump"),
        ((), False, "no good dump"),
    ],
    ids=["fresh", "overdue", "failed-newest", "no-checksum", "none"],
)
def test_dump_age_evaluated(backups: tuple[BackupObject, ...], within: bool, start: str) -> None:
    finding = evaluate_dump(BackupListing(backups=backups, incomplete_uploads=0), now=NOW)

    assert finding.within_limit is within
    assert finding.text.startswith(start), finding.text
