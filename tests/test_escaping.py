"""Text from users and systems is escaped for mrkdwn, so it can never ping anyone."""

from __future__ import annotations

import json

import pytest

from bot.sandbox.environment import Sandbox
from bot.slack.mrkdwn import code, escape, mention

LIVE_TOKENS = ("<!channel>", "<@U123>", "<!here>", "<!subteam^S1>")


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("<!channel>", "&lt;!channel&gt;"),
        ("<@U123>", "&lt;@U123&gt;"),
        ("a&b", "a&amp;b"),
        ("<https://evil.example|click>", "&lt;https://evil.example|click&gt;"),
        ("plain *bold* `code`", "plain *bold* `code`"),
    ],
)
def test_escape_table(raw: str, escaped: str) -> None:
    assert escape(raw) == escaped


def test_mention_only_real_ids() -> None:
    assert mention("U0OPERATOR") == "<@U0OPERATOR>"
    assert mention("<!channel>") == "&lt;!channel&gt;"


def test_code_cannot_close_early() -> None:
    assert code("a`b<c>") == "`a'b&lt;c&gt;`"


async def test_arguments_echoed_inert(no_database_sandbox: Sandbox) -> None:
    outcome = await no_database_sandbox.command("health <!channel> <@U123> a&b")

    raw = json.dumps(outcome.delivery.json())
    for token in ("<!channel>", "<@U123>"):
        assert token not in raw
    assert "&lt;!channel&gt;" in outcome.delivery.json()["text"]
    assert outcome.cards == []


async def test_unknown_command_echoed_inert(no_database_sandbox: Sandbox) -> None:
    outcome = await no_database_sandbox.command("<!channel> <@U123> a&b")

    text = outcome.delivery.json()["text"]
    assert "Unknown command `&lt;!channel&gt; &lt;@U123&gt;`" in text
    assert "<!" not in text
    assert "<@" not in text


async def test_system_text_in_card_inert(no_database_sandbox: Sandbox) -> None:
    no_database_sandbox.api.version = "1.0 <!channel> <@U123> a&b"

    outcome = await no_database_sandbox.command("health")

    raw = json.dumps([message.blocks for message in no_database_sandbox.slack.messages])
    for token in LIVE_TOKENS:
        assert token not in raw
    assert "1.0 &lt;!channel&gt; &lt;@U123&gt; a&amp;b" in raw
    assert "version 1.0 <!channel> <@U123> a&b" in outcome.card_text
