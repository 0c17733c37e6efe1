"""Buttons on a finished run card for the resolutions its findings offer."""

from __future__ import annotations

import re
from typing import Any

from bot.engine.resolutions import offered_resolutions
from bot.engine.run import Run
from bot.slack import limits
from bot.slack.mrkdwn import truncate

ACTION_PREFIX = "run.resolution."
ACTION_PATTERN = re.compile(r"^run\.resolution\.\d+$")


def resolution_blocks(run: Run) -> list[dict[str, Any]]:
    """One actions block with a button per offered resolution, or nothing when the run offers none."""
    offers = offered_resolutions(run)
    if not offers:
        return []
    buttons = [
        {
            "type": "button",
            "action_id": f"{ACTION_PREFIX}{index}",
            "text": {"type": "plain_text", "text": truncate(offer.label, limits.BUTTON_TEXT)},
            "value": resolution_value(run.id, index),
        }
        for index, offer in enumerate(offers)
    ]
    return [{"type": "actions", "block_id": f"resolutions:{run.id}", "elements": buttons}]


def resolution_value(run_id: str, index: int) -> str:
    return f"{run_id}:{index}"


def parse_resolution_value(value: str) -> tuple[str, int] | None:
    run_id, _, index = value.partition(":")
    if not run_id or not index.isdigit():
        return None
    return run_id, int(index)
