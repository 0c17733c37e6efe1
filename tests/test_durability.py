"""Restarts: pending approvals survive, a run cut off mid-step is interrupted and never re-run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.engine.runner import EngineTiming
from bot.sandbox.environment import INCIDENT_CHANNEL, Sandbox
from bot.sandbox.text_render import message_text
from tests import approval_procedures
from tests.approval_procedures import DEPLOYMENTS, deployment
from tests.test_approvals import audit_actions, card, press, request, state


@pytest.fixture
async def bot(state_url: str) -> AsyncIterator[Sandbox]:
    DEPLOYMENTS.clear()
    sandbox = Sandbox(
        state_url=state_url,
        timing=EngineTiming(lease_seconds=0.6, tick_seconds=0.2),
        on_bot_start=[approval_procedures.install],
        card_interval=0.05,
    )
    async with sandbox:
        yield sandbox


async def test_pending_approval_survives_restart(bot: Sandbox) -> None:
    run_id = await request(bot, "test-high web")

    await bot.restart_bot()
    reply = await press(bot, run_id, "approve", user=bot.users.approver)

    assert reply == f"Approved. Run `{run_id}` is starting."
    assert deployment("web").executions == [run_id]
    assert await state(bot, run_id) == "completed"


async def test_crash_mid_step_interrupts(bot: Sandbox) -> None:
    target = deployment("web")
    target.hold = asyncio.Event()  # the action step blocks until the "crash"
    run_id = await request(bot, "test-high web")
    await bot.driver.press(card(bot, run_id), user_id=bot.users.approver, action_id="run.approve")
    await bot.slack.wait_for(lambda fake: "⏳ *Act*" in message_text(card(bot, run_id)), timeout=5)

    await bot.restart_bot(crash=True)
    await bot.slack.wait_for(
        lambda fake: any(run_id in m.text and "interrupted" in m.text for m in fake.messages_in(INCIDENT_CHANNEL)),
        timeout=10,
    )

    target.hold.set()
    await asyncio.sleep(0.3)  # a re-run, if any, would now finish: there must be none
    assert target.executions == []
    assert await state(bot, run_id) == "interrupted"
    text = message_text(card(bot, run_id))
    assert "❌ *Act* — interrupted: the bot stopped while this step ran; it was not run again" in text
    assert (await audit_actions(bot, run_id)).count("interrupted") == 1
    posts = [m.text for m in bot.slack.messages_in(INCIDENT_CHANNEL) if run_id in m.text and "interrupted" in m.text]
    assert len(posts) == 1
    relocked = await request(bot, "test-high web")
    assert await state(bot, relocked) == "waiting_for_approval", "the interrupted run released its lock"


async def test_read_run_interrupted_too(bot: Sandbox) -> None:
    async def stuck(ctx):
        await asyncio.Event().wait()

    from bot.engine.catalog import Command
    from bot.engine.procedure import Procedure, Risk, Step

    procedure = Procedure(name="stuck", title="Stuck", summary="never ends", risk=Risk.READ, stages=(Step("wait", "Wait", stuck),), section="Tests")

    def install_stuck(runtime) -> None:
        if ("stuck",) not in runtime.catalog.commands:
            runtime.catalog.add(Command(words=("stuck",), procedure=procedure))

    bot.on_bot_start.append(install_stuck)
    install_stuck(bot.runtime)
    await bot.driver.command("stuck", user_id=bot.users.operator, channel_id="C0OPS")
    await bot.slack.wait_for(lambda fake: any("⏳ *Wait*" in message_text(m) for m in fake.messages_in("C0OPS")), timeout=5)
    run_id = (await bot.runtime.store.list_runs(limit=1))[0].id

    await bot.restart_bot(crash=True)
    await bot.slack.wait_for(lambda fake: "Interrupted" in message_text(card(bot, run_id)), timeout=10)

    await bot.slack.wait_for(lambda fake: any(run_id in m.text for m in fake.messages_in(INCIDENT_CHANNEL)), timeout=5)
    assert await state(bot, run_id) == "interrupted"
    assert len([m for m in bot.slack.messages_in(INCIDENT_CHANNEL) if run_id in m.text]) == 1


async def test_socket_redelivered_click_once(state_url: str) -> None:
    DEPLOYMENTS.clear()
    sandbox = Sandbox(state_url=state_url, via="socket", on_bot_start=[approval_procedures.install], card_interval=0.05)
    async with sandbox:
        run_id = await request(sandbox, "test-high web")
        click = await sandbox.driver.press(card(sandbox, run_id), user_id=sandbox.users.approver, action_id="run.approve")
        again = await sandbox.driver.redeliver(click)
        await sandbox.runtime.engine.wait_idle()

        assert again.acknowledged
        assert deployment("web").executions == [run_id]
        assert await state(sandbox, run_id) == "completed"
