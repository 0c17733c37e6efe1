"""Run cards: one Slack message per run, a checklist of its steps, updated in place."""

from __future__ import annotations

from typing import Any

from bot.durations import format_duration
from bot.engine.procedure import Level, Procedure
from bot.engine.run import Run, RunState, StepRecord, StepState, utcnow
from bot.slack import limits
from bot.slack.ids import RunAction, decision_value
from bot.slack.resolutions import resolution_blocks
from bot.slack.mrkdwn import code, code_block, escape, mention, truncate

_STEP_ICONS = {
    StepState.PENDING: ":white_circle:",
    StepState.RUNNING: ":hourglass_flowing_sand:",
    StepState.FAILED: ":x:",
    StepState.SKIPPED: ":fast_forward:",
    StepState.WAITING: ":raised_hand:",
}
_LEVEL_ICONS = {
    Level.OK: ":white_check_mark:",
    Level.INFO: ":information_source:",
    Level.WARNING: ":warning:",
    Level.CRITICAL: ":red_circle:",
}
_STATE_LABELS = {
    RunState.RUNNING: "running",
    RunState.WAITING: "waiting for approval",
    RunState.COMPLETED: "completed",
    RunState.FAILED: "failed",
    RunState.CANCELLED: "cancelled",
    RunState.DENIED: "denied",
    RunState.EXPIRED: "expired",
    RunState.INTERRUPTED: "interrupted",
    RunState.VOIDED: "void (the plan changed)",
}


def step_icon(record: StepRecord) -> str:
    if record.state is StepState.DONE:
        return _LEVEL_ICONS[record.level or Level.OK]
    return _STEP_ICONS[record.state]


def step_line(record: StepRecord) -> str:
    line = f"{step_icon(record)} *{escape(record.title)}*"
    if record.summary:
        line += " — " + escape(record.summary)
    elif record.state is StepState.RUNNING:
        line += " — running…"
    if record.seconds is not None:
        line += f"  _({_elapsed(record.seconds)})_"
    return line


def _elapsed(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    from datetime import timedelta

    return format_duration(timedelta(seconds=seconds))


def run_status_line(run: Run) -> str:
    label = _STATE_LABELS[run.state]
    if run.dry_run:
        return "Dry run: this is the plan; nothing was run or changed."
    end = run.finished_at or utcnow()
    took = _elapsed((end - run.created_at).total_seconds())
    if not run.state.is_final:
        return f"*{label.capitalize()}* · {took} so far"
    critical = sum(record.level is Level.CRITICAL for record in run.steps)
    warnings = sum(record.level is Level.WARNING for record in run.steps)
    findings = []
    if critical:
        findings.append(f"{critical} critical")
    if warnings:
        findings.append(f"{warnings} warning{'s' if warnings > 1 else ''}")
    suffix = f" · {', '.join(findings)}" if findings else ""
    return f"*{label.capitalize()}* in {took}{suffix}"


def render_card(run: Run, procedure: Procedure, *, command_text: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """Return the fallback text and the blocks of a run card, within Block Kit's limits."""
    header = truncate(procedure.title, limits.HEADER_TEXT)
    context = f"Run `{run.id}` · requested by {mention(run.requester)} · risk {run.risk.value}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
    ]

    steps = [
        {"type": "section", "text": {"type": "mrkdwn", "text": chunk}}
        for chunk in _chunks([step_line(record) for record in run.steps])
    ]

    tail = plan_blocks(run) if run.plan is not None else []
    status = run_status_line(run)
    if run.error:
        status += "\n" + escape(truncate(run.error, 500))
    tail.append({"type": "context", "elements": [{"type": "mrkdwn", "text": status}]})

    text = f"{procedure.title} ({run.id}): {_STATE_LABELS[run.state]}"
    fitted = _fit(blocks, steps, tail)
    if run.state is RunState.WAITING and run.plan is not None:
        fitted.append(decision_buttons(run))
    fitted.extend(resolution_blocks(run))
    return text, fitted


def plan_blocks(run: Run) -> list[dict[str, Any]]:
    """The plan approvers decide on: summary, preview, targets, digest, approvals so far."""
    assert run.plan is not None
    needed = run.risk.approvals_needed
    preview = truncate(run.plan["preview"], limits.DETAIL_TEXT, notice="\n… (preview cut short)")
    facts = [
        "Targets: " + ", ".join(code(target) for target in run.plan["targets"]),
        f"plan digest {code(run.plan['digest'][:16])}",
        f"risk {run.risk.value}: {needed} approval{'s' if needed > 1 else ''} from APPROVERS, never the requester",
    ]
    decisions = []
    if run.approvals:
        decisions.append(f"Approved by {', '.join(mention(user) for user in run.approvals)} ({len(run.approvals)} of {needed})")
    if run.decided_by and run.state in (RunState.DENIED, RunState.CANCELLED):
        decisions.append(f"{'Denied' if run.state is RunState.DENIED else 'Cancelled'} by {mention(run.decided_by)}")
    if run.state is RunState.WAITING and run.expires_at is not None:
        decisions.append(f"expires {run.expires_at.strftime('%H:%M UTC')}")

    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Plan:* {escape(run.plan['summary'])}\n{code_block(preview)}"}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(facts)}]},
    ]
    if decisions:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(decisions)}]})
    return blocks


def decision_buttons(run: Run) -> dict[str, Any]:
    assert run.plan is not None
    value = decision_value(run.id, run.plan["digest"])
    return {
        "type": "actions",
        "block_id": f"decision:{run.id}",
        "elements": [
            {"type": "button", "action_id": RunAction.APPROVE, "text": {"type": "plain_text", "text": "Approve"}, "style": "primary", "value": value},
            {"type": "button", "action_id": RunAction.DENY, "text": {"type": "plain_text", "text": "Deny"}, "style": "danger", "value": value},
            {"type": "button", "action_id": RunAction.CANCEL, "text": {"type": "plain_text", "text": "Cancel"}, "value": value},
        ],
    }


def _chunks(lines: list[str]) -> list[str]:
    chunks: list[str] = []
    current = ""
    for line in lines:
        line = truncate(line, limits.SECTION_TEXT)
        if current and len(current) + 1 + len(line) > limits.SECTION_TEXT:
            chunks.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        chunks.append(current)
    return chunks


def _fit(head: list[dict[str, Any]], steps: list[dict[str, Any]], tail: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop the last step sections when a card exceeds the block count or total size, saying so.

    The plan and the status are never dropped: approvers must see what they approve.
    """
    def size(items: list[dict[str, Any]]) -> int:
        return sum(len(str(item)) for item in items)

    # One block stays free for the decision buttons.
    room = limits.MAX_BLOCKS - 1
    if len(head) + len(steps) + len(tail) <= room and size(head + steps + tail) <= limits.TOTAL_BLOCK_TEXT:
        return head + steps + tail
    notice = {"type": "context", "elements": [{"type": "mrkdwn", "text": "Some steps are not shown: the card is too long for Slack."}]}
    kept = list(steps)
    while kept and (len(head) + len(kept) + 1 + len(tail) > room or size(head + kept + [notice] + tail) > limits.TOTAL_BLOCK_TEXT):
        kept.pop()
    return head + kept + [notice] + tail
