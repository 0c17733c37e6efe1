"""Answers of the commands the bot handles itself: runs, cancel and audit."""

from __future__ import annotations

from bot.engine.catalog import Invocation
from bot.engine.decisions import Decision, decide
from bot.engine.policy import Role
from bot.engine.run import RunState
from bot.engine.runner import Engine
from bot.errors import Refused
from bot.slack.listings import render_audit, render_runs
from bot.slack.mrkdwn import escape

MAX_AUDIT_ENTRIES = 100


async def answer_builtin(engine: Engine, invocation: Invocation, *, user_id: str) -> str:
    """Return the ephemeral reply to a builtin command; raise a BotError to refuse it."""
    builtin = invocation.command.builtin
    args = invocation.args

    if builtin == "runs":
        await engine.policy.require(user_id, Role.VIEWER, action="list runs")
        return render_runs(await engine.store.list_runs(states=[RunState.WAITING, RunState.RUNNING]))

    if builtin == "audit":
        await engine.policy.require(user_id, Role.VIEWER, action="read the audit log")
        entries = await engine.store.list_audit(
            limit=min(args["limit"], MAX_AUDIT_ENTRIES), actor=args["user"], procedure=args["procedure"]
        )
        return render_audit(entries)

    if builtin == "cancel":
        run_id = args["run"].upper()
        if invocation.dry_run:
            run = await engine.store.get_run(run_id)
            if run is None:
                raise Refused(f"There is no run `{escape(run_id)}`.", hint="`/meridian runs` lists the active runs.")
            return f"Dry run: `{run.id}` ({escape(run.procedure)}, {run.state.value.replace('_', ' ')}) would be cancelled; nothing was changed."
        return escape(await decide(engine, run_id=run_id, user=user_id, decision=Decision.CANCEL, digest=None))

    raise ValueError(f"unknown builtin {builtin}")
