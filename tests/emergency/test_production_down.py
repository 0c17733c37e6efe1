"""`emergency production-down`: pods, rollout history, /health, a page, and a rollback when a rollout was recent."""

from __future__ import annotations

from bot.sandbox.environment import Sandbox
from bot.sandbox.fakes.pagerduty import FakePagerDuty
from tests.kubernetes.helpers import approve, card_text, run_state

NEW_IMAGE = "ghcr.io/meridian/api:1.4.3"
PREVIOUS_IMAGE = "ghcr.io/meridian/api:1.4.2"


def image(bot: Sandbox) -> str:
    return bot.kubernetes.deployment.spec["template"]["spec"]["containers"][0]["image"]


def deploy_now(bot: Sandbox) -> None:
    bot.kubernetes.cluster.deploy_image(bot.kubernetes.deployment_name, NEW_IMAGE, change_cause="deploy 1.4.3 (pipeline 815)")
    for _ in range(10):
        bot.kubernetes.cluster.step()


async def test_recent_rollout_offers_rollback(bot: Sandbox, pagerduty: FakePagerDuty) -> None:
    deploy_now(bot)

    outcome = await bot.command("emergency production-down")

    assert await run_state(bot) == "waiting_for_approval", card_text(bot, outcome)
    text = card_text(bot, outcome)
    assert "a recent deployment, so the runbook says roll back now" in text
    assert "revision 5 to 4" in text
    assert "1 approval" in text
    [event] = pagerduty.events
    assert event["payload"]["summary"] == "EMERGENCY: Meridian production is down"
    assert event["payload"]["severity"] == "critical"
    assert image(bot) == NEW_IMAGE

    await approve(bot, outcome)

    assert await run_state(bot) == "completed", card_text(bot, outcome)
    assert image(bot) == PREVIOUS_IMAGE


async def test_no_recent_rollout_offers_none(bot: Sandbox, pagerduty: FakePagerDuty) -> None:
    outcome = await bot.command("emergency production-down")

    assert await run_state(bot) == "completed", "no recent rollout is a finding, not a failure"
    text = card_text(bot, outcome)
    assert "nothing to approve: no rollout in the last 1h" in text
    assert "Approve" not in text
    assert len(pagerduty.events) == 1
    assert image(bot) == PREVIOUS_IMAGE


async def test_failed_page_shown_and_flow_goes_on(bot: Sandbox, pagerduty: FakePagerDuty) -> None:
    deploy_now(bot)
    await pagerduty.set_mode("rate-limited")

    outcome = await bot.command("emergency production-down")

    assert await run_state(bot) == "waiting_for_approval"
    assert "page FAILED, nobody was paged" in card_text(bot, outcome)
    assert pagerduty.events == []


async def test_dry_run_pages_nobody(bot: Sandbox, pagerduty: FakePagerDuty) -> None:
    deploy_now(bot)

    await bot.command("emergency production-down --dry-run")

    assert pagerduty.events == []
    assert image(bot) == NEW_IMAGE
