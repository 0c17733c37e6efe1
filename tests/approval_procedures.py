"""Procedures defined for the tests of approvals, locks and leases.

A "deployment" here is an in-memory object whose revision is the plan's identity; the action
step records each execution, so a test counts side effects. When TEST_SIDE_EFFECT_FILE is set,
executions are also appended to that file, which lets tests count them across processes.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field

from bot.engine.approvals import ApprovalGate, Plan
from bot.engine.arguments import Argument, Option
from bot.engine.catalog import Command
from bot.engine.context import StepContext
from bot.engine.procedure import Procedure, Risk, Step, StepResult


@dataclass
class FakeDeployment:
    name: str
    revision: int = 7
    executions: list[str] = field(default_factory=list)
    hold: asyncio.Event | None = None  # while set and not released, the action step waits


DEPLOYMENTS: dict[str, FakeDeployment] = {}


def deployment(name: str) -> FakeDeployment:
    return DEPLOYMENTS.setdefault(name, FakeDeployment(name))


async def inspect(ctx: StepContext) -> StepResult:
    target = deployment(ctx.args["target"])
    return StepResult(summary=f"{target.name} is at revision {target.revision}", data={"revision": target.revision})


async def plan_change(ctx: StepContext) -> Plan:
    target = deployment(ctx.args["target"])
    return Plan(
        summary=f"Restart {target.name} at revision {target.revision}",
        targets=(f"deployment:{target.name}",),
        identity={"deployment": target.name, "revision": target.revision},
        preview=f"Pods of {target.name} are replaced one by one.\n<!channel> stays inert & escaped",
        facts={"revision": target.revision},
    )


async def act(ctx: StepContext) -> StepResult:
    target = deployment(ctx.args["target"])
    if ctx.args.get("sleep"):
        await asyncio.sleep(ctx.args["sleep"])
    if target.hold is not None:
        await target.hold.wait()
    target.executions.append(ctx.run.id)
    side_effect_file = os.environ.get("TEST_SIDE_EFFECT_FILE")
    if side_effect_file:
        with open(side_effect_file, "a", encoding="utf-8") as record:
            record.write(f"{ctx.run.id} {target.name} {os.getpid()}\n")
    assert ctx.plan is not None
    return StepResult(summary=f"restarted {target.name} (plan revision {ctx.plan.facts['revision']})")


def _procedure(name: str, risk: Risk) -> Procedure:
    return Procedure(
        name=name,
        title=f"Test {name}",
        summary=f"a {risk.value}-risk procedure defined by the tests",
        risk=risk,
        section="Tests",
        stages=(
            Step("inspect", "Inspect", inspect),
            ApprovalGate(plan=plan_change),
            Step("act", "Act", act),
        ),
    )


HIGH = _procedure("test-high", Risk.HIGH)
CRITICAL = _procedure("test-critical", Risk.CRITICAL)
ARGUMENTS = (Argument("TARGET", "text", "the deployment to act on"),)
OPTIONS = (Option("--sleep", "duration", "wait this long inside the action step"),)
COMMANDS = (
    Command(words=("test-high",), procedure=HIGH, arguments=ARGUMENTS, options=OPTIONS),
    Command(words=("test-critical",), procedure=CRITICAL, arguments=ARGUMENTS, options=OPTIONS),
)


def install(runtime) -> None:
    for command in COMMANDS:
        if command.words not in runtime.catalog.commands:
            runtime.catalog.add(command)
