"""`db truncate-sessions [--cascade]`: foreign keys, two approvers, locks and rows removed."""

from __future__ import annotations

import asyncpg
import pytest

from bot.sandbox.environment import Sandbox
from bot.sandbox.meridian_schema import SEED_AUDIT_LOGS, SEED_SESSION_ACTIVITY, SEED_SESSIONS, ApiSessions
from bot.sandbox.text_render import message_text
from procedures import database_truncate
from tests.database.conftest import MeridianDatabase, card, plain, press, request, run_state

FOREIGN_KEY = "session_activity_session_id_fkey"


async def count(meridian: MeridianDatabase, table: str) -> int:
    admin = await asyncpg.connect(meridian.admin_url)
    try:
        return int(await admin.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await admin.close()


async def run_sql(meridian: MeridianDatabase, statement: str) -> None:
    admin = await asyncpg.connect(meridian.admin_url)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


async def test_foreign_key_blocks_plain_truncate(bot: Sandbox, meridian: MeridianDatabase) -> None:
    run_id = await request(bot, "db truncate-sessions")

    assert await run_state(bot, run_id) == "failed"
    text = plain(message_text(card(bot, run_id)))
    assert f"TRUNCATE public.sessions would fail: foreign keys from public.session_activity ({FOREIGN_KEY})" in text
    assert f"CASCADE would also empty public.session_activity ({SEED_SESSION_ACTIVITY} rows)" in text
    assert "Nothing was changed" in text
    assert "--cascade" in text
    assert "Approve" not in text
    assert await count(meridian, "sessions") == SEED_SESSIONS


async def test_cascade_needs_two_approvers(bot: Sandbox, meridian: MeridianDatabase) -> None:
    run_id = await request(bot, "db truncate-sessions --cascade")

    assert await run_state(bot, run_id) == "waiting_for_approval"
    text = plain(message_text(card(bot, run_id)))
    assert f"Empties public.sessions: {SEED_SESSIONS} rows now." in text
    assert f"Empties public.session_activity: {SEED_SESSION_ACTIVITY} rows now." in text
    assert f"Foreign keys into public.sessions: public.session_activity ({FOREIGN_KEY})" in text
    assert "2 approvals" in text

    first = await press(bot, run_id, "approve", user=bot.users.approver)

    assert first == f"Approved. Run `{run_id}` needs 1 more approval from another approver."
    assert await count(meridian, "sessions") == SEED_SESSIONS

    second = await press(bot, run_id, "approve", user=bot.users.second_approver)

    assert second == f"Approved. Run `{run_id}` is starting."
    assert await run_state(bot, run_id) == "completed"
    text = plain(message_text(card(bot, run_id)))
    assert f"removed {SEED_SESSIONS} rows from public.sessions, {SEED_SESSION_ACTIVITY} rows from public.session_activity" in text
    assert await count(meridian, "sessions") == 0
    assert await count(meridian, "session_activity") == 0
    assert await count(meridian, "audit_logs") == SEED_AUDIT_LOGS


async def test_plain_truncate_without_keys(bot: Sandbox, meridian: MeridianDatabase) -> None:
    await run_sql(meridian, f"ALTER TABLE session_activity DROP CONSTRAINT {FOREIGN_KEY}")
    run_id = await request(bot, "db truncate-sessions")
    assert "No other table references public.sessions." in plain(message_text(card(bot, run_id)))
    await run_sql(meridian, "INSERT INTO sessions (user_id, token_hash) VALUES ('late', 'x'), ('later', 'y')")

    await press(bot, run_id, "approve", user=bot.users.approver)
    await press(bot, run_id, "approve", user=bot.users.second_approver)

    assert await run_state(bot, run_id) == "completed"
    # The report counts the rows at the TRUNCATE, not those of the preview.
    assert f"removed {SEED_SESSIONS + 2} rows from public.sessions" in plain(message_text(card(bot, run_id)))
    assert await count(meridian, "sessions") == 0
    assert await count(meridian, "session_activity") == SEED_SESSION_ACTIVITY


async def test_new_foreign_key_voids_plan(bot: Sandbox, meridian: MeridianDatabase) -> None:
    run_id = await request(bot, "db truncate-sessions --cascade")
    await press(bot, run_id, "approve", user=bot.users.approver)
    await run_sql(meridian, "CREATE TABLE session_notes (session_id uuid REFERENCES sessions (id))")

    reply = await press(bot, run_id, "approve", user=bot.users.second_approver)

    assert reply.startswith("The plan changed since it was requested")
    assert await run_state(bot, run_id) == "voided"
    assert await count(meridian, "sessions") == SEED_SESSIONS


async def test_cascade_into_audit_logs_refused(bot: Sandbox, meridian: MeridianDatabase) -> None:
    await run_sql(meridian, "ALTER TABLE audit_logs ADD COLUMN session_id uuid REFERENCES sessions (id)")

    run_id = await request(bot, "db truncate-sessions --cascade")

    assert await run_state(bot, run_id) == "failed"
    text = plain(message_text(card(bot, run_id)))
    assert "CASCADE would also empty public.audit_logs, which hold records the bot never deletes" in text
    assert await count(meridian, "sessions") == SEED_SESSIONS
    assert await count(meridian, "audit_logs") == SEED_AUDIT_LOGS


async def test_lock_timeout_names_holder(
    bot: Sandbox, meridian: MeridianDatabase, api_sessions: ApiSessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database_truncate, "TRUNCATE_LOCK_TIMEOUT_SECONDS", 0.3)
    run_id = await request(bot, "db truncate-sessions --cascade")
    holder = await api_sessions.idle_in_transaction()  # keeps an ACCESS SHARE lock on sessions

    await press(bot, run_id, "approve", user=bot.users.approver)
    await press(bot, run_id, "approve", user=bot.users.second_approver)

    assert await run_state(bot, run_id) == "failed"
    text = plain(message_text(card(bot, run_id)))
    assert "Could not lock public.sessions, public.session_activity within 0.3 s, so nothing was truncated." in text
    assert f"pid {holder.get_server_pid()} ({meridian.app_role}, meridian-api, idle in transaction, AccessShareLock" in text
    assert "/meridian db kill PID --terminate" in text
    assert await count(meridian, "sessions") == SEED_SESSIONS


async def test_missing_privilege_rejected(bot: Sandbox, meridian: MeridianDatabase) -> None:
    await run_sql(meridian, f"REVOKE TRUNCATE ON session_activity FROM {meridian.bot_role}")
    run_id = await request(bot, "db truncate-sessions --cascade")

    await press(bot, run_id, "approve", user=bot.users.approver)
    await press(bot, run_id, "approve", user=bot.users.second_approver)

    assert await run_state(bot, run_id) == "failed"
    text = plain(message_text(card(bot, run_id)))
    assert "PostgreSQL did not let the bot truncate public.sessions, public.session_activity" in text
    assert "Grant TRUNCATE" in text
    assert await count(meridian, "sessions") == SEED_SESSIONS
