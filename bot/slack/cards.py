"""Run cards: one Slack message per run, a checklist of its steps, updated in place."""

from __future__ import annotations

from typing import Any

from bot.durations import format_duration
from bot.engine.procedure import Level, Procedure
from bot.engine.run import Run, RunState, StepRecord, StepState, utcnow
from bot.slack import limits
from bot.slack.mrkdwn import escape, mention, truncate

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

    for chunk in _chunks([step_line(record) for record in run.steps]):
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": chunk}})

    status = run_status_line(run)
    if run.error:
        status += "\n" + escape(truncate(run.error, 500))
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": status}]})

    text = f"{procedure.title} ({run.id}): {_STATE_LABELS[run.state]}"
    return text, _fit(blocks)


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


def _fit(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop middle sections when a card exceeds the block count or total size, saying so."""
    def size(items: list[dict[str, Any]]) -> int:
        return sum(len(str(item)) for item in items)

    if len(blocks) <= limits.MAX_BLOCKS and size(blocks) <= limits.TOTAL_BLOCK_TEXT:
        return blocks
    head, body, tail = blocks[:2], blocks[2:-1], blocks[-1:]
    notice = {"type": "context", "elements": [{"type": "mrkdwn", "text": "Some steps are not shown: the card is too long for Slack."}]}
    while body and (len(head) + len(body) + 2 > limits.MAX_BLOCKS or size(head + body + [notice] + tail) > limits.TOTAL_BLOCK_TEXT):
        body.pop()
    return head + body + [notice] + tail
