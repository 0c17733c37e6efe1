"""manifest.yml declares what the bot serves and the scopes of the Web API methods it calls."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import yaml

from bot.slack.server import EVENTS_PATH

MANIFEST = yaml.safe_load((Path(__file__).resolve().parents[1] / "manifest.yml").read_text())

# The scope each Web API method the bot calls needs (Slack's method reference).
SCOPES_BY_METHOD = {
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.postEphemeral": "chat:write",
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
    "users.info": "users:read",
    "usergroups.users.list": "usergroups:read",
    "conversations.info": "channels:read",
}


def test_manifest_declares_command() -> None:
    commands = MANIFEST["features"]["slash_commands"]
    assert [command["command"] for command in commands] == ["/meridian"]
    assert urlsplit(commands[0]["url"]).path == EVENTS_PATH


def test_manifest_interactivity_path() -> None:
    interactivity = MANIFEST["settings"]["interactivity"]
    assert interactivity["is_enabled"] is True
    assert urlsplit(interactivity["request_url"]).path == EVENTS_PATH


def test_manifest_grants_needed_scopes() -> None:
    scopes = set(MANIFEST["oauth_config"]["scopes"]["bot"])
    assert {"commands", "chat:write.public", "groups:read"} <= scopes
    assert set(SCOPES_BY_METHOD.values()) <= scopes
