"""`db kill PID [--terminate]`: exactly the chosen backend, only after approval, identity-bound."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest
from pydantic import SecretStr

from bot.clients.database import MeridianDatabase as DatabaseClient
from bot.clients.meridian_db import BackendIdentity, query_digest
from bot.sandbox.environment import Sandbox
from bot.sandbox.meridian_schema import ApiSessions
from bot.sandbox.text_render import message_text
from tests.conftest import POSTGRES_URL
from tests.database.conftest import MeridianDatabase, card, plain, press, request, run_state


async def backend_state(meridian: MeridianDatabase, pid: int) -> str | None:
    """The backend's state, or "gone" when no process has this pid."""
    admin = await asyncpg.connect(meridian.admin_url)
    try:
        row = await admin.fetchrow("SELECT state FROM pg_stat_activity WHERE pid = $1", pid)
    finally:
        await admin.close()
    return "gone" if row is None else row["state"]


async def test_cancel_only_after_approval(bot: Sandbox, meridian: MeridianDatabase, api_sessions: ApiSessions) -> None:
    target = await api_sessions.sleeping()
    bystander = await api_sessions.sleeping()
    pid = target.get_server_pid()

    run_id = await request(bot, f"db kill {pid}")

    assert await run_state(bot, run_id) == "waiting_for_approval"
    text = plain(message_text(card(bot, run_id)))
    assert f"Cancel the query of backend {pid} ({meridian.app_role}, meridian-api)" in text
    assert "SELECT pg_sleep(60)" in text
    assert "pg_cancel_backend stops the running query" in text
    assert await backend_state(meridian, pid) == "active"

    reply = await press(bot, run_id, "approve", user=bot.users.approver)

    assert reply == f"Approved. Run `{run_id}` is starting."
    assert await run_state(bot, run_id) == "completed"
    assert f"cancelled the query of backend {pid}; the session is now idle" in plain(message_text(card(bot, run_id)))
    assert await backend_state(meridian, pid) == "idle"
    assert await target.fetchval("SELECT 1") == 1  # the session survived the cancel
    assert await backend_state(meridian, bystander.get_server_pid()) == "active"


async def test_terminate_ends_session(bot: Sandbox, meridian: MeridianDatabase, api_sessions: ApiSessions) -> None:
    target = await api_sessions.idle_in_transaction()
    bystander = await api_sessions.idle_in_transaction()
    pid = target.get_server_pid()

    run_id = await request(bot, f"db kill {pid} --terminate")
    assert await backend_state(meridian, pid) == "idle in transaction"
    await press(bot, run_id, "approve", user=bot.users.approver)

    assert await run_state(bot, run_id) == "completed"
    assert f"terminated backend {pid}: its session is gone" in plain(message_text(card(bot, run_id)))
    assert await backend_state(meridian, pid) == "gone"
    assert await backend_state(meridian, bystander.get_server_pid()) == "idle in transaction"


async def test_dry_run_signals_nothing(bot: Sandbox, meridian: MeridianDatabase, api_sessions: ApiSessions) -> None:
    pid = (await api_sessions.sleeping()).get_server_pid()

    outcome = await bot.command(f"db kill {pid} --terminate --dry-run")

    assert "Terminate backend" in plain(outcome.card_text)
    assert "dry run: would need 1 approval" in outcome.card_text
    assert await backend_state(meridian, pid) == "active"


async def test_cancel_idle_transaction_refused(bot: Sandbox, meridian: MeridianDatabase, api_sessions: ApiSessions) -> None:
    pid = (await api_sessions.idle_in_transaction()).get_server_pid()

    run_id = await request(bot, f"db kill {pid}")

    assert await run_state(bot, run_id) == "failed"
    text = plain(message_text(card(bot, run_id)))
    assert f"Backend {pid} is idle in transaction, so it runs no query to cancel." in text
    assert f"/meridian db kill {pid} --terminate" in text
    assert await backend_state(meridian, pid) == "idle in transaction"


async def refusal(bot: Sandbox, pid: int) -> str:
    run_id = await request(bot, f"db kill {pid} --terminate")
    assert await run_state(bot, run_id) == "failed"
    return plain(message_text(card(bot, run_id)))


async def test_unknown_pid_refused(bot: Sandbox) -> None:
    text = await refusal(bot, 2_000_000_000)

    assert "There is no backend with pid 2000000000." in text
    assert "/meridian db long-queries" in text


async def test_background_process_refused(bot: Sandbox, meridian: MeridianDatabase) -> None:
    admin = await asyncpg.connect(meridian.admin_url)
    pid = await admin.fetchval("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")
    await admin.close()

    text = await refusal(bot, pid)

    assert f"pid {pid} is a checkpointer, not a client backend" in text


async def test_other_database_refused(bot: Sandbox, meridian: MeridianDatabase) -> None:
    elsewhere = await asyncpg.connect(POSTGRES_URL.rsplit("/", 1)[0].replace("postgres@", f"{meridian.app_role}@") + "/postgres")
    try:
        pid = elsewhere.get_server_pid()

        text = await refusal(bot, pid)

        assert f"Backend {pid} is connected to database postgres, not {meridian.name}" in text
        assert await elsewhere.fetchval("SELECT 1") == 1
    finally:
        await elsewhere.close()


async def test_superuser_backend_refused(bot: Sandbox, meridian: MeridianDatabase) -> None:
    superuser = await asyncpg.connect(meridian.admin_url)
    try:
        text = await refusal(bot, superuser.get_server_pid())

        assert "The bot's database role may not signal backend" in text
        assert "(role postgres)" in text
    finally:
        await superuser.close()


async def test_own_connection_refused(bot: Sandbox, meridian: MeridianDatabase) -> None:
    await request(bot, "db connections")  # leaves an idle connection in the bot's pool
    admin = await asyncpg.connect(meridian.admin_url)
    pid = await admin.fetchval(
        "SELECT pid FROM pg_stat_activity WHERE usename = $1 AND application_name = 'meridian-bot' LIMIT 1",
        meridian.bot_role,
    )
    await admin.close()

    text = await refusal(bot, pid)

    assert f"Backend {pid} is one of the bot's own connections." in text


async def test_vanished_backend_voids_plan(bot: Sandbox, meridian: MeridianDatabase, api_sessions: ApiSessions) -> None:
    target = await api_sessions.idle()
    pid = target.get_server_pid()
    run_id = await request(bot, f"db kill {pid} --terminate")
    await target.close()
    await wait_until_gone(meridian, pid)

    reply = await press(bot, run_id, "approve", user=bot.users.approver)

    assert reply.startswith("The plan changed since it was requested, so its approvals are void")
    assert await run_state(bot, run_id) == "voided"


async def test_new_query_voids_plan(bot: Sandbox, meridian: MeridianDatabase, api_sessions: ApiSessions) -> None:
    target = await api_sessions.idle()
    pid = target.get_server_pid()
    run_id = await request(bot, f"db kill {pid} --terminate")
    await target.execute("SELECT 'a different query'")

    reply = await press(bot, run_id, "approve", user=bot.users.approver)

    assert reply.startswith("The plan changed since it was requested")
    assert await run_state(bot, run_id) == "voided"
    assert await backend_state(meridian, pid) == "idle"


async def test_reused_pid_not_signalled(meridian: MeridianDatabase, api_sessions: ApiSessions) -> None:
    target = await api_sessions.idle()
    pid = target.get_server_pid()
    admin = await asyncpg.connect(meridian.admin_url)
    row = await admin.fetchrow("SELECT backend_start, query FROM pg_stat_activity WHERE pid = $1", pid)
    await admin.close()
    client = DatabaseClient(dsn=SecretStr(meridian.bot_url))
    # The same pid with another start time is what a reused pid looks like.
    earlier_session = BackendIdentity(
        pid=pid, backend_start=row["backend_start"] - timedelta(seconds=1), query_sha256=query_digest(row["query"])
    )
    same_session = BackendIdentity(pid=pid, backend_start=row["backend_start"], query_sha256=query_digest(row["query"]))

    try:
        refused = await client.signal_backend(earlier_session, terminate=True, wait_seconds=1)
        assert refused.signalled is False
        assert await backend_state(meridian, pid) == "idle"

        done = await client.signal_backend(same_session, terminate=True, wait_seconds=5)
        assert done.signalled is True
        assert done.ended is True
        assert await backend_state(meridian, pid) == "gone"
    finally:
        await client.close()


async def wait_until_gone(meridian: MeridianDatabase, pid: int) -> None:
    async with asyncio.timeout(5):
        while await backend_state(meridian, pid) != "gone":
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("text", ["db kill", "db kill abc", "db kill 0"])
async def test_kill_usage_errors(bot: Sandbox, text: str) -> None:
    outcome = await bot.command(text)

    assert "PID" in outcome.reply_text
    assert await bot.runtime.store.list_runs() == []
