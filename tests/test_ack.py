"""The ack comes first: no Web API call and no target request is needed to answer Slack."""

from __future__ import annotations

from bot.sandbox.environment import OPS_CHANNEL, Sandbox


async def test_ack_precedes_every_call(sandbox: Sandbox) -> None:
    calls_at_start_up = list(sandbox.slack.calls)
    sandbox.slack.hold()

    delivery = await sandbox.driver.command("health", user_id=sandbox.users.operator, channel_id=OPS_CHANNEL)

    assert delivery.status == 200
    assert sandbox.slack.calls == calls_at_start_up, "no Web API call may be answered before the ack"
    assert sandbox.api.requests == []
    assert sandbox.rpc.requests == []
    assert sandbox.frontend.requests == []

    sandbox.slack.release()
    await sandbox.runtime.engine.wait_idle()
    assert len(sandbox.slack.calls_to("chat.postMessage")) == 1
    assert len(sandbox.api.requests_to("/health")) == 1


async def test_usage_error_answered_in_ack(sandbox: Sandbox) -> None:
    sandbox.slack.hold()

    outcome_delivery = await sandbox.driver.command("helth", user_id=sandbox.users.operator, channel_id=OPS_CHANNEL)

    assert outcome_delivery.status == 200
    assert outcome_delivery.json()["response_type"] == "ephemeral"
    assert "Did you mean `/meridian health`?" in outcome_delivery.json()["text"]
    assert sandbox.slack.held == []
    sandbox.slack.release()
