"""Approvals end to end: roles, self-approval, two approvers, expiry, changed plans, denials."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from bot.engine.runner import EngineTiming
from bot.sandbox.environment import INCIDENT_CHANNEL, Sandbox
from bot.sandbox.slack.records import Message
from bot.sandbox.text_render import message_text
from tests import approval_procedures
from tests.approval_procedures import DEPLOYMENTS, deployment


class ShiftedClock:
    """time.time() plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture
async def bot(state_url: str, clock: ShiftedClock) -> AsyncIterator[Sandbox]:
    DEPLOYMENTS.clear()
    sandbox = Sandbox(
        state_url=state_url,
        clock=clock,
        timing=EngineTiming(lease_seconds=2.0, tick_seconds=3600),
        on_bot_start=[approval_procedures.install],
        card_interval=0.05,
        settings_overrides={"approvers": ["U0APPROVER1", "U0APPROVER2", "S0APPROVERS"]},
    )
    async with sandbox:
        sandbox.slack.add_usergroup("S0APPROVERS", [])
        yield sandbox


def card(bot: Sandbox, run_id: str) -> Message:
    for message in reversed(bot.slack.messages):
        if message.thread_ts is None and not message.is_ephemeral and f"Run `{run_id}`" in message_text(message):
            return bot.slack.message(message.channel, message.ts)
    raise LookupError(f"no card for run {run_id}")


async def request(bot: Sandbox, text: str, *, user: str | None = None) -> str:
    outcome = await bot.command(text, user=user)
    runs = await bot.runtime.store.list_runs(limit=1)
    assert runs, f"no run started for {text!r}: {outcome.reply_text or [m.text for m in outcome.new_messages]}"
    return runs[0].id


async def press(bot: Sandbox, run_id: str, action: str, *, user: str) -> str:
    """Press a button on the run's card as `user`; return the ephemeral reply to them."""
    before = len(bot.slack.messages)
    await bot.driver.press(card(bot, run_id), user_id=user, action_id=f"run.{action}")
    await bot.runtime.engine.wait_idle()
    replies = [m for m in bot.slack.messages[before:] if m.is_ephemeral and m.visible_to == user]
    return replies[-1].text if replies else ""


async def state(bot: Sandbox, run_id: str) -> str:
    run = await bot.runtime.store.get_run(run_id)
    assert run is not None
    return run.state.value


async def audit_actions(bot: Sandbox, run_id: str) -> list[str]:
    entries = await bot.runtime.store.list_audit(run_id=run_id, limit=100)
    return [entry.action for entry in reversed(entries)]


async def test_high_run_waits_with_plan(bot: Sandbox) -> None:
    run_id = await request(bot, "test-high web")

    text = message_text(card(bot, run_id))
    assert await state(bot, run_id) == "waiting_for_approval"
    assert "*Plan:* Restart web at revision 7" in text
    assert "<!channel> stays inert & escaped" in text
    assert "plan digest `" in text
    assert "1 approval from APPROVERS" in text
    assert "expires " in text
    assert "[0: Approve]" in text and "[0: Deny]" in text and "[0: Cancel]" in text
    assert deployment("web").executions == []
    assert "&lt;!channel&gt;" in str(card(bot, run_id).blocks)


async def test_approver_runs_it_once(bot: Sandbox) -> None:
    run_id = await request(bot, "test-high web")

    reply = await press(bot, run_id, "approve", user=bot.users.approver)

    assert reply == f"Approved. Run `{run_id}` is starting."
    assert deployment("web").executions == [run_id]
    assert await state(bot, run_id) == "completed"
    text = message_text(card(bot, run_id))
    assert "✅ *Act* — restarted web (plan revision 7)" in text
    assert "Approved by @U0APPROVER1 (1 of 1)" in text
    assert "[0: Approve]" not in text
    assert await audit_actions(bot, run_id) == ["requested", "approval_requested", "approved", "started", "finished"]


async def test_self_approval_rejected(bot: Sandbox) -> None:
    run_id = await request(bot, "test-high web", user=bot.users.approver)  # approvers may request too

    reply = await press(bot, run_id, "approve", user=bot.users.approver)

    assert reply == "You requested this run, so you cannot approve it. Another approver must."
    assert deployment("web").executions == []
    assert await state(bot, run_id) == "waiting_for_approval"
    assert "approve_rejected" in await audit_actions(bot, run_id)


async def test_non_approver_rejected(bot: Sandbox) -> None:
    run_id = await request(bot, "test-high web")

    reply = await press(bot, run_id, "approve", user=bot.users.viewer)

    assert reply.startswith("You need the approver role to approve runs.")
    assert "APPROVERS" in reply
    assert deployment("web").executions == []
    assert await state(bot, run_id) == "waiting_for_approval"


async def test_critical_needs_two_distinct(bot: Sandbox) -> None:
    run_id = await request(bot, "test-critical db")

    first = await press(bot, run_id, "approve", user=bot.users.approver)
    again = await press(bot, run_id, "approve", user=bot.users.approver)

    assert first == f"Approved. Run `{run_id}` needs 1 more approval from another approver."
    assert again == f"You have already approved run `{run_id}`; each approver counts once."
    assert deployment("db").executions == []
    assert "Approved by @U0APPROVER1 (1 of 2)" in message_text(card(bot, run_id))

    last = await press(bot, run_id, "approve", user=bot.users.second_approver)

    assert last == f"Approved. Run `{run_id}` is starting."
    assert deployment("db").executions == [run_id]
    run = await bot.runtime.store.get_run(run_id)
    assert run is not None
    assert run.approvals == [bot.users.approver, bot.users.second_approver]


async def test_expired_approval_unusable(bot: Sandbox, clock: ShiftedClock) -> None:
    run_id = await request(bot, "test-high web")
    clock.offset = bot.settings.approval_ttl.total_seconds() + 1

    reply = await press(bot, run_id, "approve", user=bot.users.approver)

    assert reply.startswith(f"The approval request of run `{run_id}` has expired.")
    assert deployment("web").executions == []
    assert await state(bot, run_id) == "expired"
    text = message_text(card(bot, run_id))
    assert "expired: not approved within 15m" in text
    assert "[0: Approve]" not in text
    assert "expired" in await audit_actions(bot, run_id)


async def test_upkeep_expires_waiting_runs(bot: Sandbox, clock: ShiftedClock) -> None:
    run_id = await request(bot, "test-high web")
    clock.offset = bot.settings.approval_ttl.total_seconds() + 1

    await bot.runtime.upkeep.tick()

    assert await state(bot, run_id) == "expired"
    assert "[0: Approve]" not in message_text(card(bot, run_id))
    locks_free = await request(bot, "test-high web")
    assert await state(bot, locks_free) == "waiting_for_approval"


async def test_changed_plan_voids_approval(bot: Sandbox) -> None:
    run_id = await request(bot, "test-critical db")
    await press(bot, run_id, "approve", user=bot.users.approver)
    deployment("db").revision = 8  # someone deployed meanwhile

    reply = await press(bot, run_id, "approve", user=bot.users.second_approver)

    assert reply.startswith("The plan changed since it was requested, so its approvals are void")
    assert deployment("db").executions == []
    assert await state(bot, run_id) == "voided"
    assert "void: the plan changed after it was requested" in message_text(card(bot, run_id))
    assert "voided" in await audit_actions(bot, run_id)


async def test_stale_button_rejected(bot: Sandbox) -> None:
    run_id = await request(bot, "test-high web")
    message = card(bot, run_id)
    blocks = [dict(block) for block in message.blocks]
    for block in blocks:
        for element in block.get("elements", []):
            if element.get("action_id") == "run.approve":
                element["value"] = f"{run_id}:{'0' * 64}"
    stale = Message(**{**message.__dict__, "blocks": tuple(blocks)})

    await bot.driver.press(stale, user_id=bot.users.approver, action_id="run.approve")
    await bot.runtime.engine.wait_idle()

    assert deployment("web").executions == []
    assert await state(bot, run_id) == "waiting_for_approval"


async def test_denial_ends_run(bot: Sandbox) -> None:
    run_id = await request(bot, "test-high web")
    card_before_denial = card(bot, run_id)

    reply = await press(bot, run_id, "deny", user=bot.users.approver)

    assert reply == f"Denied. Run `{run_id}` has ended."
    assert await state(bot, run_id) == "denied"
    assert "Denied by @U0APPROVER1" in message_text(card(bot, run_id))
    await bot.driver.press(card_before_denial, user_id=bot.users.second_approver, action_id="run.approve")
    await bot.runtime.engine.wait_idle()
    late = [m.text for m in bot.slack.messages if m.visible_to == bot.users.second_approver][-1]
    assert late == f"Run `{run_id}` is denied, so there is nothing to approve."
    assert deployment("web").executions == []


async def test_requester_cancels(bot: Sandbox) -> None:
    run_id = await request(bot, "test-high web")

    reply = await press(bot, run_id, "cancel", user=bot.users.operator)

    assert reply == f"Cancelled run `{run_id}`."
    assert await state(bot, run_id) == "cancelled"
    assert "Cancelled by @U0OPERATOR" in message_text(card(bot, run_id))


async def test_other_user_cannot_cancel(bot: Sandbox) -> None:
    run_id = await request(bot, "test-high web")

    reply = await press(bot, run_id, "cancel", user=bot.users.approver)

    assert reply.startswith(f"Only the requester or an admin can cancel run `{run_id}`.")
    assert await state(bot, run_id) == "waiting_for_approval"


async def test_admin_cancels_by_command(bot: Sandbox) -> None:
    run_id = await request(bot, "test-high web")

    outcome = await bot.command(f"cancel {run_id.lower()}", user=bot.users.admin)

    notes = [m.text for m in outcome.new_messages if m.is_ephemeral]
    assert notes == [f"Cancelled run `{run_id}`."]
    assert await state(bot, run_id) == "cancelled"


async def test_double_click_runs_once(bot: Sandbox) -> None:
    run_id = await request(bot, "test-high web")
    message = card(bot, run_id)

    await asyncio.gather(
        *(bot.driver.press(message, user_id=bot.users.approver, action_id="run.approve") for _ in range(5))
    )
    await bot.runtime.engine.wait_idle()

    assert deployment("web").executions == [run_id]


async def test_simultaneous_approvers_run_once(bot: Sandbox) -> None:
    run_id = await request(bot, "test-high web")
    message = card(bot, run_id)

    await asyncio.gather(
        bot.driver.press(message, user_id=bot.users.approver, action_id="run.approve"),
        bot.driver.press(message, user_id=bot.users.second_approver, action_id="run.approve"),
    )
    await bot.runtime.engine.wait_idle()

    assert deployment("web").executions == [run_id]
    assert await state(bot, run_id) == "completed"


async def test_target_locked_for_second_run(bot: Sandbox) -> None:
    first = await request(bot, "test-high web")

    second_outcome = await bot.command("test-high web")
    runs = await bot.runtime.store.list_runs(limit=1)
    second = runs[0]

    assert second.id != first
    assert second.state.value == "failed"
    assert f"Run {first} holds deployment:web." in message_text(second_outcome.card)
    other_target = await request(bot, "test-high api")
    assert await state(bot, other_target) == "waiting_for_approval"


async def test_viewer_cannot_request(bot: Sandbox) -> None:
    outcome = await bot.command("test-high web", user=bot.users.viewer)

    notes = [m.text for m in outcome.new_messages if m.is_ephemeral]
    assert notes == ["You need the operator role to run `test-high`. An admin can add you, or a user group you are in, to OPERATORS."]
    assert await bot.runtime.store.list_runs() == []


async def test_dry_run_changes_nothing(bot: Sandbox) -> None:
    outcome = await bot.command("test-high web --dry-run")

    text = outcome.card_text
    assert "Dry run" in text
    assert "*Plan:* Restart web at revision 7" in text
    assert "dry run: would need 1 approval" in text
    assert "[0: Approve]" not in text
    assert deployment("web").executions == []
    locks_free = await request(bot, "test-high web")
    assert await state(bot, locks_free) == "waiting_for_approval"


async def test_incident_channel_follows_run(bot: Sandbox) -> None:
    run_id = await request(bot, "test-high web")
    await press(bot, run_id, "approve", user=bot.users.approver)

    posts = [m.text for m in bot.slack.messages_in(INCIDENT_CHANNEL) if run_id in m.text]
    assert len(posts) == 3
    assert posts[0].startswith(f":raised_hand: Test test-high `{run_id}` requested by <@U0OPERATOR>: Restart web at revision 7.")
    assert posts[1].startswith(f":white_check_mark: Test test-high `{run_id}` approved by <@U0APPROVER1>")
    assert posts[2].startswith(f":white_check_mark: Test test-high `{run_id}` finished.")
    assert all("|Open the run card>" in post for post in posts)


async def test_runs_and_audit_commands(bot: Sandbox) -> None:
    run_id = await request(bot, "test-high web")

    runs = await bot.command("runs", user=bot.users.viewer)
    audit = await bot.command("audit --procedure test-high --limit 5", user=bot.users.viewer)
    empty = await bot.command("audit --user U0NOBODY", user=bot.users.viewer)

    runs_text = [m.text for m in runs.new_messages if m.is_ephemeral][0]
    assert "*Waiting for approval (1)*" in runs_text
    assert f"`{run_id}` Restart web at revision 7: requested by <@U0OPERATOR>, 0 of 1 approvals" in runs_text
    audit_text = [m.text for m in audit.new_messages if m.is_ephemeral][0]
    assert "approval_requested" in audit_text
    assert "requested" in audit_text
    assert [m.text for m in empty.new_messages if m.is_ephemeral] == ["The audit log has no matching entries."]


async def test_usergroup_grants_approver(bot: Sandbox) -> None:
    bot.slack.add_user("U0GROUPIE", "groupie")
    bot.slack.add_usergroup("S0APPROVERS", ["U0GROUPIE"])  # before anyone's role was checked
    first = await request(bot, "test-high web")
    second = await request(bot, "test-high api")

    replies = [await press(bot, run_id, "approve", user="U0GROUPIE") for run_id in (first, second)]

    assert replies == [f"Approved. Run `{first}` is starting.", f"Approved. Run `{second}` is starting."]
    assert len(bot.slack.calls_to("usergroups.users.list")) == 1, "group members are cached"
    outsider = await request(bot, "test-high db")
    refused = await press(bot, outsider, "approve", user=bot.users.viewer)
    assert refused.startswith("You need the approver role")
