"""Request payloads that Slack sends to an app: slash command fields and block_actions interactions."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bot.sandbox.slack.records import Block, Message


@dataclass(frozen=True)
class Button:
    """A button element of a message, with the id of the block that holds it."""

    block_id: str
    element: dict[str, Any]

    @property
    def action_id(self) -> str:
        return str(self.element.get("action_id", ""))


def slash_command_fields(
    *,
    token: str,
    team_id: str,
    team_domain: str,
    channel_id: str,
    channel_name: str,
    user_id: str,
    user_name: str,
    command: str,
    text: str,
    api_app_id: str,
    response_url: str,
    trigger_id: str,
) -> dict[str, str]:
    """Build the form fields of a slash command, in the order Slack sends them."""
    return {
        "token": token,
        "team_id": team_id,
        "team_domain": team_domain,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }


def block_actions_payload(
    *,
    message: Message,
    button: Button,
    token: str,
    team_id: str,
    team_domain: str,
    channel_name: str,
    user_id: str,
    user_name: str,
    api_app_id: str,
    response_url: str,
    trigger_id: str,
    action_ts: str,
) -> dict[str, Any]:
    """Build the `block_actions` payload Slack sends when a user clicks `button` in `message`."""
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id},
        "api_app_id": api_app_id,
        "token": token,
        "container": {
            "type": "message",
            "message_ts": message.ts,
            "channel_id": message.channel,
            "is_ephemeral": message.is_ephemeral,
        },
        "trigger_id": trigger_id,
        "team": {"id": team_id, "domain": team_domain},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": message.channel, "name": channel_name},
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [_action(button, action_ts)],
    }
    # NOTE: to our understanding Slack leaves `message` out of the payload for ephemeral messages,
    # so an app must not rely on it there.
    if not message.is_ephemeral:
        payload["message"] = message.to_api()
    return payload


def buttons_of(blocks: tuple[Block, ...] | list[Block]) -> list[Button]:
    """Return the buttons in `actions` blocks and section accessories, in display order."""
    return list(_iter_buttons(blocks))


def _iter_buttons(blocks: tuple[Block, ...] | list[Block]) -> Iterator[Button]:
    for index, block in enumerate(blocks):
        # Slack gives a block without block_id a generated one; the sandbox derives it from the position.
        block_id = str(block.get("block_id") or f"sandbox-block-{index}")
        candidates = list(block.get("elements") or []) if block.get("type") == "actions" else []
        if block.get("type") == "section" and isinstance(block.get("accessory"), dict):
            candidates.append(block["accessory"])
        for element in candidates:
            if isinstance(element, dict) and element.get("type") == "button":
                yield Button(block_id=block_id, element=element)


def _action(button: Button, action_ts: str) -> dict[str, Any]:
    action: dict[str, Any] = {
        "action_id": button.action_id,
        "block_id": button.block_id,
        "text": button.element.get("text", {"type": "plain_text", "text": ""}),
        "type": "button",
        "action_ts": action_ts,
    }
    if "value" in button.element:
        action["value"] = button.element["value"]
    if "style" in button.element:
        action["style"] = button.element["style"]
    return action
