"""A run meant to change something fails when its target is not configured; a read run skips."""

from __future__ import annotations

from bot.sandbox.environment import INCIDENT_CHANNEL, Sandbox


async def test_write_run_fails_unconfigured(no_database_sandbox: Sandbox) -> None:
    outcome = await no_database_sandbox.command("rds snapshot")

    run = (await no_database_sandbox.runtime.store.list_runs(limit=1))[0]
    assert run.state.value == "failed"
    assert "not configured (set RDS_INSTANCE_ID and AWS_REGION)" in outcome.card_text
    assert "*Completed*" not in outcome.card_text


async def test_critical_run_never_finished(no_database_sandbox: Sandbox) -> None:
    await no_database_sandbox.command("pitr latest")

    run = (await no_database_sandbox.runtime.store.list_runs(limit=1))[0]
    assert run.state.value == "failed"
    posts = [m.text for m in no_database_sandbox.slack.messages_in(INCIDENT_CHANNEL) if run.id in m.text]
    assert posts, "the failure is announced"
    assert all("finished" not in post for post in posts)
    assert any("failed" in post for post in posts)


async def test_read_run_skips_unconfigured(no_database_sandbox: Sandbox) -> None:
    outcome = await no_database_sandbox.command("health")

    assert "⏩ *Database* — not configured (set DATABASE_URL)" in outcome.card_text
    assert "*Completed* in" in outcome.card_text


async def test_problem_run_not_plain_success(no_database_sandbox: Sandbox) -> None:
    sandbox = no_database_sandbox
    sandbox.runtime.targets.backups.pagerduty = None  # the page step of the emergency fails

    await sandbox.command("emergency production-down")

    run = (await sandbox.runtime.store.list_runs(limit=1))[0]
    posts = [m.text for m in sandbox.slack.messages_in(INCIDENT_CHANNEL) if run.id in m.text]
    assert posts
    assert posts[-1].startswith(":warning: EMERGENCY: Production down `")
    assert "critical finding" in posts[-1]
    assert "{" not in posts[-1]
