"""`backup now`, `backup list` and `restore`: a seeded database round-trips through S3."""

from __future__ import annotations

import hashlib

import asyncpg
import pytest

from bot.clients.aws import boto_client
from bot.clients.backups_storage import S3BackupStorage
from bot.sandbox.environment import Sandbox
from procedures.backups_common import ByteProgress
from tests.backups.conftest import (
    PASSWORD_CANARY,
    PREFIX,
    REGION,
    SERVER_URL,
    Aws,
    approve,
    card_text,
    databases_like,
    request,
    row_counts,
    run_output,
    run_state,
    step_summary,
    thread_text,
)


def dump_keys(aws: Aws) -> list[str]:
    return [key for key in aws.keys() if key.endswith(".dump")]


async def test_backup_round_trips(bot: Sandbox, aws: Aws, meridian_db: str) -> None:
    run_id = await request(bot, "backup now")

    assert await run_state(bot, run_id) == "completed", card_text(bot, run_id)
    [key] = dump_keys(aws)
    assert key.startswith(f"{PREFIX}meridian_full_")
    body = aws.read(key)
    checksum_line = aws.read(key + ".sha256").decode()
    assert checksum_line == f"{hashlib.sha256(body).hexdigest()}  {key.removeprefix(PREFIX)}\n"
    assert "verified: sha256 matches and pg_restore read all" in await step_summary(bot, run_id, "verify")
    tags = {tag["Key"]: tag["Value"] for tag in aws.s3.get_object_tagging(Bucket=aws.bucket, Key=key)["TagSet"]}
    assert tags["meridian-bot-verification"] == "passed"

    list_id = await request(bot, "backup list")
    listed = thread_text(bot, list_id)
    assert key.removeprefix(PREFIX) in listed
    assert "sha256 ✓" in listed
    assert "full read passed" in listed
    assert "1 dumps in" in await step_summary(bot, list_id, "list")

    restore_id = await request(bot, f"restore {key.removeprefix(PREFIX)} --target-db meridian_restored_roundtrip")
    assert await run_state(bot, restore_id) == "waiting_for_approval", card_text(bot, restore_id)
    await approve(bot, restore_id, user=bot.users.approver)
    await approve(bot, restore_id, user=bot.users.second_approver)

    assert await run_state(bot, restore_id) == "completed", card_text(bot, restore_id)
    assert await row_counts("meridian_restored_roundtrip") == await row_counts(meridian_db)
    check = await run_output(bot, restore_id, "check")
    assert check["problems"] == []
    assert set(check["immutability_triggers"]) == {"audit_logs_no_change"}
    assert check["foreign_keys"] == 3


async def test_backup_metrics_set(bot: Sandbox, aws: Aws) -> None:
    run_id = await request(bot, "backup now")
    assert await run_state(bot, run_id) == "completed", card_text(bot, run_id)

    exposition = bot.runtime.metrics.exposition().decode()
    location = f's3://{aws.bucket}/{PREFIX}'
    assert f'backup_last_success_timestamp{{location="{location}"}}' in exposition
    [key] = dump_keys(aws)
    size = len(aws.read(key))
    assert f'backup_size_bytes{{location="{location}"}} {float(size)}' in exposition


async def test_metrics_absent_before_backup(bot: Sandbox) -> None:
    exposition = bot.runtime.metrics.exposition().decode()

    assert "backup_size_bytes{" not in exposition
    assert "backup_verification_success{" not in exposition


async def test_password_never_shown(bot: Sandbox) -> None:
    run_id = await request(bot, "backup now")
    await request(bot, "backup verify")

    assert await run_state(bot, run_id) == "completed"
    for message in bot.slack.messages:
        assert PASSWORD_CANARY not in str(message.blocks) + message.text


async def test_critical_only_restores(bot: Sandbox, aws: Aws) -> None:
    run_id = await request(bot, "backup now --critical-only")
    assert await run_state(bot, run_id) == "completed", card_text(bot, run_id)
    [key] = dump_keys(aws)
    assert "meridian_critical_" in key

    verify_id = await request(bot, f"backup verify --backup {key}")

    result = await run_output(bot, verify_id, "test")
    assert result["passed"], result["problems"]
    counts = result["restored"]["row_counts"]
    assert counts["sessions"] == 0
    assert counts["session_activity"] == 0
    assert counts["operations"] == 20
    assert counts["audit_logs"] == 6
    assert result["restored"]["immutability_triggers"] == ["audit_logs_no_change"]


async def test_list_ignores_partial_objects(bot: Sandbox, aws: Aws) -> None:
    run_id = await request(bot, "backup now")
    assert await run_state(bot, run_id) == "completed"
    aws.s3.create_multipart_upload(Bucket=aws.bucket, Key=f"{PREFIX}meridian_full_partial.dump")
    aws.write(f"{PREFIX}orphan.dump.sha256", b"0" * 64 + b"  orphan.dump\n")
    aws.write(f"{PREFIX}meridian_nochecksum.dump", b"PGDMP")

    list_id = await request(bot, "backup list")

    summary = await step_summary(bot, list_id, "list")
    assert summary.startswith("2 dumps in"), summary
    listed = thread_text(bot, list_id)
    assert "1 incomplete multipart upload(s) are not backups" in listed
    assert "meridian_nochecksum.dump · 5 B" in listed
    assert "no checksum file" in listed
    assert "orphan" not in listed


async def test_backup_reports_pg_dump_error(aws: Aws, pagerduty) -> None:  # noqa: ANN001
    from tests.backups.conftest import backup_settings

    settings = backup_settings(aws, "meridian_bot_test_missing_db", pagerduty)
    async with Sandbox(database_url=settings["database_url"], card_interval=0.05, settings_overrides=settings) as bot:
        run_id = await request(bot, "backup now")

        assert await run_state(bot, run_id) == "failed"
        summary = await step_summary(bot, run_id, "dump")
        assert summary.startswith("pg_dump failed: the database does not exist on the server"), summary
        assert "meridian_bot_test_missing_db" in summary
        assert PASSWORD_CANARY not in summary
    assert dump_keys(aws) == []
    assert aws.s3.list_multipart_uploads(Bucket=aws.bucket).get("Uploads", []) == []


async def test_multipart_upload_streams(aws: Aws) -> None:
    store = S3BackupStorage(
        boto_client("s3", region=REGION, endpoint_url=aws.url),
        bucket=aws.bucket,
        prefix=PREFIX,
        part_bytes=5 * 1024 * 1024,
    )
    data = hashlib.sha256(b"seed").digest() * (12 * 1024 * 1024 // 32 + 7)
    upload = store.start_upload(f"{PREFIX}big.dump", metadata={})
    for start in range(0, len(data), 1_000_000):
        await upload.write(data[start : start + 1_000_000])
    uploaded = await upload.complete()

    assert uploaded.parts == 3
    assert uploaded.size == len(data)
    assert uploaded.sha256 == hashlib.sha256(data).hexdigest()
    assert aws.read(f"{PREFIX}big.dump") == data


async def test_aborted_upload_leaves_nothing(aws: Aws) -> None:
    store = S3BackupStorage(boto_client("s3", region=REGION, endpoint_url=aws.url), bucket=aws.bucket, prefix=PREFIX)
    upload = store.start_upload(f"{PREFIX}cut.dump", metadata={})
    await upload.write(b"x" * 1000)
    await upload._send_part()  # starts the multipart upload, as a full part would

    await upload.abort()

    assert aws.s3.list_multipart_uploads(Bucket=aws.bucket).get("Uploads", []) == []
    assert aws.keys() == []


def test_progress_text_shows_rate() -> None:
    async def ignore(text: str) -> None:
        return None

    meter = ByteProgress(ignore, "pg_dump → S3", total=4 * 1024 * 1024)
    meter.count = 2 * 1024 * 1024

    assert meter.text().startswith("pg_dump → S3: 2.0 MiB of 4.0 MiB at ")
    assert meter.text().endswith("/s")


@pytest.mark.parametrize("target_db", ["postgres", "meridian_bot_test_exists"])
async def test_restore_rejects_existing_database(bot: Sandbox, aws: Aws, target_db: str) -> None:
    run_id = await request(bot, "backup now")
    assert await run_state(bot, run_id) == "completed"
    [key] = dump_keys(aws)
    admin = await asyncpg.connect(f"{SERVER_URL}/postgres")
    try:
        await admin.execute('CREATE DATABASE "meridian_bot_test_exists"')
        restore_id = await request(bot, f"restore {key} --target-db {target_db}")
    finally:
        await admin.execute('DROP DATABASE IF EXISTS "meridian_bot_test_exists" WITH (FORCE)')
        await admin.close()

    assert await run_state(bot, restore_id) == "failed"
    assert f"The database `{target_db}` already exists" in await step_summary(bot, restore_id, "inspect")
    assert await databases_like("meridian_restored_%") == []


async def test_restore_rejects_live_database(bot: Sandbox, aws: Aws, meridian_db: str) -> None:
    run_id = await request(bot, "backup now")
    assert await run_state(bot, run_id) == "completed"
    [key] = dump_keys(aws)

    restore_id = await request(bot, f"restore {key} --target-db {meridian_db}")

    assert await run_state(bot, restore_id) == "failed"
    assert "is the live database. A restore never writes over it." in await step_summary(bot, restore_id, "inspect")
