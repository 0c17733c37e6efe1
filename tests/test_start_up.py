"""Start-up failures end with one line naming the setting and the fix, never a traceback."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from bot.sandbox.slack.web_api import FakeSlack
from tests.conftest import closed_port

REPOSITORY = Path(__file__).resolve().parents[1]


async def run_bot(mode: str, **variables: str) -> tuple[int, list[str]]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SLACK_", "MERIDIAN_", "DATABASE_"))}
    env.update(variables, PYTHONPATH=str(REPOSITORY), BOT_STATE_URL="sqlite:///:memory:", PORT="0")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", mode, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
    lines = [line for line in stderr.decode().splitlines() if line.startswith("meridian-bot:") or "Traceback" in line]
    return process.returncode, lines


async def test_unreachable_slack_one_line() -> None:
    code, lines = await run_bot(
        "serve",
        SLACK_BOT_TOKEN="xoxb-canary-token",
        SLACK_SIGNING_SECRET="secret",
        SLACK_API_URL=f"http://127.0.0.1:{closed_port()}/api/",
    )

    assert code == 1
    assert len(lines) == 1
    assert lines[0].startswith("meridian-bot: Could not reach the Slack Web API at http://127.0.0.1:")
    assert "check SLACK_API_URL" in lines[0]


@pytest.mark.parametrize(
    ("mode", "variables", "expected"),
    [
        ("serve", {"SLACK_BOT_TOKEN": "xoxb-wrong", "SLACK_SIGNING_SECRET": "secret"}, "Slack refused SLACK_BOT_TOKEN (invalid_auth)"),
        ("socket", {"SLACK_BOT_TOKEN": "xoxb-sandbox", "SLACK_APP_TOKEN": "xapp-wrong"}, "Slack refused SLACK_APP_TOKEN (invalid_auth)"),
    ],
)
async def test_refused_token_one_line(mode: str, variables: dict[str, str], expected: str) -> None:
    async with FakeSlack() as slack:
        code, lines = await run_bot(mode, SLACK_API_URL=slack.base_url, **variables)

    assert code == 1
    assert lines == [lines[0]]
    assert lines[0].startswith(f"meridian-bot: {expected}")


async def test_wrong_token_kind_rejected() -> None:
    code, lines = await run_bot("serve", SLACK_BOT_TOKEN="notatoken", SLACK_SIGNING_SECRET="secret")

    assert code == 2
    assert lines == ["meridian-bot: SLACK_BOT_TOKEN is invalid (must start with xoxb-): set it to the Bot User OAuth Token (xoxb-...) from the app's OAuth & Permissions page."]
