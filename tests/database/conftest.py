"""A Meridian-like database per test, with an application role, the bot's role and a sandbox.

Each test gets its own database and two roles of its own on the local server, dropped at the
end: the application role owns the tables and opens the sessions the procedures look at, and
the bot connects as a non-superuser with pg_monitor and pg_signal_backend, as in production.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from bot.sandbox.environment import Sandbox
from bot.sandbox.meridian_schema import ApiSessions, grant_bot_role, install_schema, seed
from bot.sandbox.slack.records import Message
from bot.sandbox.text_render import message_text
from tests.conftest import POSTGRES_URL

PASSWORD_CANARY = "canary-db-pw-5d1f0a"
SERVER_URL = POSTGRES_URL.rsplit("/", 1)[0]  # postgresql://postgres@127.0.0.1:5432


def _url_for(role: str, database: str, *, password: str | None = None) -> str:
    host = SERVER_URL.split("@", 1)[1]
    credentials = f"{role}:{password}" if password else role
    return f"postgresql://{credentials}@{host}/{database}"


@dataclass(frozen=True)
class MeridianDatabase:
    name: str
    app_role: str
    bot_role: str
    admin_url: str  # the superuser, connected to this database
    app_url: str
    bot_url: str  # with a password that trust authentication ignores, to check redaction


@pytest.fixture
async def meridian() -> AsyncIterator[MeridianDatabase]:
    suffix = secrets.token_hex(4)
    name = f"meridian_bot_test_{suffix}"
    app_role = f"meridian_app_{suffix}"
    bot_role = f"meridian_bot_{suffix}"
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f"CREATE ROLE {app_role} LOGIN")
        await admin.execute(f"CREATE ROLE {bot_role} LOGIN PASSWORD '{PASSWORD_CANARY}'")
        await admin.execute(f"CREATE DATABASE {name}")
        database = MeridianDatabase(
            name=name,
            app_role=app_role,
            bot_role=bot_role,
            admin_url=_url_for("postgres", name),
            app_url=_url_for(app_role, name),
            bot_url=_url_for(bot_role, name, password=PASSWORD_CANARY),
        )
        setup = await asyncpg.connect(database.admin_url)
        try:
            await setup.execute(f"GRANT ALL ON SCHEMA public TO {app_role}")
            await setup.execute(f"SET ROLE {app_role}")
            await install_schema(setup)
            await seed(setup)
            await setup.execute("RESET ROLE")
            await grant_bot_role(setup, bot_role)
        finally:
            await setup.close()
        yield database
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.execute(f"DROP ROLE IF EXISTS {bot_role}")
        await admin.execute(f"DROP ROLE IF EXISTS {app_role}")
        await admin.close()


@pytest.fixture
async def api_sessions(meridian: MeridianDatabase) -> AsyncIterator[ApiSessions]:
    sessions = ApiSessions(url=meridian.app_url, sleep_seconds=60)
    yield sessions
    await sessions.close()


@pytest.fixture
async def bot(meridian: MeridianDatabase) -> AsyncIterator[Sandbox]:
    async with Sandbox(database_url=meridian.bot_url, target_timeout=2.0, card_interval=0.05) as running:
        yield running


def card(bot: Sandbox, run_id: str) -> Message:
    for message in reversed(bot.slack.messages):
        if message.thread_ts is None and not message.is_ephemeral and f"Run `{run_id}`" in message_text(message):
            return bot.slack.message(message.channel, message.ts)
    raise LookupError(f"no card for run {run_id}")


def thread_text(bot: Sandbox, run_id: str) -> str:
    """Every reply in the run card's thread, as posted (mrkdwn)."""
    root = card(bot, run_id)
    return "\n".join(message.text for message in bot.slack.messages if message.thread_ts == root.ts)


async def request(bot: Sandbox, text: str, *, user: str | None = None) -> str:
    """Send the command and return the id of the run it started."""
    outcome = await bot.command(text, user=user)
    runs = await bot.runtime.store.list_runs(limit=1)
    assert runs, f"no run started for {text!r}: {outcome.reply_text}"
    return runs[0].id


async def press(bot: Sandbox, run_id: str, action: str, *, user: str) -> str:
    """Press a button on the run's card as `user`; return the ephemeral reply to them."""
    before = len(bot.slack.messages)
    await bot.driver.press(card(bot, run_id), user_id=user, action_id=f"run.{action}")
    await bot.runtime.engine.wait_idle()
    replies = [m for m in bot.slack.messages[before:] if m.is_ephemeral and m.visible_to == user]
    return replies[-1].text if replies else ""


async def run_state(bot: Sandbox, run_id: str) -> str:
    run = await bot.runtime.store.get_run(run_id)
    assert run is not None
    return run.state.value


def plain(text: str) -> str:
    return text.replace("*", "")
