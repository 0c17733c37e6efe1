"""Escaping for Slack's mrkdwn, so that text from users and systems never becomes a live token."""

from __future__ import annotations

import re

_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


def escape(text: str) -> str:
    """Escape &, < and >, the only characters Slack gives meaning to (`<!channel>`, `<@U1>`)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mention(user_id: str) -> str:
    """Mention a user by id; anything that is not a plain Slack user id is shown escaped."""
    if _USER_ID.match(user_id):
        return f"<@{user_id}>"
    return escape(user_id)


def code(text: str) -> str:
    """Inline code; backticks inside would end the span early, so they become quotes."""
    return "`" + escape(text).replace("`", "'") + "`"


def code_block(text: str) -> str:
    return "```" + escape(text).replace("```", "'''") + "```"


def truncate(text: str, limit: int, *, notice: str = "…") -> str:
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(notice))] + notice
