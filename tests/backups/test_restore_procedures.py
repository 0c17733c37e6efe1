"""`restore` and `restore table`: checksums first, two approvers, triggers on, nothing lost."""

from __future__ import annotations

import asyncpg
import pytest

from bot.sandbox.environment import Sandbox
from tests.backups.conftest import (
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
)


async def make_backup(bot: Sandbox, aws: Aws) -> str:
    run_id = await request(bot, "backup now")
    assert await run_state(bot, run_id) == "completed", card_text(bot, run_id)
    return next(key for key in aws.keys() if key.endswith(".dump"))


async def execute(database: str, statement: str) -> None:
    connection = await asyncpg.connect(f"{SERVER_URL}/{database}")
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def fetch_value(database: str, query: str) -> object:
    connection = await asyncpg.connect(f"{SERVER_URL}/{database}")
    try:
        return await connection.fetchval(query)
    finally:
        await connection.close()


async def test_checksum_mismatch_stops_restore(bot: Sandbox, aws: Aws) -> None:
    key = await make_backup(bot, aws)
    body = aws.read(key)
    aws.write(key, body[:-1] + bytes([body[-1] ^ 0xFF]))

    run_id = await request(bot, f"restore {key} --target-db meridian_restored_mismatch")

    assert await run_state(bot, run_id) == "failed"
    summary = await step_summary(bot, run_id, "checksum")
    assert summary.startswith(f"The checksum of {key} does not match"), summary
    assert "Nothing was created or restored." in summary
    assert "approval" not in [name for name, state in await step_states(bot, run_id) if state == "waiting"]
    assert await databases_like("meridian_restored_%") == []


async def step_states(bot: Sandbox, run_id: str) -> list[tuple[str, str]]:
    run = await bot.runtime.store.get_run(run_id)
    assert run is not None
    return [(record.name, record.state.value) for record in run.steps]


async def test_restore_needs_two_approvals(bot: Sandbox, aws: Aws) -> None:
    key = await make_backup(bot, aws)

    run_id = await request(bot, f"restore {key} --target-db meridian_restored_twice")
    text = card_text(bot, run_id)
    assert "2 approvals from APPROVERS" in text
    assert "Restore meridian_full_" in text and "into the new database meridian_restored_twice" in text

    await approve(bot, run_id, user=bot.users.approver)
    assert await run_state(bot, run_id) == "waiting_for_approval"
    assert await databases_like("meridian_restored_twice") == []

    await approve(bot, run_id, user=bot.users.second_approver)
    assert await run_state(bot, run_id) == "completed", card_text(bot, run_id)
    assert await databases_like("meridian_restored_twice") == ["meridian_restored_twice"]


async def test_replaced_object_voids_restore(bot: Sandbox, aws: Aws) -> None:
    key = await make_backup(bot, aws)
    run_id = await request(bot, f"restore {key} --target-db meridian_restored_replaced")
    await approve(bot, run_id, user=bot.users.approver)

    aws.write(key, aws.read(key))  # the same bytes, a new object: the approval no longer binds it
    await approve(bot, run_id, user=bot.users.second_approver)

    assert await run_state(bot, run_id) == "voided"
    assert await databases_like("meridian_restored_replaced") == []


async def test_table_restore_adds_missing_rows(bot: Sandbox, aws: Aws, meridian_db: str) -> None:
    key = await make_backup(bot, aws)
    before = await row_counts(meridian_db)
    await execute(meridian_db, "DELETE FROM operations WHERE id IN (3, 4, 5)")
    await execute(meridian_db, "UPDATE operations SET amount = 1 WHERE id = 7")

    run_id = await request(bot, f"restore table operations {key}")

    assert await run_state(bot, run_id) == "waiting_for_approval", card_text(bot, run_id)
    preview = await run_output(bot, run_id, "preview")
    assert preview["rows_in_backup"] == 20
    assert preview["rows_to_add"] == 3
    assert preview["rows_conflicting"] == 17
    assert preview["rows_conflicting_different"] == 1
    text = card_text(bot, run_id)
    assert "Restore the missing rows of operations from meridian_full_" in text
    assert "17 rows with the same primary key already exist (1 differ from the backup)" in text
    assert await databases_like("meridian_table_%") == []

    await approve(bot, run_id, user=bot.users.approver)
    assert await run_state(bot, run_id) == "waiting_for_approval"
    await approve(bot, run_id, user=bot.users.second_approver)

    assert await run_state(bot, run_id) == "completed", card_text(bot, run_id)
    assert await run_output(bot, run_id, "copy") == {"rows_added": 3, "rows_skipped": 17}
    assert (await row_counts(meridian_db))["operations"] == before["operations"]
    assert await fetch_value(meridian_db, "SELECT amount FROM operations WHERE id = 7") == 1
    assert await databases_like("meridian_table_%") == []


async def test_table_restore_keeps_audit_trigger(bot: Sandbox, aws: Aws, meridian_db: str) -> None:
    key = await make_backup(bot, aws)
    # Lose two audit rows the only way the trigger allows: with it switched off by a superuser.
    await execute(
        meridian_db,
        "ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_no_change; "
        "DELETE FROM audit_logs WHERE actor = 'mallory' OR action = 'burn'; "
        "ALTER TABLE audit_logs ENABLE TRIGGER audit_logs_no_change",
    )

    run_id = await request(bot, f"restore table audit_logs {key}")
    await approve(bot, run_id, user=bot.users.approver)
    await approve(bot, run_id, user=bot.users.second_approver)

    assert await run_state(bot, run_id) == "completed", card_text(bot, run_id)
    assert await run_output(bot, run_id, "copy") == {"rows_added": 2, "rows_skipped": 4}
    assert await fetch_value(meridian_db, "SELECT count(*) FROM audit_logs") == 6
    with pytest.raises(asyncpg.RaiseError, match="audit_logs is append-only"):
        await execute(meridian_db, "UPDATE audit_logs SET actor = 'x'")


async def test_table_restore_rolls_back_on_key_error(bot: Sandbox, aws: Aws, meridian_db: str) -> None:
    key = await make_backup(bot, aws)
    await execute(meridian_db, "DELETE FROM operations WHERE basket_id = 2")
    await execute(meridian_db, "DELETE FROM baskets WHERE id = 2")
    run_id = await request(bot, f"restore table operations {key}")
    before = await row_counts(meridian_db)

    await approve(bot, run_id, user=bot.users.approver)
    await approve(bot, run_id, user=bot.users.second_approver)

    assert await run_state(bot, run_id) == "failed"
    summary = await step_summary(bot, run_id, "copy")
    assert summary.startswith("Copying rows into operations failed: a restored row references a row that does not exist"), summary
    assert "nothing was changed" in summary
    assert await row_counts(meridian_db) == before
    assert await databases_like("meridian_table_%") == []


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("missing_table", "The live database has no table `public.missing_table`."),
        ("Operations;drop", "`Operations;drop` is not a valid table name."),
    ],
)
async def test_table_restore_rejects_table(bot: Sandbox, aws: Aws, table: str, message: str) -> None:
    key = await make_backup(bot, aws)

    run_id = await request(bot, f"restore table '{table}' {key}")

    assert await run_state(bot, run_id) == "failed"
    assert (await step_summary(bot, run_id, "inspect")).startswith(message)
