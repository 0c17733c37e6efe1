"""The engine through the real app: step outcomes, failures, error ids and what is stored."""

from __future__ import annotations

import logging

import pytest

from bot.engine.catalog import Command
from bot.engine.context import StepContext
from bot.engine.procedure import Level, Procedure, Risk, Step, StepResult
from bot.errors import TargetUnavailable
from bot.sandbox.environment import Sandbox

CALLS: list[str] = []


async def first(ctx: StepContext) -> StepResult:
    CALLS.append("first")
    await ctx.progress("halfway")
    return StepResult(summary="first done", detail="line 1\nline 2 <!channel>", detail_title="First output")


async def failing(ctx: StepContext) -> StepResult:
    CALLS.append("failing")
    raise TargetUnavailable("meridian-api", "The API refused the connection.", hint="Check the pods.")


async def crashing(ctx: StepContext) -> StepResult:
    CALLS.append("crashing")
    raise RuntimeError("secret internals: password=hunter2")


async def last(ctx: StepContext) -> StepResult:
    CALLS.append("last")
    return StepResult(summary="never", level=Level.OK)


def add_procedure(sandbox: Sandbox, name: str, *steps: Step) -> None:
    procedure = Procedure(
        name=name,
        title=f"Test {name}",
        summary="a procedure defined by a test",
        risk=Risk.READ,
        stages=steps,
        section="Tests",
    )
    sandbox.runtime.catalog.add(Command(words=(name,), procedure=procedure))


@pytest.fixture(autouse=True)
def clear_calls() -> None:
    CALLS.clear()


async def test_failed_step_skips_rest(no_database_sandbox: Sandbox) -> None:
    add_procedure(no_database_sandbox, "fail", Step("first", "First", first), Step("failing", "Failing", failing), Step("last", "Last", last))

    outcome = await no_database_sandbox.command("fail")

    assert CALLS == ["first", "failing"]
    text = outcome.card_text
    assert "✅ *First* — first done" in text
    assert "❌ *Failing* — The API refused the connection. Check the pods." in text
    assert "⏩ *Last* — skipped because an earlier step failed" in text
    assert "*Failed* in" in text
    run = (await no_database_sandbox.runtime.store.list_runs())[0]
    assert run.state.value == "failed"
    assert [step.state.value for step in run.steps] == ["done", "failed", "skipped"]


async def test_step_detail_goes_to_thread(no_database_sandbox: Sandbox) -> None:
    add_procedure(no_database_sandbox, "detail", Step("first", "First", first))

    outcome = await no_database_sandbox.command("detail")

    replies = no_database_sandbox.slack.thread(outcome.card.channel, outcome.card.ts)
    texts = [reply.text for reply in replies if reply.ts != outcome.card.ts]
    assert len(texts) == 1
    assert texts[0].startswith("*First output*\n```line 1\nline 2 &lt;!channel&gt;```")


async def test_unexpected_error_gets_id(no_database_sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    add_procedure(no_database_sandbox, "crash", Step("crashing", "Crashing", crashing))

    with caplog.at_level(logging.ERROR):
        outcome = await no_database_sandbox.command("crash")

    run = (await no_database_sandbox.runtime.store.list_runs())[0]
    error_id = run.steps[0].error_id
    assert error_id
    assert f"unexpected error (error id {error_id})" in outcome.card_text
    assert "hunter2" not in outcome.card_text
    assert any(error_id in record.getMessage() and record.exc_info for record in caplog.records)


async def test_long_detail_attached_as_file(no_database_sandbox: Sandbox) -> None:
    long_text = "\n".join(f"log line {number} <@U1>" for number in range(2000))

    async def noisy(ctx: StepContext) -> StepResult:
        return StepResult(summary="lots of output", detail=long_text, detail_title="Logs")

    add_procedure(no_database_sandbox, "noisy", Step("noisy", "Noisy", noisy))

    outcome = await no_database_sandbox.command("noisy")

    replies = [reply for reply in no_database_sandbox.slack.thread(outcome.card.channel, outcome.card.ts) if reply.ts != outcome.card.ts]
    assert "cut short: the whole text is in the attached file" in replies[0].text
    assert len(replies[0].text) < 4000
    files = no_database_sandbox.slack.files
    assert len(files) == 1
    assert files[0].text == long_text
    assert files[0].thread_ts == outcome.card.ts


async def test_many_steps_fit_block_limits(no_database_sandbox: Sandbox) -> None:
    async def wordy(ctx: StepContext) -> StepResult:
        return StepResult(summary="x" * 2500)

    steps = tuple(Step(f"s{number}", f"Step {number}", wordy) for number in range(60))
    add_procedure(no_database_sandbox, "wordy", *steps)

    outcome = await no_database_sandbox.command("wordy")

    assert not [call for call in no_database_sandbox.slack.calls if not call.ok], "Slack accepted every call"
    assert "Some steps are not shown" in outcome.card_text
    assert "*Completed* in" in outcome.card_text
