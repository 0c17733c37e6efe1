"""Ephemeral answers of `/meridian runs` and `/meridian audit`."""

from __future__ import annotations

from collections.abc import Sequence

from bot.engine.audit import AuditEntry
from bot.engine.run import Run, RunState
from bot.slack.mrkdwn import code, escape, mention


def render_runs(runs: Sequence[Run]) -> str:
    if not runs:
        return "No run is active and no approval is pending."
    waiting = [run for run in runs if run.state is RunState.WAITING]
    running = [run for run in runs if run.state is RunState.RUNNING]
    lines: list[str] = []
    if waiting:
        lines.append(f"*Waiting for approval ({len(waiting)})*")
        for run in waiting:
            needed = run.risk.approvals_needed
            expiry = f", expires {run.expires_at.strftime('%H:%M UTC')}" if run.expires_at else ""
            summary = escape(run.plan["summary"]) if run.plan else run.procedure
            lines.append(
                f"• {code(run.id)} {summary}: requested by {mention(run.requester)}, "
                f"{len(run.approvals)} of {needed} approvals{expiry}"
            )
    if running:
        lines.append(f"*Running ({len(running)})*")
        for run in running:
            current = next((step.title for step in run.steps if step.state.value == "running"), "between steps")
            lines.append(f"• {code(run.id)} {escape(run.procedure)} by {mention(run.requester)}: {escape(current)}")
    return "\n".join(lines)


def render_audit(entries: Sequence[AuditEntry]) -> str:
    if not entries:
        return "The audit log has no matching entries."
    lines = [f"*Audit log* (newest first, {len(entries)} entries)"]
    for entry in entries:
        when = entry.at.strftime("%Y-%m-%d %H:%M:%S UTC")
        parts = [when, mention(entry.actor) if entry.actor.startswith(("U", "W")) else escape(entry.actor), escape(entry.action)]
        if entry.procedure:
            parts.append(escape(entry.procedure))
        if entry.run_id:
            parts.append(code(entry.run_id))
        if entry.outcome:
            parts.append(escape(entry.outcome))
        lines.append("• " + " · ".join(parts))
    return "\n".join(lines)
