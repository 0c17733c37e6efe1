"""`oncall` and `page MESSAGE`: the contact table and PagerDuty Events v2 triggers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.sandbox.environment import Sandbox
from bot.sandbox.fakes.pagerduty import FakePagerDuty
from tests.emergency.conftest import ROUTING_KEY, WORKSPACE_URL, emergency_sandbox
from tests.kubernetes.helpers import card_text, run_state, thread_text

CONTACTS = [
    {"role": "On-Call Engineer", "contact": "PagerDuty", "escalation": "Immediate"},
    {"role": "Security Lead", "contact": "security@meridian.example", "escalation": "Security issues", "slack": "S0SECURITY"},
]


@pytest.fixture
async def configured(pagerduty: FakePagerDuty) -> AsyncIterator[Sandbox]:
    async with emergency_sandbox(pagerduty, oncall_contacts=CONTACTS) as sandbox:
        yield sandbox


async def test_oncall_shows_contact_table(configured: Sandbox) -> None:
    outcome = await configured.command("oncall")

    assert await run_state(configured) == "completed"
    table = thread_text(configured, outcome)
    assert "Role" in table
    assert "Escalation" in table
    assert "security@meridian.example" in table
    assert "S0SECURITY" in table
    assert "2 contacts" in card_text(configured, outcome)


async def test_oncall_default_table_names_gaps(bot: Sandbox) -> None:
    outcome = await bot.command("oncall")

    text = card_text(bot, outcome)
    assert "not configured: Backend Lead, Security Lead, Database Admin (set ONCALL_CONTACTS)" in text
    assert "Database Admin" in thread_text(bot, outcome)


async def test_page_sends_trigger(bot: Sandbox, pagerduty: FakePagerDuty) -> None:
    outcome = await bot.command('page "API down since 10:02" --severity error')

    assert await run_state(bot) == "completed", card_text(bot, outcome)
    [event] = pagerduty.events
    runs = await bot.runtime.store.list_runs(limit=1)
    run = runs[0]
    assert event["event_action"] == "trigger"
    assert event["routing_key"] == ROUTING_KEY
    assert event["dedup_key"] == f"meridian-bot/{run.id}/page"
    assert event["payload"]["severity"] == "error"
    assert event["payload"]["summary"] == "API down since 10:02"
    link = event["payload"]["custom_details"]["run_link"]
    assert link == f"{WORKSPACE_URL}/archives/{run.channel_id}/p{run.message_ts.replace('.', '')}"
    assert f"dedup key meridian-bot/{run.id}/page" in card_text(bot, outcome)
    assert ROUTING_KEY not in card_text(bot, outcome)


async def test_page_defaults_to_critical(bot: Sandbox, pagerduty: FakePagerDuty) -> None:
    await bot.command("page disk full")  # several words need no quotes

    assert [event["payload"]["severity"] for event in pagerduty.events] == ["critical"]


@pytest.mark.parametrize(("mode", "expected"), [("rate-limited", "HTTP 429"), ("down", "could not be reached")])
async def test_failed_page_is_reported(bot: Sandbox, pagerduty: FakePagerDuty, mode: str, expected: str) -> None:
    await pagerduty.set_mode(mode)

    outcome = await bot.command('page "API down"')

    assert await run_state(bot) == "failed"
    text = card_text(bot, outcome)
    assert expected in text
    assert pagerduty.events == []


async def test_page_rejects_unknown_severity(bot: Sandbox, pagerduty: FakePagerDuty) -> None:
    outcome = await bot.command('page "API down" --severity urgent')

    assert await run_state(bot) == "failed"
    assert "`urgent` is not a PagerDuty severity" in card_text(bot, outcome)
    assert pagerduty.events == []


async def test_page_without_pagerduty_is_refused(no_database_sandbox: Sandbox) -> None:
    sandbox = no_database_sandbox
    sandbox.runtime.targets.backups.pagerduty = None  # as when PAGERDUTY_ROUTING_KEY is not set
    outcome = await sandbox.command('page "API down"')

    assert await run_state(sandbox) == "failed"
    assert "PagerDuty is not configured, so nobody was paged" in card_text(sandbox, outcome)
