"""Fake response_url hooks: the URLs Slack sends with slash commands and interactions."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.sandbox.slack.content import read_blocks, read_text
from bot.sandbox.slack.records import Message
from bot.sandbox.slack.replies import ApiError
from bot.sandbox.slack.workspace import Workspace

logger = logging.getLogger(__name__)

MAX_USES = 5
LIFETIME_SECONDS = 30 * 60


@dataclass
class Hook:
    """One response_url: the requesting user and channel, the message it replaces, and its use count."""

    id: str
    channel: str
    user: str
    created_at: float
    target_ts: str | None = None
    """Message that `replace_original` and `delete_original` act on; the first post sets it if unset."""
    uses: int = 0
    expired: bool = False


class ResponseUrls:
    """Issues response_urls and applies what the app posts to them."""

    def __init__(self, workspace: Workspace, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._workspace = workspace
        self._clock = clock
        self.hooks: dict[str, Hook] = {}

    def new(self, channel_id: str, user_id: str, *, message_ts: str | None = None) -> str:
        """Issue a response_url for a command or interaction by `user_id` in `channel_id`.

        Pass `message_ts` for an interaction, so `replace_original` acts on the message clicked.
        """
        hook_id = secrets.token_hex(12)
        self.hooks[hook_id] = Hook(
            id=hook_id,
            channel=channel_id,
            user=user_id,
            created_at=self._clock(),
            target_ts=message_ts,
        )
        return f"{self._workspace.root_url}/hooks/{hook_id}"

    def expire(self, url: str) -> None:
        """Mark a response_url as expired, as if its 30 minutes had passed."""
        self.hooks[url.rstrip("/").rsplit("/", 1)[-1]].expired = True

    def post(self, hook_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Apply one response_url request; raise `ApiError` with the HTTP status Slack would use."""
        hook = self._usable_hook(hook_id)
        text = read_text(body)
        blocks = read_blocks(body, status=400)
        target = self._target(hook)

        if body.get("delete_original"):
            if target is None:
                raise ApiError("message_not_found", status=404)
            self._workspace.messages.delete(target)
        elif body.get("replace_original") and target is not None:
            self._workspace.messages.replace(
                target,
                text=text if text is not None else "",
                blocks=blocks or [],
                replaced_by="response_url",
            )
        else:
            posted = self._post_new(hook, body, text=text, blocks=blocks)
            if hook.target_ts is None:
                hook.target_ts = posted.ts

        # NOTE: only accepted requests count toward the limit of 5; whether Slack also counts
        # rejected ones is not documented.
        hook.uses += 1
        return {}

    def _usable_hook(self, hook_id: str) -> Hook:
        hook = self.hooks.get(hook_id)
        if hook is None:
            raise ApiError("invalid_url", status=404)
        if hook.expired or self._clock() - hook.created_at > LIFETIME_SECONDS:
            raise ApiError("expired_url", status=404)
        if hook.uses >= MAX_USES:
            logger.info("Rejected response_url %s: used %d times already", hook_id, hook.uses)
            raise ApiError("used_url", status=404)
        return hook

    def _target(self, hook: Hook) -> Message | None:
        if hook.target_ts is None:
            return None
        return self._workspace.live_message(hook.channel, hook.target_ts)

    def _post_new(
        self,
        hook: Hook,
        body: dict[str, Any],
        *,
        text: str | None,
        blocks: list[dict[str, Any]] | None,
    ) -> Message:
        if not text and not blocks:
            raise ApiError("no_text", status=400)

        # Slack's default response_type is ephemeral: only the requesting user sees the reply.
        is_in_channel = body.get("response_type") == "in_channel"
        return self._workspace.messages.post(
            channel=hook.channel,
            text=text or "",
            blocks=blocks or [],
            user=self._workspace.bot_user_id,
            source="response_url",
            thread_ts=body.get("thread_ts") or None,
            visible_to=None if is_in_channel else hook.user,
            response_url_id=hook.id,
        )
