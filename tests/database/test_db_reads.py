"""`db connections`, `db long-queries` and `db audit-logs` against real sessions and tables."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import asyncpg
import pytest

from bot.sandbox.environment import Sandbox
from bot.sandbox.meridian_schema import API_APPLICATION_NAME, SEED_AUDIT_LOGS, ApiSessions
from procedures import database as database_procedures
from tests.conftest import POSTGRES_URL
from tests.database.conftest import PASSWORD_CANARY, MeridianDatabase, card, plain, request, thread_text


def line_of(text: str, title: str) -> str:
    return next(line for line in plain(text).splitlines() if title in line)


async def test_connections_counts_each_state(bot: Sandbox, meridian: MeridianDatabase, api_sessions: ApiSessions) -> None:
    idle = await api_sessions.idle()
    in_transaction = await api_sessions.idle_in_transaction()
    sleeping = await api_sessions.sleeping()
    admin = await asyncpg.connect(meridian.admin_url)
    max_connections = int(await admin.fetchval("SHOW max_connections"))
    await admin.close()

    run_id = await request(bot, "db connections")

    summary = line_of(plain(await card_text(bot, run_id)), "Connections")
    # Other databases on the shared server add connections, so the total is only bounded here.
    total = int(re.search(r"(\d+) of (\d+) connections", summary).group(1))
    assert total >= 4
    assert f"of {max_connections} connections" in summary
    assert "idle in transaction" in summary
    assert f"pid {in_transaction.get_server_pid()}" in summary
    detail = thread_text(bot, run_id)
    app_rows = [line.split() for line in detail.splitlines() if API_APPLICATION_NAME in line and meridian.app_role in line]
    assert [meridian.name, meridian.app_role, API_APPLICATION_NAME, "3"] in app_rows
    assert re.search(rf"{in_transaction.get_server_pid()}\s+{meridian.name}\s+{meridian.app_role}", detail)
    assert str(idle.get_server_pid()) not in detail.split("Idle in transaction")[1]
    assert str(sleeping.get_server_pid()) not in detail.split("Idle in transaction")[1]
    run = await bot.runtime.store.get_run(run_id)
    assert run is not None
    data = run.outputs["connections"]
    assert data["by_state"]["idle in transaction"] >= 1
    assert data["by_state"]["active"] >= 2  # pg_sleep and the bot's own query
    assert in_transaction.get_server_pid() in data["idle_in_transaction_pids"]


async def card_text(bot: Sandbox, run_id: str) -> str:
    from bot.sandbox.text_render import message_text

    return message_text(card(bot, run_id))


async def test_connections_flags_old_transaction(
    bot: Sandbox, api_sessions: ApiSessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    await api_sessions.idle_in_transaction()
    monkeypatch.setattr(database_procedures, "IDLE_IN_TRANSACTION_WARNING", database_procedures.timedelta(0))

    run_id = await request(bot, "db connections")

    assert line_of(await card_text(bot, run_id), "Connections").startswith("⚠️")


async def test_long_queries_lists_sleep_first(bot: Sandbox, api_sessions: ApiSessions) -> None:
    sleeping = await api_sessions.sleeping()
    in_transaction = await api_sessions.idle_in_transaction()
    idle = await api_sessions.idle()

    run_id = await request(bot, "db long-queries")

    run = await bot.runtime.store.get_run(run_id)
    assert run is not None
    pids = run.outputs["queries"]["pids"]
    assert pids[0] == sleeping.get_server_pid()
    assert in_transaction.get_server_pid() in pids
    assert idle.get_server_pid() not in pids
    detail = thread_text(bot, run_id)
    assert f"pid {sleeping.get_server_pid()}" in detail
    assert "wait Timeout:PgSleep" in detail
    assert "SELECT pg_sleep(60)" in detail
    assert "idle in transaction" in detail


async def test_long_queries_leave_out_bot(bot: Sandbox, api_sessions: ApiSessions) -> None:
    await api_sessions.sleeping()

    run_id = await request(bot, "db long-queries --limit 50")

    detail = thread_text(bot, run_id)
    assert "meridian-bot" not in detail
    assert "pg_stat_activity" not in detail


async def test_long_queries_min_duration_and_limit(bot: Sandbox, api_sessions: ApiSessions) -> None:
    await api_sessions.sleeping()
    await api_sessions.sleeping()

    limited = await request(bot, "db long-queries --limit 1")
    none_long = await request(bot, "db long-queries --min-duration 1h")

    limited_run = await bot.runtime.store.get_run(limited)
    assert limited_run is not None
    assert len(limited_run.outputs["queries"]["pids"]) == 1
    assert limited_run.outputs["queries"]["matching"] >= 2
    assert "1 of " in line_of(await card_text(bot, limited), "Non-idle queries")
    assert "no non-idle queries running for 1h or more" in line_of(await card_text(bot, none_long), "Non-idle queries")


async def test_long_queries_escape_query_text(bot: Sandbox, api_sessions: ApiSessions) -> None:
    connection = await api_sessions.idle()
    task = asyncio.create_task(connection.execute("SELECT pg_sleep(30) /* <!channel> & <@U0ADMIN> */"))
    try:
        await asyncio.sleep(0.3)

        run_id = await request(bot, "db long-queries")

        detail = thread_text(bot, run_id)
        assert "&lt;!channel&gt; &amp; &lt;@U0ADMIN&gt;" in detail
        assert "<!channel>" not in detail
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_audit_logs_newest_first(bot: Sandbox) -> None:
    run_id = await request(bot, "db audit-logs --since 7d")

    summary = line_of(await card_text(bot, run_id), "audit_logs")
    assert f"{SEED_AUDIT_LOGS} audit_logs entries in the last 7d" in summary
    lines = thread_text(bot, run_id).splitlines()
    actions = [line.split()[2] for line in lines if re.match(r"^(```)?\d{4}-", line)]
    assert actions == ["login", "mint", "update_basket", "login_failed", "api_key_created", "burn"]
    assert "ip_address=203.0.113.66" in thread_text(bot, run_id)


@pytest.mark.parametrize(
    ("arguments", "expected_count", "expected_more"),
    [
        ("--since 1h", 3, False),
        ("--since 1h --actor alice", 2, False),
        ("--actor alice --limit 2", 2, True),
        ("--actor nobody", 0, False),
    ],
)
async def test_audit_logs_filters(bot: Sandbox, arguments: str, expected_count: int, expected_more: bool) -> None:
    run_id = await request(bot, f"db audit-logs {arguments}")

    run = await bot.runtime.store.get_run(run_id)
    assert run is not None
    data = run.outputs["audit_logs"]
    assert data.get("entries", 0) == expected_count
    assert data.get("more", False) is expected_more


async def test_audit_logs_still_immutable(meridian: MeridianDatabase) -> None:
    connection = await asyncpg.connect(meridian.app_url)
    try:
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await connection.execute("DELETE FROM audit_logs")
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await connection.execute("UPDATE audit_logs SET actor = 'x'")
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await connection.execute("TRUNCATE audit_logs")
        assert await connection.fetchval("SELECT count(*) FROM audit_logs") == SEED_AUDIT_LOGS
    finally:
        await connection.close()


async def test_exhausted_database_reported_quickly(meridian: MeridianDatabase, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    admin = await asyncpg.connect(POSTGRES_URL)
    await admin.execute(f"ALTER ROLE {meridian.bot_role} CONNECTION LIMIT 0")
    await admin.close()

    async with Sandbox(database_url=meridian.bot_url, target_timeout=5.0, card_interval=0.05) as bot:
        started = time.monotonic()
        run_id = await request(bot, "db connections")
        elapsed = time.monotonic() - started

        text = await card_text(bot, run_id)
        assert elapsed < 3
        assert "Could not connect to PostgreSQL at" in text
        assert "too many clients" in text
        assert f"{meridian.bot_role}:***@" in text
        for message in bot.slack.messages:
            assert PASSWORD_CANARY not in message.text
            assert PASSWORD_CANARY not in str(message.blocks)
    assert PASSWORD_CANARY not in caplog.text


async def test_not_configured_skips(no_database_sandbox: Sandbox) -> None:
    run_id = await request(no_database_sandbox, "db connections")

    assert "not configured (set DATABASE_URL)" in await card_text(no_database_sandbox, run_id)
