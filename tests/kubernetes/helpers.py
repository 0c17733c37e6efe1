"""Helpers for driving the Kubernetes commands through the sandbox and reading what the bot posted."""

from __future__ import annotations

from bot.sandbox.environment import CommandOutcome, Sandbox
from bot.sandbox.slack.records import Message
from bot.sandbox.text_render import message_text


def plain(text: str) -> str:
    return text.replace("*", "")


def current_card(sandbox: Sandbox, outcome: CommandOutcome) -> Message:
    return sandbox.slack.message(outcome.card.channel, outcome.card.ts)


def card_text(sandbox: Sandbox, outcome: CommandOutcome) -> str:
    return plain(message_text(current_card(sandbox, outcome)))


def thread_text(sandbox: Sandbox, outcome: CommandOutcome) -> str:
    replies = sandbox.slack.thread(outcome.card.channel, outcome.card.ts)
    return "\n".join(message_text(reply) for reply in replies if reply.ts != outcome.card.ts)


async def press(sandbox: Sandbox, outcome: CommandOutcome, *, user: str, action: str = "approve") -> str:
    """Press a button of the run's card as `user`; return the ephemeral reply to them."""
    before = len(sandbox.slack.messages)
    await sandbox.driver.press(current_card(sandbox, outcome), user_id=user, action_id=f"run.{action}")
    await sandbox.runtime.engine.wait_idle()
    replies = [m for m in sandbox.slack.messages[before:] if m.is_ephemeral and m.visible_to == user]
    return replies[-1].text if replies else ""


async def approve(sandbox: Sandbox, outcome: CommandOutcome) -> str:
    return await press(sandbox, outcome, user=sandbox.users.approver)


async def run_state(sandbox: Sandbox) -> str:
    runs = await sandbox.runtime.store.list_runs(limit=1)
    assert runs, "no run was started"
    return runs[0].state.value
