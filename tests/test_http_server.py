"""The HTTP mode's other endpoints: /healthz and /metrics."""

from __future__ import annotations

import aiohttp

from bot.sandbox.environment import Sandbox


def base(sandbox: Sandbox) -> str:
    return sandbox.driver._events_url.removesuffix("/slack/events")


async def test_healthz_answers(no_database_sandbox: Sandbox) -> None:
    async with aiohttp.ClientSession() as session, session.get(base(no_database_sandbox) + "/healthz") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok"}


async def test_metrics_count_commands(no_database_sandbox: Sandbox) -> None:
    await no_database_sandbox.command("health")
    await no_database_sandbox.command("helth")
    await no_database_sandbox.driver.post_raw(b"text=x", {"X-Slack-Request-Timestamp": "1", "X-Slack-Signature": "v0=0"})

    async with aiohttp.ClientSession() as session, session.get(base(no_database_sandbox) + "/metrics") as response:
        text = await response.text()

    assert response.status == 200
    assert 'meridian_bot_commands_total{command="health",outcome="started"} 1.0' in text
    assert 'meridian_bot_commands_total{command="invalid",outcome="usage_error"} 1.0' in text
    assert 'meridian_bot_runs_total{procedure="health",state="completed"} 1.0' in text
    assert 'meridian_bot_rejected_requests_total{reason="stale timestamp"} 1.0' in text
    assert "meridian_bot_run_duration_seconds_count" in text
