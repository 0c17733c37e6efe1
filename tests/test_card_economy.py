"""Slack economy: card updates are coalesced, and chat.update shares one budget per workspace."""

from __future__ import annotations

import asyncio

from bot.engine.catalog import Command
from bot.engine.context import StepContext
from bot.engine.procedure import Procedure, Risk, Step, StepResult
from bot.sandbox.environment import Sandbox
from bot.slack.budget import UpdateBudget


async def chatty(ctx: StepContext) -> StepResult:
    for number in range(200):
        await ctx.progress(f"{number} of 200 pods ready")
        await asyncio.sleep(0.005)
    return StepResult(summary="all 200 pods ready")


async def test_progress_updates_coalesced(no_database_sandbox: Sandbox) -> None:
    procedure = Procedure(
        name="chatty", title="Chatty", summary="reports progress often", risk=Risk.READ,
        stages=(Step("roll", "Roll", chatty),), section="Tests",
    )
    no_database_sandbox.runtime.catalog.add(Command(words=("chatty",), procedure=procedure))

    outcome = await no_database_sandbox.command("chatty")

    updates = no_database_sandbox.slack.calls_to("chat.update")
    # About 1.5 s of progress at one update a second per card, plus the final state.
    assert 1 <= len(updates) <= 4, [call.params.get("text") for call in updates]
    assert "all 200 pods ready" in outcome.card_text
    gaps = [later.at - earlier.at for earlier, later in zip(updates, updates[1:], strict=False)]
    assert all(gap >= 0.9 for gap in gaps), gaps


async def test_budget_caps_per_minute() -> None:
    now = [0.0]
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    budget = UpdateBudget(3, clock=lambda: now[0], sleep=fake_sleep)

    for _ in range(3):
        await budget.acquire()
    assert slept == []

    now[0] = 20.0
    await budget.acquire()

    assert slept == [40.0], "the fourth update waits until the first leaves the 60 s window"
