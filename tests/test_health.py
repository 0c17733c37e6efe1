"""`/meridian health` end to end: a signed slash command in, a run card out."""

from __future__ import annotations

from bot.sandbox.environment import OPS_CHANNEL, Sandbox


def card_text(message) -> str:
    return "\n".join(
        block["text"]["text"] if "text" in block else " ".join(e.get("text", "") for e in block.get("elements", []))
        for block in message.blocks
    )


async def final_card(sandbox: Sandbox):
    def finished(fake):
        for message in fake.messages_in(OPS_CHANNEL):
            if message.thread_ts is None and message.blocks and ("Completed" in card_text(message) or "Failed" in card_text(message)):
                return message
        return None

    return await sandbox.slack.wait_for(finished, timeout=10)


async def test_health_all_healthy(sandbox: Sandbox) -> None:
    delivery = await sandbox.driver.command("health", user_id=sandbox.users.operator, channel_id=OPS_CHANNEL)
    assert delivery.status == 200
    card = await final_card(sandbox)
    text = card_text(card)
    print(text)
    assert "API /health" in text
