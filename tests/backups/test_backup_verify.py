"""`backup verify`, the weekly schedule and the RPO watch: PASS, FAIL, paging and cleanup."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bot.clients.pg_tools import ArchiveInvalid, run_pg_restore
from bot.sandbox.environment import Sandbox
from bot.sandbox.fakes.pagerduty import FakePagerDuty
from procedures.backups_schedule import BackupSchedule
from procedures.backups_verify import pagerduty_dedup_key
from tests.backups.conftest import (
    PREFIX,
    ROUTING_KEY,
    SERVER_URL,
    Aws,
    backup_settings,
    card_text,
    databases_like,
    incident_texts,
    request,
    run_output,
    run_state,
)


async def make_backup(bot: Sandbox, aws: Aws) -> str:
    run_id = await request(bot, "backup now")
    assert await run_state(bot, run_id) == "completed", card_text(bot, run_id)
    return next(key for key in aws.keys() if key.endswith(".dump"))


def gauge(bot: Sandbox, aws: Aws) -> str:
    location = f"s3://{aws.bucket}/{PREFIX}"
    for line in bot.runtime.metrics.exposition().decode().splitlines():
        if line.startswith(f'backup_verification_success{{location="{location}"}}'):
            return line.rsplit(" ", 1)[1]
    return "absent"


async def chunks_of(data: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_verify_passes_and_reports(bot: Sandbox, aws: Aws, pagerduty: FakePagerDuty) -> None:
    key = await make_backup(bot, aws)

    run_id = await request(bot, "backup verify")

    assert await run_state(bot, run_id) == "completed"
    result = await run_output(bot, run_id, "test")
    assert result["passed"], result["problems"]
    assert result["backup"]["key"] == key
    assert result["restored"]["row_counts"]["baskets"] == 5
    assert result["scratch_dropped"]
    assert await databases_like("meridian_verify_%") == []
    [posted] = [text for text in incident_texts(bot) if "restore test" in text]
    assert "Backup restore test PASS" in posted
    assert "audit_logs immutability triggers: audit_logs_no_change" in posted
    assert [event["event_action"] for event in pagerduty.events] == ["resolve"]
    assert gauge(bot, aws) == "1.0"


async def test_truncated_dump_fails_verify(bot: Sandbox, aws: Aws, pagerduty: FakePagerDuty) -> None:
    key = await make_backup(bot, aws)
    body = aws.read(key)
    aws.write(key, body[: len(body) - 500])

    run_id = await request(bot, "backup verify")

    result = await run_output(bot, run_id, "test")
    assert not result["passed"]
    [problem] = result["problems"]
    assert problem.startswith(f"The checksum of {key} does not match")
    assert "corrupted or truncated" in problem
    assert result["scratch_database"] is None  # stopped before creating anything
    assert "FAIL · " in card_text(bot, run_id)
    [event] = pagerduty.events
    assert event["routing_key"] == ROUTING_KEY
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == pagerduty_dedup_key(f"s3://{aws.bucket}/{PREFIX}")
    assert event["payload"]["severity"] == "critical"
    assert event["payload"]["summary"].startswith("Backup restore test FAILED: The checksum of")
    assert gauge(bot, aws) == "0.0"
    assert any("Backup restore test FAIL" in text for text in incident_texts(bot))
    tags = {tag["Key"]: tag["Value"] for tag in aws.s3.get_object_tagging(Bucket=aws.bucket, Key=key)["TagSet"]}
    assert tags["meridian-bot-verification"] == "failed"


async def test_corrupted_dump_fails_restore(bot: Sandbox, aws: Aws, pagerduty: FakePagerDuty) -> None:
    key = await make_backup(bot, aws)
    corrupted = b"NOTADUMP" + aws.read(key)[8:]
    aws.write(key, corrupted)
    aws.write(key + ".sha256", f"{hashlib.sha256(corrupted).hexdigest()}  x\n".encode())

    run_id = await request(bot, "backup verify")

    result = await run_output(bot, run_id, "test")
    assert not result["passed"]
    assert result["problems"] == [
        "pg_restore failed: the object is not a pg_dump custom-format archive, or its header is corrupted "
        "(pg_restore: error: input file does not appear to be a valid archive)"
    ]
    assert result["scratch_database"].startswith("meridian_verify_")
    assert result["scratch_dropped"]
    assert await databases_like("meridian_verify_%") == []
    assert pagerduty.open_alerts() == {pagerduty_dedup_key(f"s3://{aws.bucket}/{PREFIX}")}


async def test_failed_checks_drop_scratch(aws: Aws, pagerduty: FakePagerDuty, meridian_db: str) -> None:
    # A database whose baskets are empty restores fine, and fails the checks.
    connection = await asyncpg.connect(f"{SERVER_URL}/{meridian_db}")
    try:
        await connection.execute("DELETE FROM operations; DELETE FROM baskets")
    finally:
        await connection.close()
    settings = backup_settings(aws, meridian_db, pagerduty)
    async with Sandbox(database_url=settings["database_url"], card_interval=0.05, settings_overrides=settings) as bot:
        await make_backup(bot, aws)

        run_id = await request(bot, "backup verify")

        result = await run_output(bot, run_id, "test")
    assert result["problems"] == ["table baskets has no rows"]
    assert result["restored"]["row_counts"]["audit_logs"] == 6
    assert result["scratch_dropped"]
    assert await databases_like("meridian_verify_%") == []
    assert [event["event_action"] for event in pagerduty.events] == ["trigger"]


async def test_verify_without_dumps_fails(bot: Sandbox, aws: Aws, pagerduty: FakePagerDuty) -> None:
    run_id = await request(bot, "backup verify")

    result = await run_output(bot, run_id, "test")
    assert result["problems"] == [f"there is no dump under s3://{aws.bucket}/{PREFIX}"]
    assert [event["event_action"] for event in pagerduty.events] == ["trigger"]


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda dump: dump[: len(dump) - 300], "the archive ends early, so the object is truncated"),
        (lambda dump: b"garbage!" + dump[8:], "the object is not a pg_dump custom-format archive"),
        (lambda dump: b"", "the object is empty or shorter than an archive header"),
    ],
    ids=["truncated", "bad-header", "empty"],
)
async def test_full_read_names_damage(bot: Sandbox, aws: Aws, damage, reason: str) -> None:  # noqa: ANN001
    key = await make_backup(bot, aws)
    dump = aws.read(key)

    with pytest.raises(ArchiveInvalid) as raised:
        await run_pg_restore(None, options=("--file=/dev/null",), source=chunks_of(damage(dump)))

    assert raised.value.reason.startswith(reason), raised.value.reason
    await run_pg_restore(None, options=("--file=/dev/null",), source=chunks_of(dump))


async def test_scheduled_verify_runs_when_due(bot: Sandbox, aws: Aws, pagerduty: FakePagerDuty) -> None:
    await make_backup(bot, aws)
    schedule = bot.runtime.backup_schedule
    assert schedule is not None
    due = schedule.next_verify_time(time.time())
    clock = iter([due - 60, due - 1, due + 1])
    schedule._clock = lambda: next(clock)  # noqa: SLF001

    await schedule.verify_if_due()  # records when the schedule starts counting
    await schedule.verify_if_due()  # not due yet
    assert schedule._verify_task is None or schedule._verify_task.done()  # noqa: SLF001
    await schedule.verify_if_due()  # due
    task = schedule._verify_task  # noqa: SLF001
    assert task is not None
    result = await task

    assert result.passed, result.problems
    assert any("Backup restore test PASS* (schedule `0 4 * * 0`)" in text for text in incident_texts(bot))
    assert [event["event_action"] for event in pagerduty.events] == ["resolve"]


async def test_rpo_watch_posts_and_recovers(bot: Sandbox, aws: Aws) -> None:
    await make_backup(bot, aws)
    schedule = bot.runtime.backup_schedule
    assert schedule is not None
    offset = 0.0
    schedule._clock = lambda: time.time() + offset  # noqa: SLF001

    await schedule.watch()
    offset = 2 * 3600.0
    await schedule.watch()
    await schedule.watch()  # still exceeded: no second post
    offset = 0.0
    await schedule.watch()

    posts = [text for text in incident_texts(bot) if "RPO" in text]
    assert len(posts) == 2, posts
    assert posts[0].startswith("🔴 *RPO limit exceeded*: RPO exceeded: point-in-time recovery now reaches")
    assert "(RPO 1h)" in posts[0]
    assert posts[1].startswith("✅ *RPO back within its limit*")


async def test_dump_watch_flags_overdue(bot: Sandbox, aws: Aws) -> None:
    await make_backup(bot, aws)
    schedule = bot.runtime.backup_schedule
    assert schedule is not None
    offset = 0.0
    schedule._clock = lambda: time.time() + offset  # noqa: SLF001
    before = len(incident_texts(bot))

    await schedule.watch()  # the leader's first tick saw no dump; now there is one
    offset = 27 * 3600.0
    await schedule.watch()

    posts = [text for text in incident_texts(bot)[before:] if "Daily dump" in text]
    assert len(posts) == 2, posts
    assert posts[0].startswith("✅ *Daily dump back within its limit*: newest good dump meridian_full_")
    assert posts[1].startswith("🔴 *Daily dump limit exceeded*: dump overdue: newest good dump meridian_full_")
    assert "overdue after 1d 2h" in posts[1]


async def test_new_leader_runs_missed_verify(bot: Sandbox, aws: Aws, pagerduty: FakePagerDuty) -> None:
    await make_backup(bot, aws)
    due = bot.runtime.backup_schedule.next_verify_time(time.time())
    # The previous leader last checked an hour before the test fell due, then died.
    await bot.runtime.store.record_job_run("backup-verify", due - 3600)
    successor = BackupSchedule(
        cron=bot.settings.backup_verify_schedule,
        rpo=bot.settings.rpo,
        targets=bot.runtime.targets.backups,
        clock=lambda: due + 120,
        store=bot.runtime.store,
    )

    await successor.verify_if_due()

    task = successor._verify_task  # noqa: SLF001
    assert task is not None, "the test that fell due during the change runs"
    result = await task
    assert result.passed, result.problems
    assert await bot.runtime.store.last_job_run("backup-verify") == due + 120
