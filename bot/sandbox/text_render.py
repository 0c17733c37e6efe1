"""Slack messages rendered as terminal text: sections, fields, context and numbered buttons."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

EMOJI = {
    ":white_check_mark:": "✅",
    ":hourglass_flowing_sand:": "⏳",
    ":x:": "❌",
    ":fast_forward:": "⏩",
    ":raised_hand:": "✋",
    ":white_circle:": "⚪",
    ":red_circle:": "🔴",
    ":warning:": "⚠️",
    ":information_source:": "ℹ️",
    ":lock:": "🔒",
    ":rotating_light:": "🚨",
}
_EMOJI_PATTERN = re.compile("|".join(re.escape(code) for code in EMOJI))
_MENTION = re.compile(r"<([@#!])([^>|]+)(?:\|([^>]+))?>")
_LINK = re.compile(r"<(https?://[^>|]+)\|([^>]+)>")

ButtonNumber = Callable[[str, str], int]


def mrkdwn_to_text(text: str) -> str:
    """Show mrkdwn as a reader of Slack would see it: tokens as @name and #channel, entities decoded."""
    text = _LINK.sub(lambda match: f"{match.group(2)} ({match.group(1)})", text)
    text = _MENTION.sub(lambda match: _token(match.group(1), match.group(2), match.group(3)), text)
    text = _EMOJI_PATTERN.sub(lambda match: EMOJI[match.group(0)], text)
    return html.unescape(text)


def _token(sigil: str, value: str, label: str | None) -> str:
    if sigil == "@":
        return f"@{label or value}"
    if sigil == "#":
        return f"#{label or value}"
    return f"@{value.split('^')[-1]}"


def render_blocks(blocks: list[dict[str, Any]], *, number_for: ButtonNumber) -> list[str]:
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            lines.append(f"== {block['text']['text']} ==")
        elif kind == "section":
            if "text" in block:
                lines.extend(mrkdwn_to_text(block["text"]["text"]).splitlines())
            for field in block.get("fields", []):
                lines.append("  " + mrkdwn_to_text(field["text"]).replace("\n", " "))
            accessory = block.get("accessory")
            if accessory and accessory.get("type") == "button":
                lines.append(_button(accessory, number_for))
        elif kind == "context":
            texts = [mrkdwn_to_text(element.get("text", "")) for element in block.get("elements", [])]
            lines.append("  " + " · ".join(texts))
        elif kind == "actions":
            buttons = [_button(element, number_for) for element in block.get("elements", []) if element.get("type") == "button"]
            lines.append("  " + "  ".join(buttons))
        elif kind == "divider":
            lines.append("  " + "-" * 40)
    return lines


def _button(element: dict[str, Any], number_for: ButtonNumber) -> str:
    number = number_for(element.get("action_id", ""), element.get("value", ""))
    return f"[{number}: {element['text']['text']}]"


def message_text(message: Any) -> str:
    """A message's blocks (or its text when it has none) as terminal lines, buttons unnumbered."""
    lines = render_blocks(list(message.blocks), number_for=lambda action_id, value: 0)
    return "\n".join(lines) if lines else mrkdwn_to_text(message.text)
