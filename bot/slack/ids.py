"""Action ids of the bot's buttons, in one place."""

from __future__ import annotations

from enum import StrEnum


class RunAction(StrEnum):
    APPROVE = "run.approve"
    DENY = "run.deny"
    CANCEL = "run.cancel"


def decision_value(run_id: str, digest: str) -> str:
    """A button's value: the run and the plan digest the card showed when it was clicked."""
    return f"{run_id}:{digest}"


def parse_decision_value(value: str) -> tuple[str, str | None]:
    run_id, _, digest = value.partition(":")
    return run_id, digest or None
