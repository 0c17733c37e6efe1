"""`emergency security-breach`: one plan, two approvals, its steps in order, and stop on failure."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bot.sandbox.environment import Sandbox
from bot.sandbox.fakes.kubernetes.server import DEFAULT_SECRET_VALUES
from bot.sandbox.fakes.pagerduty import FakePagerDuty
from bot.sandbox.meridian_schema import SEED_AUDIT_LOGS, SEED_SESSIONS
from tests.database.conftest import PASSWORD_CANARY, MeridianDatabase, meridian  # noqa: F401 (fixture)
from tests.emergency.conftest import emergency_sandbox
from tests.kubernetes.conftest import role_rules
from tests.kubernetes.helpers import approve, card_text, press, run_state, thread_text
from tests.secrets.conftest import assert_never_written

BREACH_KEYS = ("JWT_SECRET", "SESSION_TOKEN_SALT", "API_KEY_SALT")


@pytest.fixture
async def breach_bot(meridian: MeridianDatabase, pagerduty: FakePagerDuty, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Sandbox]:  # noqa: F811
    caplog.set_level(logging.DEBUG)
    async with emergency_sandbox(pagerduty, database_url=meridian.bot_url) as sandbox:
        sandbox.kubernetes.enforce(role_rules())
        yield sandbox


async def count(meridian: MeridianDatabase, table: str) -> int:  # noqa: F811
    admin = await asyncpg.connect(meridian.admin_url)
    try:
        return int(await admin.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await admin.close()


def log_level(bot: Sandbox) -> str:
    env = bot.kubernetes.deployment.spec["template"]["spec"]["containers"][0]["env"]
    return next(item["value"] for item in env if item["name"] == "RUST_LOG")


async def approve_twice(bot: Sandbox, outcome) -> None:  # noqa: ANN001
    await approve(bot, outcome)
    await press(bot, outcome, user=bot.users.second_approver)


async def test_breach_plan_runs_every_step(
    breach_bot: Sandbox, meridian: MeridianDatabase, pagerduty: FakePagerDuty, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    outcome = await breach_bot.command("emergency security-breach")

    assert await run_state(breach_bot) == "waiting_for_approval", card_text(breach_bot, outcome)
    text = card_text(breach_bot, outcome)
    for line in ("1. Rotate JWT_SECRET, SESSION_TOKEN_SALT and API_KEY_SALT", "2. Invalidate all sessions: TRUNCATE public.sessions", "3. Set RUST_LOG=debug", "5. Show the audit_logs"):
        assert line in text
    assert "2 approvals" in text
    [event] = pagerduty.events
    assert "security breach suspected" in event["payload"]["summary"]
    assert breach_bot.kubernetes.secret_values() == DEFAULT_SECRET_VALUES

    await approve(breach_bot, outcome)
    assert await count(meridian, "sessions") == SEED_SESSIONS
    await press(breach_bot, outcome, user=breach_bot.users.second_approver)

    assert await run_state(breach_bot) == "completed", card_text(breach_bot, outcome)
    values = breach_bot.kubernetes.secret_values()
    for key in BREACH_KEYS:
        assert values[key] != DEFAULT_SECRET_VALUES[key]
    assert values["DATABASE_URL"] == DEFAULT_SECRET_VALUES["DATABASE_URL"]
    assert await count(meridian, "sessions") == 0
    assert await count(meridian, "audit_logs") == SEED_AUDIT_LOGS
    assert log_level(breach_bot) == "debug"
    text = card_text(breach_bot, outcome)
    assert "audit_logs entries in the last" in text
    assert "mallory" in thread_text(breach_bot, outcome)
    await assert_never_written(
        breach_bot, caplog, [values[key] for key in BREACH_KEYS] + [DEFAULT_SECRET_VALUES[key] for key in BREACH_KEYS] + [PASSWORD_CANARY]
    )


async def test_breach_failing_step_stops_later_ones(breach_bot: Sandbox, meridian: MeridianDatabase) -> None:  # noqa: F811
    outcome = await breach_bot.command("emergency security-breach")
    breach_bot.kubernetes.fail_next(500, verb="patch", resource="deployments")
    await approve_twice(breach_bot, outcome)

    assert await run_state(breach_bot) == "failed"
    text = card_text(breach_bot, outcome)
    assert "wrote new JWT_SECRET, SESSION_TOKEN_SALT, API_KEY_SALT" in text
    assert f"removed {SEED_SESSIONS} rows from public.sessions" in text
    assert "HTTP 500" in text
    assert text.count("skipped because an earlier step failed") == 2
    assert log_level(breach_bot) == "info"
    assert "mallory" not in thread_text(breach_bot, outcome)


async def test_breach_one_approval_is_not_enough(breach_bot: Sandbox, meridian: MeridianDatabase) -> None:  # noqa: F811
    outcome = await breach_bot.command("emergency security-breach")
    await approve(breach_bot, outcome)

    assert await run_state(breach_bot) == "waiting_for_approval"
    assert breach_bot.kubernetes.secret_values() == DEFAULT_SECRET_VALUES
    assert await count(meridian, "sessions") == SEED_SESSIONS
