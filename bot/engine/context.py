"""The context a step runs in: its run, the parsed arguments, the targets and progress reports."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.engine.approvals import Plan
from bot.engine.run import Run, StepRecord

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.engine.policy import Policy
    from bot.targets import Targets


class StepSkipped(Exception):
    """Raised by a step that has nothing to do (already paused, no recent rollout)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotConfigured(StepSkipped):
    """Raised by a step whose target is not configured.

    A read-only run shows the step as skipped; a run that was meant to change something fails,
    so a run that did nothing is never reported as finished.
    """


@dataclass
class StepContext:
    run: Run
    step: StepRecord
    args: Mapping[str, Any]
    targets: Targets
    settings: Settings
    log: logging.LoggerAdapter[logging.Logger]
    results: Mapping[str, Mapping[str, Any]]  # each earlier step's StepResult.data, by step name
    report_progress: Callable[[str], Awaitable[None]]
    plan: Plan | None = None  # the approved plan, for the steps after an approval gate
    policy: Policy | None = None  # roles, for steps whose rule depends on who requested the run

    async def progress(self, summary: str) -> None:
        """Show `summary` on the running step in the run card (updates are coalesced)."""
        await self.report_progress(summary)
