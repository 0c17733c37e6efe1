"""Delivering cards: rate limits, channels the bot cannot post in, and the final state."""

from __future__ import annotations

from bot.sandbox.environment import INCIDENT_CHANNEL, Sandbox


async def test_429_on_update_keeps_final_card(no_database_sandbox: Sandbox) -> None:
    no_database_sandbox.slack.rate_limit("chat.update", retry_after=1, times=2)

    outcome = await no_database_sandbox.command("health")

    rejected = [call for call in no_database_sandbox.slack.calls_to("chat.update") if call.status == 429]
    assert len(rejected) == 2
    assert "*Completed* in" in outcome.card_text


async def test_update_error_retried_for_final(no_database_sandbox: Sandbox) -> None:
    no_database_sandbox.slack.fail("chat.update", "internal_error", times=1)

    outcome = await no_database_sandbox.command("health")

    assert "*Completed* in" in outcome.card_text


async def test_private_channel_falls_back(no_database_sandbox: Sandbox) -> None:
    no_database_sandbox.slack.add_channel("C0SECRET", "secret", is_member=False, is_private=True)

    outcome = await no_database_sandbox.command("health", channel="C0SECRET")

    assert outcome.delivery.status == 200
    cards = [message for message in no_database_sandbox.slack.messages_in(INCIDENT_CHANNEL) if message.thread_ts is None]
    assert len(cards) == 1
    notes = [message for message in no_database_sandbox.slack.messages if message.is_ephemeral]
    assert len(notes) == 1
    assert notes[0].visible_to == no_database_sandbox.users.operator
    assert "I cannot post in <#C0SECRET>" in notes[0].text
    assert f"<#{INCIDENT_CHANNEL}>" in notes[0].text


async def test_no_fallback_refuses_clearly(no_database_sandbox: Sandbox) -> None:
    no_database_sandbox.runtime.engine.view._incident_channel = None
    no_database_sandbox.slack.add_channel("C0SECRET", "secret", is_member=False, is_private=True)

    await no_database_sandbox.command("health", channel="C0SECRET")

    notes = [message for message in no_database_sandbox.slack.messages if message.is_ephemeral]
    assert len(notes) == 1
    assert notes[0].text.startswith("I cannot post in this conversation. Invite me with")
    run = (await no_database_sandbox.runtime.store.list_runs())[0]
    assert run.state.value == "failed"
