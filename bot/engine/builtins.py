"""Commands the bot answers itself: active runs, cancelling a run, and the audit log."""

from __future__ import annotations

from bot.engine.arguments import Argument, Option
from bot.engine.catalog import Command

RUNS = Command(
    words=("runs",),
    builtin="runs",
    builtin_summary="List active runs and pending approvals",
    examples=("/meridian runs",),
)
CANCEL = Command(
    words=("cancel",),
    builtin="cancel",
    builtin_summary="Cancel a run (its requester or an admin); a running run stops before its next step",
    arguments=(Argument("RUN", "text", "the run id shown on its card, such as R1A2B3C4D"),),
    examples=("/meridian cancel R1A2B3C4D",),
)
AUDIT = Command(
    words=("audit",),
    builtin="audit",
    builtin_summary="Show the audit log, newest first",
    options=(
        Option("--limit", "count", "how many entries to show (default 20, at most 100)", default=20, metavar="N"),
        Option("--user", "text", "only entries by this Slack user id", metavar="U"),
        Option("--procedure", "text", "only entries of this procedure, such as rollback", metavar="P"),
    ),
    examples=("/meridian audit --limit 50", "/meridian audit --user U012ABC --procedure rollback"),
)

BUILTINS = (RUNS, CANCEL, AUDIT)
